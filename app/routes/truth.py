"""The ground truth of a job's image: ``/v1/jobs/{id}/images/{n}/reflections``, the reflections
predicted on the detector (hkl, d, position, excitation error, F, summed intensity), read from the
image's stored ``reflections_NNNNN.csv`` (sim_core.ground_truth; every still has one, any other
render that asks for the output ``reflections``), strongest first. The viewer draws them over the
image.

The answer is bounded twice: the table itself has at most one row per detector pixel (a reflection
is listed where it is nearest to some pixel centre), and the route returns at most ``limit`` rows
(the strongest), counting the rest.
"""

from __future__ import annotations

import csv
from itertools import islice

from fastapi import APIRouter, Query

from sim_core.ground_truth import REFLECTION_COLUMNS
from sim_core.output_formats import REFLECTIONS

from app.deps import CtxDep, OwnedJobDep
from app.errors import ApiError, not_found
from app.image_sources import ImageNumber, finished_image
from app.response_models import Reflections
from app.schemas import error_responses

router = APIRouter(tags=["images"])

#: rows one answer may hold (about 100 bytes of JSON each)
MAX_ROWS = 20_000
#: the integer columns (h, k, l); the others are numbers
_INTEGER = 3


_EXAMPLE = {"n": 2, "columns": list(REFLECTION_COLUMNS),
            "reflections": [[4, 8, 4, 6.4686, 245.2198, 152.6223, 5.28e-05, 100.0, 16625.3],
                            [-1, 2, 2, 16.7336, 170.1607, 110.1958, -1.30e-05, 100.0, 15936.8]],
            "total": 167, "truncated": True}


@router.get("/v1/jobs/{job_id}/images/{n}/reflections", response_model=Reflections,
            summary="The predicted reflections of image n (its ground truth), strongest first",
            responses={200: {"description": "the strongest rows of the image's reflections.csv",
                             "content": {"application/json": {"example": _EXAMPLE}}},
                       **error_responses(401, 404, 409, 422)})
def get_reflections(job: OwnedJobDep, n: ImageNumber, ctx: CtxDep,
                    limit: int = Query(2000, ge=1, le=MAX_ROWS,
                                       description="the most rows returned (the strongest)")):
    """Image ``n``'s reflections on the detector, as the columns of its ``reflections.csv``:
    ``h, k, l, d_A, fast_px, slow_px, excitation_error, F, intensity`` (positions in pixels from
    the first pixel's outer corner: pixel centres at integer + 0.5), sorted by decreasing summed
    intensity. ``total`` counts every row of the table; ``truncated`` says that only the first
    ``limit`` are here. Every image of a stills dataset has them, the images of any other job
    that asked for the output ``reflections`` too; 404 for an image without."""
    src = finished_image(ctx, job, n)
    if src.entry(REFLECTIONS) is None:
        raise not_found("reflections", hint=f"image {n} has no predicted reflections: every "
                                            "still of a stills dataset has them; another job "
                                            "asks for the output 'reflections'")
    path = ctx.store.artifact_path(src.job.id, src.name(REFLECTIONS))
    if path is None:
        raise not_found("reflections", hint=f"image {n}'s reflections are not in the store")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, ()))
        if header != REFLECTION_COLUMNS:
            raise ApiError(500, f"image {n}'s reflections table has the columns {header}, not "
                                f"{REFLECTION_COLUMNS}")
        rows = [[int(x) if i < _INTEGER else float(x) for i, x in enumerate(row)]
                for row in islice(reader, limit)]
        rest = sum(1 for _ in reader)
    return {"n": n if src.number is not None else 1, "columns": list(REFLECTION_COLUMNS),
            "reflections": rows, "total": len(rows) + rest, "truncated": rest > 0}


__all__ = ["router", "MAX_ROWS"]
