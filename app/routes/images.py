"""The image viewer's routes: regions of a job's images at any zoom level, the image's statistics
and histogram, a line profile, and the detector geometry (resolution and 2θ of any pixel, rings,
beam centre); the same for an image file the user uploaded to compare (``/v1/files/{id}/image``).

``GET /v1/jobs/{id}/image?slow=a:b&fast=c:d&step=k`` answers raw little-endian float32: each value
the maximum of a k x k block, so the viewer fetches a 6-megapixel image as a few small tiles of a
coarse level and finer tiles as it zooms in, never the whole float file. ``n`` picks an image of a
series (as in its file numbering; by default its first), ``artifact`` one of the image's files: the
float image (default), the integer or noisy SMV image, the CBF image (read with fabio, torch-free),
the NeXus image (a frame read with h5py and hdf5plugin).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
import zlib
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from sim_core.cache import ByteLRU
from sim_core.errors import InputFileError
from sim_core.geometry.description import described_resolution
from sim_core.io.imagefile import DetectorImage, open_image
from sim_core.output_formats import BY_KEY

from app.context import AppContext
from app.deps import CtxDep, OwnedJobDep, OwnerDep
from app.errors import ApiError, invalid_field, not_found
from app.image_sources import ImageSource, finished_image, image_source
from app.imagedata import MAX_PROFILE_POINTS, Region, image_stats, profile, read_region
from app.contract import binary
from app.response_models import Geometry, ImageInfo, Profile
from app.schemas import error_responses
from app.views import etag_matches
from jobs.job import Artifact, Job

router = APIRouter(tags=["images"])

#: the most values one region answer may hold (4 MiB of float32)
MAX_REGION_VALUES = 1 << 20
#: the tile size the web page's viewer asks for (a hint in the image description)
TILE = 256
# at most 9 digits: a detector is far smaller, and int() of thousands of digits is refused
_RANGE = re.compile(r"^\s*(\d{1,9})\s*:\s*(\d{1,9})\s*$")
_PIXEL = re.compile(r"^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$")
_IMMUTABLE = "private, max-age=31536000, immutable"

_stats_cache = ByteLRU(None, entries=32)
_bytes_cache = ByteLRU(None, entries=2)  # whole images, only for stores that cannot give a local path
#: SMV and CBF images by sha256: SMV memory maps cost nothing, decoded CBF pixels count
_images = ByteLRU(256 << 20, entries=16)
#: one image read at a time: the viewer's first tiles come six at once, and each would decode the
#: same CBF file otherwise
_reading = threading.Lock()


def _cached_image(key: str, read) -> DetectorImage:
    im = _images.get(key)
    if im is None:
        with _reading:
            im = _images.get_or_make(key, read, _resident_bytes)
    return im

FLOAT = BY_KEY["float"].artifact
NEXUS = BY_KEY["nexus"].artifact
#: the largest image number a query names (as the image routes' path number, ImageNumber)
MAX_N = 10 ** 9 + 10 ** 6
#: a job's images that the viewer shows (a single job's artifact names)
VIEWABLE = tuple(BY_KEY[k].artifact for k in ("float", "noise", "smv", "cbf", "nexus"))
ARTIFACT_QUERY = Query(FLOAT, description="which of the image's files: " + ", ".join(VIEWABLE)
                       + " (the SMV, CBF and NeXus images as float32 values; a series image's "
                       "NeXus frame is read from its child's data file)",
                       examples=["noiseimage.img"])


@dataclass(frozen=True)
class Shown:
    """An image the viewer asks for: its pixels as a (slow, fast) array, the sha256 of its file's
    bytes (ETags, caches), its stored name, the value from which a pixel is an overload."""

    key: str
    name: str
    pixels: np.ndarray
    saturation: float | None
    #: the frame of a file holding several (a series child's NeXus data file)
    frame: int = 0

    @property
    def tag(self) -> str:
        """What tells this image from every other: the sha256, and the frame of a file of many."""
        return self.key if self.frame == 0 else f"{self.key}:{self.frame}"


def _detector_image(store, holder: str, entry: Artifact, frame: int = 0) -> DetectorImage:
    """A job's SMV, CBF or NeXus artifact (of NeXus: frame ``frame``), read once per sha256 and
    frame (SMV: a memory map; CBF and a NeXus frame: decoded)."""
    def read():
        path = store.artifact_path(holder, entry.name)
        if path is None:  # a store without local files: a scratch copy to read from
            path = store.scratch_file()
            with store.open_artifact(holder, entry.name) as fh, open(path, "wb") as out:
                shutil.copyfileobj(fh, out)
            try:
                return open_image(path, entry.name, frame=frame)
            finally:
                os.unlink(path)  # a memory map keeps the pages of an unlinked file
        return open_image(path, entry.name, frame=frame)
    return _cached_image(entry.sha256 if frame == 0 else f"{entry.sha256}:{frame}", read)


def _resident_bytes(im: DetectorImage) -> int:
    return 0 if isinstance(im.pixels, np.memmap) else im.pixels.nbytes


def _viewable(src: ImageSource) -> list[str]:
    """The artifact names of an image (a single job's names) that the viewer can show."""
    return [name for name in VIEWABLE if src.entry(name) is not None]


def _image(ctx: AppContext, job: Job, n: int | None,
           artifact: str = FLOAT) -> tuple[Shown, list[str]]:
    """Image n's artifact ``artifact`` (a single job's name), and the names of its images the
    viewer can show."""
    if artifact not in VIEWABLE:
        raise invalid_field("artifact", f"{artifact!r} is not an image the viewer shows; one of "
                                        f"{', '.join(VIEWABLE)}")
    src = finished_image(ctx, job, n)
    viewable = _viewable(src)
    entry = src.entry(artifact)
    if entry is None:
        if artifact == FLOAT:
            raise not_found("float image", hint=f"the job has no {FLOAT}: submit it with "
                                                "\"float\" among its outputs (trace jobs have "
                                                "none)")
        raise not_found(artifact, hint=f"the images of this job are: {', '.join(viewable)}"
                                       if viewable else "the job has no image to view")
    name = entry.name
    store = ctx.store
    holder = src.job.id
    S, F = job.shape
    if artifact != FLOAT:
        frame = src.frame if artifact == NEXUS else 0
        im = _detector_image(store, holder, entry, frame)
        return Shown(entry.sha256, name, im.pixels, im.saturation, frame), viewable
    if entry.size != S * F * 4:
        raise ApiError(409, f"{name} holds {entry.size} bytes, not the {S} x {F} float32 "
                            "pixels of the job's shape")
    path = store.artifact_path(holder, name)
    if path is not None:
        pixels = np.memmap(path, dtype="<f4", mode="r", shape=(S, F))
    else:
        def read_all():
            with store.open_artifact(holder, name) as fh:
                return np.frombuffer(fh.read(), dtype="<f4").reshape(S, F)
        pixels = _bytes_cache.get_or_make(entry.sha256, read_all)
    return Shown(entry.sha256, name, pixels, None), viewable


def _file_image(ctx: AppContext, file_id: str, owner: str) -> Shown:
    """The image a user uploaded (kind ``image``) to view beside a simulated one."""
    digest = file_id.removeprefix("sha256:")
    rec = ctx.records.get_file(owner, digest) if len(digest) == 64 else None
    if rec is None:
        raise not_found("file")
    if rec.kind != "image":
        raise ApiError(409, f"file {rec.name} is a {rec.kind} file, not an image",
                       hint="upload a detector image (SMV, CBF, NeXus/HDF5) with kind=image to "
                            "view it")

    def read():
        try:
            return open_image(ctx.store.input_path(digest), rec.name)
        except InputFileError as exc:
            raise ApiError(409, str(exc)) from None
    im = _cached_image(digest, read)
    return Shown(digest, rec.name, im.pixels, im.saturation)


def _range(field: str, text: str | None, size: int) -> tuple[int, int]:
    if text is None:
        return 0, size
    m = _RANGE.match(text)
    if not m:
        raise invalid_field(field, f"expected 'start:stop' (pixels, stop excluded), e.g. {field}=0:256")
    a, b = int(m.group(1)), int(m.group(2))
    if not a < b <= size:
        raise invalid_field(field, f"{a}:{b} is not a non-empty range within 0:{size}")
    return a, b


@router.get("/v1/jobs/{job_id}/image", summary="Pixels of the float image (a region, any zoom)",
            response_class=Response,
            responses={200: {"description": "raw little-endian float32, `X-Image-Shape` rows x "
                                            "columns; each value the maximum of a step x step "
                                            "block (NaN only where the whole block is)",
                             "content": binary("application/octet-stream")},
                       **error_responses(401, 404, 409, 422)})
def get_image_region(job: OwnedJobDep, request: Request, ctx: CtxDep,
                     slow: str | None = Query(None, description="rows start:stop (default all)",
                                              examples=["0:1024"]),
                     fast: str | None = Query(None, description="columns start:stop (default all)",
                                              examples=["1024:2048"]),
                     step: int = Query(1, ge=1, le=65536,
                                       description="block size: 1 = every pixel, 4 = the maximum "
                                                   "of each 4 x 4 block"),
                     n: int | None = Query(None, ge=0, le=MAX_N,
                                           description="the image of a series, as in its "
                                                       "file numbering (default: its first)"),
                     artifact: str = ARTIFACT_QUERY):
    """A region of the image, reduced by ``step``: at most 1,048,576 values per answer. The answer
    is gzip-compressed when the request accepts it; its ETag never changes for a finished job."""
    shown, _ = _image(ctx, job, n, artifact)
    return _region_answer(request, shown, slow, fast, step)


def _region_answer(request: Request, shown: Shown, slow: str | None, fast: str | None,
                   step: int) -> Response:
    img = shown.pixels
    S, F = img.shape
    s0, s1 = _range("slow", slow, S)
    f0, f1 = _range("fast", fast, F)
    # a block larger than the region is the region: the reduction allocates step x step blocks
    step = min(step, max(s1 - s0, f1 - f0))
    r = Region(s0, s1, f0, f1, step=step)
    rows, cols = r.out_shape
    if rows * cols > MAX_REGION_VALUES:
        raise invalid_field("step", f"the region {r.s0}:{r.s1} x {r.f0}:{r.f1} at step {step} is "
                                    f"{rows} x {cols} = {rows * cols:,} values; at most "
                                    f"{MAX_REGION_VALUES:,} per answer: ask for a larger step or "
                                    "a smaller region")
    frame = f"f{shown.frame}-" if shown.frame else ""
    etag = f'"{shown.key[:32]}-{frame}{r.s0}-{r.s1}-{r.f0}-{r.f1}-{step}"'
    headers = {"ETag": etag, "Cache-Control": _IMMUTABLE, "Vary": "Accept-Encoding",
               "X-Image-Shape": f"{rows},{cols}", "X-Image-Step": str(step),
               "X-Image-Region": f"{r.s0}:{r.s1},{r.f0}:{r.f1}",
               "Access-Control-Expose-Headers": "X-Image-Shape, X-Image-Step, X-Image-Region"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    body = read_region(img, r).tobytes()
    if len(body) > 2048 and "gzip" in request.headers.get("accept-encoding", ""):
        gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # fast; sparse images shrink many times
        body = gz.compress(body) + gz.flush()
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/octet-stream", headers=headers)


@router.get("/v1/jobs/{job_id}/image/info", summary="Size, series and statistics of the image",
            response_model=ImageInfo,
            responses={200: {"content": {"application/json": {"example": {
                "shape": [2527, 2463], "n": 1, "images": 1, "name": FLOAT,
                "tile": 256, "max_region_values": MAX_REGION_VALUES,
                "stats": {"pixels": 6224001, "finite": 6224001, "positive": 6224001,
                          "min": 0.0, "max": 812.5, "mean": 0.41, "sampled_every": 6,
                          "percentiles": {"50": 0.07, "90": 0.2, "99": 2.3, "99.5": 5.1,
                                          "99.9": 40.2, "99.99": 310.0}}}}}},
                       **error_responses(401, 404, 409, 422)})
def get_image_info(job: OwnedJobDep, ctx: CtxDep,
                   n: int | None = Query(None, ge=0, le=MAX_N,
                                         description="the image of a series, as in its "
                                                     "file numbering (default: its first)"),
                   artifact: str = ARTIFACT_QUERY):
    """What the viewer needs before it asks for pixels: the shape, how many images the job has,
    and the statistics its automatic contrast uses (percentiles of the positive pixels; of every
    ``sampled_every``-th finite pixel for images of more than 1,048,576 pixels)."""
    shown, viewable = _image(ctx, job, n, artifact)
    numbers = job.image_range()
    return _info_answer(shown, {"n": numbers[0] if n is None else n, "images": len(numbers),
                                "first_image": numbers[0], "artifact": artifact,
                                "artifacts": viewable})


def _info_answer(shown: Shown, extra: dict) -> JSONResponse:
    stats = _stats_cache.get_or_make(shown.tag,
                                     lambda: image_stats(shown.pixels, shown.saturation))
    return JSONResponse({"shape": list(shown.pixels.shape), **extra, "name": shown.name,
                         "sha256": shown.key, "tile": TILE,
                         "max_region_values": MAX_REGION_VALUES, "stats": stats},
                        headers={"Cache-Control": "private, no-cache"})


def _description(ctx: AppContext, job: Job, n: int | None) -> dict:
    """The detector as the worker that rendered the image described it (the API never builds a
    detector: that needs torch)."""
    src = image_source(ctx, job, n)
    if not src.job.geometry:
        raise ApiError(409, f"job {src.job.id} is {src.job.status.value}: its detector is "
                            "described once it has rendered", hint="ask again when it is finished")
    return src.job.geometry


def _pixel(field: str, text: str, shape) -> tuple[int, int]:
    m = _PIXEL.match(text)
    if not m:
        raise invalid_field(field, "expected 'slow,fast', e.g. 128,129")
    s, f = int(m.group(1)), int(m.group(2))
    if not (s < shape[0] and f < shape[1]):
        raise invalid_field(field, f"pixel ({s}, {f}) is outside the image of {shape[0]} slow x "
                                   f"{shape[1]} fast")
    return s, f


def _profile_answer(shown: Shown, start: str, end: str) -> JSONResponse:
    a = _pixel("start", start, shown.pixels.shape)
    b = _pixel("end", end, shown.pixels.shape)
    points = max(abs(b[0] - a[0]), abs(b[1] - a[1])) + 1
    if points > MAX_PROFILE_POINTS:
        raise invalid_field("end", f"a line of {points:,} pixels; at most "
                                   f"{MAX_PROFILE_POINTS:,}")
    return JSONResponse(dict(profile(shown.pixels, a, b), name=shown.name))


_PROFILE_EXAMPLE = {"from": [10, 10], "to": [10, 13], "name": FLOAT,
                    "pixels": [[10, 10], [10, 11], [10, 12], [10, 13]],
                    "values": [0.5, 3.25, 102.0, 4.0], "distance_px": [0.0, 1.0, 2.0, 3.0]}
_START = Query(..., description="the first pixel, slow,fast", examples=["10,10"])
_END = Query(..., description="the last pixel, slow,fast", examples=["10,13"])


@router.get("/v1/jobs/{job_id}/image/profile", summary="The values along a line of the image",
            response_model=Profile,
            responses={200: {"content": {"application/json": {"example": _PROFILE_EXAMPLE}}},
                       **error_responses(401, 404, 409, 422)})
def get_image_profile(job: OwnedJobDep, ctx: CtxDep, start: str = _START,
                      end: str = _END,
                      n: int | None = Query(None, ge=0, le=MAX_N,
                                            description="the image of a series"),
                      artifact: str = ARTIFACT_QUERY):
    """Every pixel on the line from ``start`` to ``end`` (one a step along the longer axis, the
    nearest on the other), with its value (null for NaN) and its distance from ``start``."""
    shown, _ = _image(ctx, job, n, artifact)
    return _profile_answer(shown, start, end)


@router.get("/v1/files/{file_id}/image", summary="Pixels of an uploaded image (a region, any zoom)",
            response_class=Response,
            responses={200: {"description": "as GET /v1/jobs/{job_id}/image",
                             "content": binary("application/octet-stream")},
                       **error_responses(401, 404, 409, 422)})
def get_file_image_region(file_id: str, request: Request, ctx: CtxDep, owner: OwnerDep,
                          slow: str | None = Query(None, description="rows start:stop"),
                          fast: str | None = Query(None, description="columns start:stop"),
                          step: int = Query(1, ge=1, le=65536, description="block size")):
    """A region of an SMV, CBF or NeXus/HDF5 image uploaded with ``kind=image``, as the job's image route
    answers it: the viewer shows a user's own frame beside a simulated one."""
    return _region_answer(request, _file_image(ctx, file_id, owner), slow, fast, step)


@router.get("/v1/files/{file_id}/image/info", summary="Size and statistics of an uploaded image",
            response_model=ImageInfo,
            responses=error_responses(401, 404, 409))
def get_file_image_info(file_id: str, ctx: CtxDep, owner: OwnerDep):
    """As GET /v1/jobs/{job_id}/image/info, for an image uploaded with ``kind=image``."""
    shown = _file_image(ctx, file_id, owner)
    return _info_answer(shown, {"n": 1, "images": 1, "first_image": 1, "artifact": shown.name,
                                "artifacts": [shown.name]})


@router.get("/v1/files/{file_id}/image/profile", response_model=Profile,
            summary="The values along a line of an uploaded image",
            responses={200: {"content": {"application/json": {"example": _PROFILE_EXAMPLE}}},
                       **error_responses(401, 404, 409, 422)})
def get_file_image_profile(file_id: str, ctx: CtxDep, owner: OwnerDep, start: str = _START,
                           end: str = _END):
    return _profile_answer(_file_image(ctx, file_id, owner), start, end)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@router.get("/v1/jobs/{job_id}/geometry", summary="The detector geometry; d and 2θ of pixels",
            response_model=Geometry,
            responses={200: {"content": {"application/json": {"example": {
                "shape": [256, 256], "pixel_size_m": 0.0001, "pix0_m": [0.1, 0.0128, -0.0128],
                "fdet": [0, 0, 1], "sdet": [0, -1, 0], "odet": [1, 0, 0], "beam": [1, 0, 0],
                "wavelength_A": 6.2, "distance_m": 0.1, "close_distance_m": 0.1,
                "twotheta_deg": 0.0, "curved": False, "convention": "mosflm",
                "beam_center_px": {"slow": 128.5, "fast": 128.5},
                "pixels": [{"pixel": [10, 20], "d_A": 52.1, "twotheta_deg": 6.82}]}}}},
                       **error_responses(401, 404, 409, 422)})
def get_geometry(job: OwnedJobDep, ctx: CtxDep,
                 pixel: list[str] = Query([], description="slow,fast (repeatable): the d (Å) "
                                                          "and 2θ (degrees) of these pixels' "
                                                          "centres", examples=["10,20"]),
                 n: int | None = Query(None, ge=0, le=MAX_N,
                                       description="the image of a series (default: its first)")):
    """The detector as plain numbers: a pixel (s, f) has its centre at
    ``pix0_m + (f + 0.5) * pixel_size_m * fdet + (s + 0.5) * pixel_size_m * sdet`` (a curved
    detector then turns that onto the sphere of radius ``distance_m``); 2θ is its angle to
    ``beam`` and d = ``wavelength_A`` / (2 sin θ). ``beam_center_px`` is where the direct beam
    meets the detector, in pixels from the first pixel's outer corner. ``pixel=`` adds sim_core's
    values for given pixels (d is null where 2θ is 0). Known once the image is rendered (409
    before)."""
    out = dict(_description(ctx, job, n))
    S, F = out["shape"]
    wanted = []
    for i, text in enumerate(pixel):
        m = _PIXEL.match(text)
        if not m:
            raise invalid_field(f"pixel.{i}", "expected 'slow,fast', e.g. pixel=128,129")
        s, f = int(m.group(1)), int(m.group(2))
        if not (s < S and f < F):
            raise invalid_field(f"pixel.{i}", f"pixel ({s}, {f}) is outside the detector of "
                                              f"{S} slow x {F} fast")
        wanted.append((s, f))
    if wanted:
        d, tt = described_resolution(out, [p[0] for p in wanted], [p[1] for p in wanted])
        out["pixels"] = [{"pixel": list(p), "d_A": _finite(float(d[i])),
                          "twotheta_deg": float(tt[i])} for i, p in enumerate(wanted)]
    return JSONResponse(out)
