"""The images of a job: which record holds image ``n`` and under which artifact names.

A single job holds its one image under the plain artifact names (``floatimage.bin``). A series
(kind ``series``) holds none itself: image ``n`` is rendered by the child job whose
``image_numbers`` include it, under the names the ``nanobragg`` command numbers its files with
(``floatimage_00003.bin``, ``run_metadata_00003.json``, ``trace_10_20_00003.log``). Routes ask
:func:`image_source` and name artifacts as a single job's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator, Optional

from fastapi import Path

from app.errors import ApiError, invalid_field, not_found
from jobs.job import JobStatus, image_artifact, is_series
from jobs.records import decode


#: the ``{n}`` of the image routes
ImageNumber = Annotated[int, Path(ge=0, le=10 ** 9 + 10 ** 6, description="the image, as in the "
                                  "file numbering of a series (a single job: 1)")]


@dataclass(frozen=True)
class ImageSource:
    """The record holding an image's artifacts, and the image's number in a series (None: a
    single job's image)."""

    job: dict
    number: Optional[int] = None

    def name(self, artifact: str) -> str:
        """The stored name of a single job's artifact name for this image."""
        return image_artifact(artifact, self.number)

    def entry(self, artifact: str) -> Optional[dict]:
        stored = self.name(artifact)
        return next((a for a in self.job.get("artifacts") or [] if a["name"] == stored), None)


def image_range(rec: dict) -> range:
    """The image numbers of a job: a series' numbering, or image 1 of a single job."""
    if is_series(rec):
        first = int(rec.get("first_image") or 0)
        return range(first, first + int(rec.get("images") or 0))
    return range(1, 2)


def image_source(ctx, rec: dict, n: Optional[int], *, field: str = "n") -> ImageSource:
    """Where image ``n`` of the job ``rec`` lies (``n`` None: its first image); 422 naming
    ``field`` for a number the job does not have, 409 while the image is not rendered yet."""
    numbers = image_range(rec)
    if n is None:
        n = numbers[0]
    if n not in numbers:
        raise invalid_field(field, f"image {n} does not exist; the job has "
                                   f"{len(numbers)} image{'s' if len(numbers) > 1 else ''} "
                                   f"(n = {numbers[0]}..{numbers[-1]})")
    if not is_series(rec):
        return ImageSource(rec)
    child = ctx.records.child_for_image(rec["id"], n)
    if child is None:
        raise not_found("image", hint=f"no child job of series {rec['id']} renders image {n}")
    return ImageSource(child, n)


def finished_image(ctx, rec: dict, n: Optional[int], *, field: str = "n") -> ImageSource:
    """As :func:`image_source`, for an image that must be rendered already (409 before)."""
    src = image_source(ctx, rec, n, field=field)
    status = src.job["status"]
    if status != JobStatus.finished.value:
        what = "job" if src.number is None else f"image {src.number} (job {src.job['id']})"
        raise ApiError(409, f"{what} is {status}, not finished",
                       hint="an image's files are there once it is finished")
    return src


def series_children(ctx, rec: dict) -> Iterator[dict]:
    """The child records of a series, in image order, read 200 at a time."""
    ids = ctx.records.child_ids(rec["id"])
    for start in range(0, len(ids), 200):
        pipe = ctx.redis.pipeline(transaction=False)
        for child in ids[start:start + 200]:
            pipe.hgetall(ctx.records.k.job(child))
        for raw in pipe.execute():
            if raw:
                yield decode(raw)


__all__ = ["ImageNumber", "ImageSource", "image_source", "finished_image", "image_range",
           "series_children"]
