"""The image viewer's routes: regions of a job's float image at any zoom level, the image's
statistics, and the detector geometry (resolution and 2θ of any pixel, rings, beam centre).

``GET /v1/jobs/{id}/image?slow=a:b&fast=c:d&step=k`` answers raw little-endian float32: each value
the maximum of a k x k block, so the viewer fetches a 6-megapixel image as a few small tiles of a
coarse level and finer tiles as it zooms in, never the whole float file. ``n`` picks an image of a
series (as in its file numbering; by default its first).
"""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from sim_core.cache import ByteLRU
from sim_core.geometry.description import described_resolution
from sim_core.output_formats import BY_KEY

from app.context import AppContext
from app.deps import CtxDep, OwnedJobDep
from app.errors import ApiError, invalid_field, not_found
from app.imagedata import Region, image_stats, read_region
from app.image_sources import finished_image, image_source
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
FLOAT_IMAGE = BY_KEY["float"].artifact

_stats_cache = ByteLRU(None, entries=32)
_bytes_cache = ByteLRU(None, entries=2)  # whole images, only for stores that cannot give a local path


def _image(ctx: AppContext, job: Job, n: int | None) -> tuple[str, Artifact, np.ndarray]:
    """(artifact name, artifact entry, the image as a read-only (slow, fast) float32 array)."""
    src = finished_image(ctx, job, n)
    entry = src.entry(FLOAT_IMAGE)
    if entry is None:
        raise not_found("float image", hint=f"the job has no {FLOAT_IMAGE}: submit it with "
                                            "\"float\" among its outputs (trace jobs have none)")
    name = entry.name
    S, F = job.shape
    if entry.size != S * F * 4:
        raise ApiError(409, f"{name} holds {entry.size} bytes, not the {S} x {F} float32 "
                            "pixels of the job's shape")
    store = ctx.store
    holder = src.job.id
    path = store.artifact_path(holder, name)
    if path is not None:
        return name, entry, np.memmap(path, dtype="<f4", mode="r", shape=(S, F))

    def read_all():
        with store.open_artifact(holder, name) as fh:
            return np.frombuffer(fh.read(), dtype="<f4").reshape(S, F)
    return name, entry, _bytes_cache.get_or_make(entry.sha256, read_all)


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
                             "content": {"application/octet-stream": {}}},
                       **error_responses(401, 404, 409, 422)})
def get_image_region(job: OwnedJobDep, request: Request, ctx: CtxDep,
                     slow: str | None = Query(None, description="rows start:stop (default all)",
                                              examples=["0:1024"]),
                     fast: str | None = Query(None, description="columns start:stop (default all)",
                                              examples=["1024:2048"]),
                     step: int = Query(1, ge=1, le=65536,
                                       description="block size: 1 = every pixel, 4 = the maximum "
                                                   "of each 4 x 4 block"),
                     n: int | None = Query(None, ge=0, description="the image of a series, as in "
                                                                   "its file numbering (default: "
                                                                   "its first)")):
    """A region of the image, reduced by ``step``: at most 1,048,576 values per answer. The answer
    is gzip-compressed when the request accepts it; its ETag never changes for a finished job."""
    name, entry, img = _image(ctx, job, n)
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
    etag = f'"{entry.sha256[:32]}-{r.s0}-{r.s1}-{r.f0}-{r.f1}-{step}"'
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
            responses={200: {"content": {"application/json": {"example": {
                "shape": [2527, 2463], "n": 1, "images": 1, "name": FLOAT_IMAGE,
                "tile": 256, "max_region_values": MAX_REGION_VALUES,
                "stats": {"pixels": 6224001, "finite": 6224001, "positive": 6224001,
                          "min": 0.0, "max": 812.5, "mean": 0.41, "sampled_every": 6,
                          "percentiles": {"50": 0.07, "90": 0.2, "99": 2.3, "99.5": 5.1,
                                          "99.9": 40.2, "99.99": 310.0}}}}}},
                       **error_responses(401, 404, 409, 422)})
def get_image_info(job: OwnedJobDep, ctx: CtxDep,
                   n: int | None = Query(None, ge=0, description="the image of a series, as in "
                                                                 "its file numbering (default: "
                                                                 "its first)")):
    """What the viewer needs before it asks for pixels: the shape, how many images the job has,
    and the statistics its automatic contrast uses (percentiles of the positive pixels; of every
    ``sampled_every``-th finite pixel for images of more than 1,048,576 pixels)."""
    name, entry, img = _image(ctx, job, n)
    stats = _stats_cache.get_or_make(entry.sha256, lambda: image_stats(img))
    numbers = job.image_range()
    return JSONResponse({"shape": list(img.shape), "n": numbers[0] if n is None else n,
                         "images": len(numbers), "first_image": numbers[0],
                         "name": name, "sha256": entry.sha256, "tile": TILE,
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


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@router.get("/v1/jobs/{job_id}/geometry", summary="The detector geometry; d and 2θ of pixels",
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
                 n: int | None = Query(None, ge=0, le=10 ** 9 + 10 ** 6,
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
