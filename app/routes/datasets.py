"""A job's images and its dataset: ``/v1/jobs/{id}/images/{n}/artifacts/{name}`` (image n's files,
named as a single job's) and ``/v1/jobs/{id}/dataset`` (every file of the job as one zip,
streamed, with one sha256.txt)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from jobs.dataset import job_dataset, stream_zip
from app.deps import CtxDep, OwnerDep
from app.errors import ApiError, not_found
from app.schemas import error_responses
from jobs.images import ImageNumber, finished_image
from app.routes.artifacts import serve_artifact
from app.routes.jobs import owned_job

router = APIRouter(tags=["artifacts"])


@router.get("/v1/jobs/{job_id}/images/{n}/artifacts/{name}", summary="Download a file of image n",
            response_class=Response,
            responses={200: {"description": "the bytes; ETag is their sha256",
                             "content": {"application/octet-stream": {}, "image/png": {},
                                         "application/json": {}}},
                       **error_responses(401, 404, 409, 422)})
def get_image_artifact(job_id: str, n: ImageNumber, name: str, request: Request, ctx: CtxDep,
                       owner: OwnerDep):
    """Image ``n`` of a series (as in the file numbering), under a single job's artifact names:
    ``floatimage.bin``, ``intimage.img``, ``noiseimage.img``, ``image.cbf``, ``preview.png``,
    ``run_metadata.json``, ``commands.txt``, ``trace_<slow>_<fast>.log``. For a single job
    ``n = 1`` is its image. 409 while the image is not rendered yet."""
    rec = owned_job(request, job_id, owner)
    src = finished_image(ctx, rec, n)
    if src.entry(name) is None:
        raise not_found("artifact", hint=f"image {n} has no {name}: its files are "
                                         f"{', '.join(_plain_names(src)) or 'none'}")
    return serve_artifact(request, src.job, src.name(name))


def _plain_names(src) -> list[str]:
    suffix = src.name("")
    out = []
    for a in src.job.get("artifacts") or []:
        name = a["name"]
        if src.number is None:
            out.append(name)
        elif suffix in name:
            head, _, ext = name.partition(suffix)
            out.append(head + ext)
    return out


@router.get("/v1/jobs/{job_id}/dataset", summary="Every file of a finished job, as one zip",
            response_class=Response,
            responses={200: {"description": "a zip streamed as it is made; its last member, "
                                            "sha256.txt, lists every other member's sha256",
                             "content": {"application/zip": {}}},
                       **error_responses(401, 404, 409)})
def get_dataset(job_id: str, request: Request, ctx: CtxDep, owner: OwnerDep):
    """A series: every image's files, numbered (``floatimage_00001.bin``, ``intimage_00001.img``,
    ...), the series' ``run_metadata.json`` (every image with its φ range, seeds and files) and
    ``commands.txt`` (a loop that renders every image with ``nanobragg``), and ``sha256.txt``
    over all of them. A single job: its artifacts. The archive is streamed as it is read from the
    store (memory does not grow with the dataset); a file whose bytes differ from its record ends
    the stream early, so a client never gets a wrong archive that looks complete."""
    rec = owned_job(request, job_id, owner)
    if rec["status"] != "finished":
        raise ApiError(409, f"job is {rec['status']}, not finished",
                       hint="the dataset is there once every image is finished")
    if rec.get("kind") == "trace":
        raise not_found("dataset", hint="a trace job's files are its artifacts")
    extras, files = job_dataset(ctx, rec)
    return StreamingResponse(stream_zip(files, extras), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{job_id}.zip"',
                                      "Cache-Control": "private, no-cache"})
