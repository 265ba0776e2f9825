"""The images of a job: which record holds image ``n`` and under which artifact names.

A single job holds its one image under the plain artifact names (``floatimage.bin``). A series
(kind ``series``) holds none itself: image ``n`` is rendered by the child job whose
``image_numbers`` include it, under the names the ``nanobragg`` command numbers its files with
(``floatimage_00003.bin``, ``run_metadata_00003.json``, ``trace_10_20_00003.log``); its NeXus
frames lie in the child's data file (``image_data_<first image>.nxs``). Routes ask
:func:`image_source` and name artifacts as a single job's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

from fastapi import Path

from sim_core.output_formats import BY_KEY, image_artifact, nexus_data_name

from app.context import AppContext
from app.errors import ApiError, invalid_field
from jobs.job import Artifact, Job, JobStatus


NEXUS = BY_KEY["nexus"].artifact
#: the ``{n}`` of the image routes
ImageNumber = Annotated[int, Path(ge=0, le=10 ** 9 + 10 ** 6, description="the image, as in the "
                                  "file numbering of a series (a single job: 1)")]


@dataclass(frozen=True)
class ImageSource:
    """The job holding an image's artifacts, and the image's number in a series (None: a single
    job's image)."""

    job: Job
    number: Optional[int] = None

    def name(self, artifact: str) -> str:
        """The stored name of a single job's artifact name for this image (a series image's
        NeXus file: its child's data file, which holds the child's images as frames)."""
        if self.number is not None and artifact == NEXUS:
            return nexus_data_name(min(self.job.image_numbers))
        return image_artifact(artifact, self.number)

    @property
    def frame(self) -> int:
        """The image's frame in the NeXus file :meth:`name` names (its child's images, in order)."""
        return 0 if self.number is None else list(self.job.image_numbers).index(self.number)

    def entry(self, artifact: str) -> Optional[Artifact]:
        return self.job.artifact(self.name(artifact))


def image_source(ctx: AppContext, job: Job, n: Optional[int], *, field: str = "n") -> ImageSource:
    """Where image ``n`` of ``job`` lies (``n`` None: its first image); 422 naming ``field`` for a
    number the job does not have."""
    numbers = job.image_range()
    if n is None:
        n = numbers[0]
    if n not in numbers:
        raise invalid_field(field, f"image {n} does not exist; the job has "
                                   f"{len(numbers)} image{'s' if len(numbers) > 1 else ''} "
                                   f"(n = {numbers[0]}..{numbers[-1]})")
    if not job.is_series:
        return ImageSource(job)
    child = ctx.records.child_for_image(job.id, n)
    if child is None:
        # a series makes its children as its turns come (jobs.admission): not made yet, or never
        # (canceled before its turn)
        if job.ended:
            raise ApiError(409, f"image {n} of series {job.id} was not rendered: the series "
                                f"ended {job.status.value} before its turn came")
        raise ApiError(409, f"image {n} of series {job.id} is queued, not finished",
                       hint="it waits in line for its turn; its files are there once it is "
                            "finished")
    return ImageSource(child, n)


def finished_image(ctx: AppContext, job: Job, n: Optional[int], *, field: str = "n") -> ImageSource:
    """As :func:`image_source`, for an image that must be rendered already (409 before)."""
    src = image_source(ctx, job, n, field=field)
    if src.job.status is not JobStatus.finished:
        what = "job" if src.number is None else f"image {src.number} (job {src.job.id})"
        raise ApiError(409, f"{what} is {src.job.status.value}, not finished",
                       hint="an image's files are there once it is finished")
    return src


__all__ = ["ImageNumber", "ImageSource", "image_source", "finished_image"]
