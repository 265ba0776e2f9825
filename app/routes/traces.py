"""Per-pixel traces: download those traced at submission, or trace more pixels of a finished job
(or of one image of a series: ``/v1/jobs/{id}/images/{n}/trace``).

Tracing more pixels is a small job of its own (kind ``trace``) on the parent's stored config (of a
series: image n's config); the parent keeps a map pixel -> trace job, so that
``GET /v1/jobs/{id}/trace?pixel=S,F`` serves the pixel from the parent's artifacts or from its
trace job once that is finished (404 with a hint before).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from redis.exceptions import LockError

from sim_core.config import load_config
from sim_core.output_formats import trace_name

from app.context import AppContext
from app.deps import CtxDep, OwnedJobDep, OwnerDep
from app.errors import ApiError, invalid, invalid_field, limit_exceeded, not_found
from app.image_sources import ImageNumber, ImageSource, finished_image
from app.routes.artifacts import serve_artifact
from app.schemas import EXAMPLE_JOB, TraceRequest, TraceSubmission, error_responses
from app.views import job_view
from jobs.job import Job, JobKind, JobStatus
from jobs.kinds import KINDS, spec

router = APIRouter(tags=["traces"])
_PIXEL = re.compile(r"^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$")
_TRACE_EXAMPLE = ("TRACE_PY_CONFIG: tracing pixel (spixel=128, fpixel=129)\n"
                  "TRACE_PY: pixel_pos_meters 0.1 0.0001 -0.0001\n...\n")


_TRACE_RESPONSES = {200: {"content": {"text/plain": {"example": _TRACE_EXAMPLE}}},
                    404: {"description": "not traced (yet); the body says what to do",
                          "content": {"application/json": {"example": {
                              "detail": "trace not found", "hint": "POST /v1/jobs/<id>/traces "
                              "{\"pixels\": [[128, 129]]} to trace it"}}}},
                    **error_responses(401, 409, 422)}


def _pixel(pixel: str) -> tuple[int, int]:
    m = _PIXEL.match(pixel)
    if not m:
        raise invalid_field("pixel", "expected 'slow,fast', e.g. pixel=128,129")
    return int(m.group(1)), int(m.group(2))


def _key(src: ImageSource, s: int, f: int) -> str:
    return f"{s},{f}" if src.number is None else f"{src.number}:{s},{f}"


def _base(job_id: str, src: ImageSource) -> str:
    return f"/v1/jobs/{job_id}" + ("" if src.number is None else f"/images/{src.number}")


@router.get("/v1/jobs/{job_id}/trace", summary="The trace of one pixel (text)",
            response_class=PlainTextResponse, responses=_TRACE_RESPONSES)
def get_trace(job: OwnedJobDep, request: Request, ctx: CtxDep,
              pixel: str = Query(..., description="slow,fast", examples=["128,129"])):
    slow, fast = _pixel(pixel)
    if job.is_series:
        raise ApiError(409, "a series traces one image at a time",
                       hint=f"GET /v1/jobs/{job.id}/images/<n>/trace?pixel={slow},{fast}")
    return serve_trace(request, ctx, job, ImageSource(job), slow, fast)


@router.get("/v1/jobs/{job_id}/images/{n}/trace", summary="The trace of one pixel of image n",
            response_class=PlainTextResponse, responses=_TRACE_RESPONSES)
def get_image_trace(job: OwnedJobDep, n: ImageNumber, request: Request, ctx: CtxDep,
                    pixel: str = Query(..., description="slow,fast", examples=["128,129"])):
    """Image ``n`` (as in the file numbering) of a series, or ``n = 1`` of a single job."""
    slow, fast = _pixel(pixel)
    return serve_trace(request, ctx, job, finished_image(ctx, job, n), slow, fast)


def serve_trace(request: Request, ctx: AppContext, job: Job, src: ImageSource, slow: int,
                fast: int):
    name = trace_name(slow, fast)
    if src.entry(name) is not None:
        return serve_artifact(request, ctx, src.job, src.name(name))
    tid = ctx.records.trace_jobs(job.id).get(_key(src, slow, fast))
    tracer = ctx.records.get(tid) if tid else None
    post_hint = f"POST {_base(job.id, src)}/traces {{\"pixels\": [[{slow}, {fast}]]}} to trace it"
    if tracer is None:
        raise not_found("trace", hint=f"pixel ({slow}, {fast}) was not traced; {post_hint}"
                        if src.job.status is JobStatus.finished else
                        f"pixel ({slow}, {fast}) was not traced; once the job is finished, "
                        f"{post_hint}")
    if tracer.status is JobStatus.finished and tracer.artifact(name) is not None:
        return serve_artifact(request, ctx, tracer, name)
    if not tracer.ended:
        raise not_found("trace", hint=f"pixel ({slow}, {fast}) is being traced by job {tid} "
                                      f"({tracer.status.value}); try again shortly",
                        trace_job=tid)
    raise not_found("trace", hint=f"the trace job {tid} of pixel ({slow}, {fast}) ended "
                                  f"{tracer.status.value}: {tracer.error_message}; "
                                  f"{post_hint}", trace_job=tid)


def _trace_config(job: Job, src: ImageSource):
    config = load_config(job.config)
    if src.number is None:
        return config
    from sim_core.series import image_config
    return image_config(config, src.number)


def _claim_pixels(ctx: AppContext, owner: str, job: Job, src: ImageSource, pixels) -> tuple:
    """The state of each pixel, and the trace job queued for those nobody traces yet."""
    from app.submit import create_job

    S, F = job.shape
    existing = ctx.records.trace_jobs(job.id)
    base = _base(job.id, src)

    def url(s: int, f: int) -> str:
        return f"{base}/trace?pixel={s},{f}"

    states = []
    todo = []
    for s, f in pixels:
        if src.entry(trace_name(s, f)) is not None:
            states.append({"pixel": [s, f], "status": "ready", "job": src.job.id,
                           "url": url(s, f)})
            continue
        tid = existing.get(_key(src, s, f))
        tracer = ctx.records.get(tid) if tid else None
        if tracer is not None and tracer.status in (JobStatus.queued, JobStatus.running,
                                                    JobStatus.finished):
            states.append({"pixel": [s, f], "job": tid, "url": url(s, f),
                           "status": "ready" if tracer.status is JobStatus.finished
                           else "pending"})
            continue
        todo.append((s, f))
    trace_job = None
    if todo:
        config = _trace_config(job, src)
        config.run.trace_pixels = todo
        per_image = src.job.evaluations // max(1, len(src.job.image_numbers or [1]))
        what = job.id if src.number is None else f"image {src.number} of {job.id}"
        tid = create_job(ctx, owner, kind=JobKind.trace, config=config,
                         file_names=job.file_names, outputs=[], shape=(S, F),
                         evaluations=KINDS[JobKind.trace].price(per_image, pixels=len(todo),
                                                                detector_pixels=S * F),
                         warnings=[], label=f"traces of {what}", parent=job.id,
                         trace_pixels=todo)
        ctx.records.set_trace_jobs(job.id, [_key(src, s, f) for s, f in todo], tid)
        trace_job = ctx.records.get(tid)
        states += [{"pixel": [s, f], "status": "pending", "job": tid, "url": url(s, f)}
                   for s, f in todo]
    return trace_job, states


_POST_RESPONSES = {202: {"model": TraceSubmission, "content": {"application/json": {"example": {
    "trace_job": dict(EXAMPLE_JOB, kind=JobKind.trace.value, status="queued"),
    "pixels": [{"pixel": [10, 20], "status": "pending", "job": EXAMPLE_JOB["id"],
                "url": "/v1/jobs/<id>/trace?pixel=10,20"}]}}}},
    **error_responses(401, 404, 409, 422, 429)}


@router.post("/v1/jobs/{job_id}/traces", response_model=TraceSubmission,
             summary="Trace more pixels of a finished job", responses=_POST_RESPONSES)
def post_traces(job: OwnedJobDep, ctx: CtxDep, owner: OwnerDep, body: TraceRequest = Body(...)):
    """Queues a small trace job on the job's config for the pixels not traced yet (202), or answers
    200 when every pixel is traced or being traced already."""
    _traceable(job)
    if job.is_series:
        raise ApiError(409, "a series traces one image at a time",
                       hint=f"POST /v1/jobs/{job.id}/images/<n>/traces")
    if job.status is not JobStatus.finished:
        raise ApiError(409, f"job is {job.status.value}, not finished",
                       hint="pixels given at submission (trace_pixels) are traced with the image")
    return queue_traces(ctx, owner, job, ImageSource(job), body)


def _traceable(job: Job) -> None:
    if not spec(job).traceable:
        raise ApiError(409, f"a {job.kind.value} job cannot be traced further; use its parent job",
                       hint=f"POST /v1/jobs/{job.parent}/traces")


@router.post("/v1/jobs/{job_id}/images/{n}/traces", response_model=TraceSubmission,
             summary="Trace more pixels of image n of a series", responses=_POST_RESPONSES)
def post_image_traces(job: OwnedJobDep, n: ImageNumber, ctx: CtxDep, owner: OwnerDep,
                      body: TraceRequest = Body(...)):
    """As ``POST /v1/jobs/{id}/traces``, on the config of image ``n`` (its φ range and seed)."""
    _traceable(job)
    return queue_traces(ctx, owner, job, finished_image(ctx, job, n), body)


def queue_traces(ctx: AppContext, owner: str, job: Job, src: ImageSource, body: TraceRequest):
    S, F = job.shape
    pixels = []
    errs = []
    for i, (s, f) in enumerate(body.pixels):
        if not (0 <= s < S and 0 <= f < F):
            errs.append({"field": f"pixels.{i}", "message": f"pixel ({s}, {f}) is outside the "
                                                            f"detector of {S} slow x {F} fast"})
        elif (s, f) not in pixels:
            pixels.append((s, f))
    if errs:
        raise invalid(errs)
    if len(pixels) > ctx.settings.max_trace_pixels:
        raise limit_exceeded("pixels", "max_trace_pixels", len(pixels),
                             ctx.settings.max_trace_pixels, "the number of traced pixels")
    # two requests for the same pixel at once would both see it untraced and each queue a trace
    # job: the read-check-create below runs under a per-job Redis lock
    try:
        with ctx.records.trace_lock(job.id, timeout_s=30, wait_s=20):
            trace_job, states = _claim_pixels(ctx, owner, job, src, pixels)
    except LockError:
        raise ApiError(503, "the job's traces are being queued by another request",
                       hint="try again shortly", headers={"Retry-After": "1"}) from None
    body_out = {"trace_job": job_view(trace_job) if trace_job else None, "pixels": states}
    return JSONResponse(body_out, status_code=202 if trace_job else 200,
                        headers={"Location": f"/v1/jobs/{trace_job.id}"} if trace_job else None)
