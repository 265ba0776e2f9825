"""A job's images and its dataset: ``/v1/jobs/{id}/images/{n}/artifacts/{name}`` (image n's files,
named as a single job's) and ``/v1/jobs/{id}/dataset`` (every file of the job as one zip,
streamed, with one sha256.txt)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from app.deps import CtxDep, OwnedJobDep
from app.errors import ApiError, not_found
from app.contract import binary
from app.image_sources import NEXUS, ImageNumber, ImageSource, finished_image
from app.routes.artifacts import ARTIFACT_CONTENT, serve_artifact
from app.schemas import error_responses
from jobs.dataset import job_dataset, stream_zip
from jobs.job import JobStatus
from jobs.kinds import spec

router = APIRouter(tags=["artifacts"])


@router.get("/v1/jobs/{job_id}/images/{n}/artifacts/{name}", summary="Download a file of image n",
            response_class=Response,
            responses={200: {"description": "the bytes; ETag is their sha256",
                             "content": ARTIFACT_CONTENT},
                       **error_responses(401, 404, 409, 422)})
def get_image_artifact(job: OwnedJobDep, n: ImageNumber, name: str, request: Request,
                       ctx: CtxDep):
    """Image ``n`` of a series (as in the file numbering), under a single job's artifact names:
    ``floatimage.bin``, ``intimage.img``, ``noiseimage.img``, ``image.cbf``, ``preview.png``,
    ``run_metadata.json``, ``commands.txt``, ``trace_<slow>_<fast>.log``; a still's
    ``reflections.csv``, ``crystal.mat``, ``truth.json``; ``image.nxs`` of a series image is the
    NeXus data file of the child job that rendered it (its images as frames, each with its φ).
    For a single job ``n = 1`` is its image. 409 while the image is not rendered yet."""
    src = finished_image(ctx, job, n)
    if src.entry(name) is None:
        raise not_found("artifact", hint=f"image {n} has no {name}: its files are "
                                         f"{', '.join(_plain_names(src)) or 'none'}")
    return serve_artifact(request, ctx, src.job, src.name(name))


def _zip_type(request: Request) -> str:
    accept = request.headers.get("accept", "")
    if "application/octet-stream" in accept and "application/zip" not in accept:
        return "application/octet-stream"
    return "application/zip"


def _plain_names(src: ImageSource) -> list[str]:
    suffix = src.name("")
    nexus = src.name(NEXUS)  # a series image's: its child's data file, whatever its number
    out = []
    for a in src.job.artifacts:
        name = a.name
        if src.number is None:
            out.append(name)
        elif name == nexus:
            out.append(NEXUS)
        elif suffix in name:
            head, _, ext = name.partition(suffix)
            out.append(head + ext)
    return out


@router.get("/v1/jobs/{job_id}/dataset", summary="Every file of a finished job, as one zip",
            response_class=Response,
            responses={200: {"description": "a zip streamed as it is made; its last member, "
                                            "sha256.txt, lists every other member's sha256",
                             "content": binary("application/zip", "application/octet-stream")},
                       **error_responses(401, 404, 409)})
def get_dataset(job: OwnedJobDep, ctx: CtxDep, request: Request):
    """A series: every image's files, numbered (``floatimage_00001.bin``, ``intimage_00001.img``,
    ...), the series' ``run_metadata.json`` (every image with its φ range, seeds and files) and
    ``commands.txt`` (a loop that renders every image with ``nanobragg``), with the ``nexus``
    output the NXmx master file ``image.nxs`` over the child jobs' data files
    (``image_data_<first image>.nxs``, linked frame by frame), and ``sha256.txt`` over all of
    them. A stills dataset: also every image's truth (``reflections_00001.csv``,
    ``crystal_00001.mat``, ``truth_00001.json``), ``experiments.expt`` (every image's true
    crystal, beam and detector) and, in ``commands.txt``, each still's own command line. A single
    job: its artifacts. The archive is streamed as it is read from the store (memory does not
    grow with the dataset); a file whose bytes differ from its record ends the stream early, so a
    client never gets a wrong archive that looks complete. The bytes are served as
    ``application/zip``, or as ``application/octet-stream`` to a request that accepts that and
    not zip (client generators that know no zip type ask for bytes)."""
    if job.status is not JobStatus.finished:
        raise ApiError(409, f"job is {job.status.value}, not finished",
                       hint="the dataset is there once every image is finished")
    if not spec(job).has_images:
        raise not_found("dataset", hint=f"a {job.kind.value} job's files are its artifacts")
    extras, files = job_dataset(ctx, job)
    # the members made now are dated by the job's end: every download is the same bytes
    return StreamingResponse(stream_zip(files, extras, made_at=job.finished_at),
                             media_type=_zip_type(request),
                             headers={"Content-Disposition": f'attachment; filename="{job.id}.zip"',
                                      "Cache-Control": "private, no-cache"})
