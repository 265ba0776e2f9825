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

from app.deps import CtxDep, OwnerDep
from app.errors import ApiError, invalid, invalid_field, not_found
from app.schemas import EXAMPLE_JOB, TraceRequest, TraceSubmission, error_responses
from jobs.job import is_series
from jobs.images import ImageNumber, ImageSource, finished_image
from app.views import job_view
from app.routes.artifacts import serve_artifact
from app.routes.jobs import owned_job

router = APIRouter(tags=["traces"])
_PIXEL = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")
_TRACE_EXAMPLE = ("TRACE_PY_CONFIG: tracing pixel (spixel=128, fpixel=129)\n"
                  "TRACE_PY: pixel_pos_meters 0.1 0.0001 -0.0001\n...\n")


def trace_name(slow: int, fast: int) -> str:
    return f"trace_{slow}_{fast}.log"


def _has(rec: dict, name: str) -> bool:
    return any(a["name"] == name for a in rec.get("artifacts") or [])


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
def get_trace(job_id: str, request: Request, ctx: CtxDep, owner: OwnerDep,
              pixel: str = Query(..., description="slow,fast", examples=["128,129"])):
    slow, fast = _pixel(pixel)
    rec = owned_job(request, job_id, owner)
    if is_series(rec):
        raise ApiError(409, "a series traces one image at a time",
                       hint=f"GET /v1/jobs/{job_id}/images/<n>/trace?pixel={slow},{fast}")
    return serve_trace(request, ctx, rec, ImageSource(rec), slow, fast)


@router.get("/v1/jobs/{job_id}/images/{n}/trace", summary="The trace of one pixel of image n",
            response_class=PlainTextResponse, responses=_TRACE_RESPONSES)
def get_image_trace(job_id: str, n: ImageNumber, request: Request, ctx: CtxDep, owner: OwnerDep,
                    pixel: str = Query(..., description="slow,fast", examples=["128,129"])):
    """Image ``n`` (as in the file numbering) of a series, or ``n = 1`` of a single job."""
    slow, fast = _pixel(pixel)
    rec = owned_job(request, job_id, owner)
    return serve_trace(request, ctx, rec, finished_image(ctx, rec, n), slow, fast)


def serve_trace(request: Request, ctx, rec: dict, src: ImageSource, slow: int, fast: int):
    job_id = rec["id"]
    name = trace_name(slow, fast)
    if src.entry(name) is not None:
        return serve_artifact(request, src.job, src.name(name))
    tid = ctx.records.trace_jobs(job_id).get(_key(src, slow, fast))
    trec = ctx.records.get(tid) if tid else None
    post_hint = f"POST {_base(job_id, src)}/traces {{\"pixels\": [[{slow}, {fast}]]}} to trace it"
    if trec is None:
        raise not_found("trace", hint=f"pixel ({slow}, {fast}) was not traced; {post_hint}"
                        if src.job["status"] == "finished" else
                        f"pixel ({slow}, {fast}) was not traced; once the job is finished, "
                        f"{post_hint}")
    if trec["status"] == "finished" and _has(trec, name):
        return serve_artifact(request, trec, name)
    if trec["status"] in ("queued", "running"):
        raise not_found("trace", hint=f"pixel ({slow}, {fast}) is being traced by job {tid} "
                                      f"({trec['status']}); try again shortly", trace_job=tid)
    raise not_found("trace", hint=f"the trace job {tid} of pixel ({slow}, {fast}) ended "
                                  f"{trec['status']}: {trec.get('error_message') or ''}; "
                                  f"{post_hint}", trace_job=tid)


def _trace_config(rec: dict, src: ImageSource):
    config = load_config(rec["config"])
    if src.number is None:
        return config
    from sim_core.series import image_config
    return image_config(config, src.number)


def _claim_pixels(ctx, owner: str, rec: dict, src: ImageSource, pixels) -> tuple:
    """The state of each pixel, and the trace job queued for those nobody traces yet."""
    from app.submit import create_job

    job_id = rec["id"]
    S, F = rec["shape"]
    existing = ctx.records.trace_jobs(job_id)
    base = _base(job_id, src)

    def url(s: int, f: int) -> str:
        return f"{base}/trace?pixel={s},{f}"

    states = []
    todo = []
    for s, f in pixels:
        if src.entry(trace_name(s, f)) is not None:
            states.append({"pixel": [s, f], "status": "ready", "job": src.job["id"],
                           "url": url(s, f)})
            continue
        tid = existing.get(_key(src, s, f))
        trec = ctx.records.get(tid) if tid else None
        if trec is not None and trec["status"] in ("queued", "running", "finished"):
            states.append({"pixel": [s, f], "job": tid, "url": url(s, f),
                           "status": "ready" if trec["status"] == "finished" else "pending"})
            continue
        todo.append((s, f))
    trace_job = None
    if todo:
        config = _trace_config(rec, src)
        config.run.trace_pixels = todo
        per_image = int(src.job.get("evaluations") or 0) // max(1, len(src.job.get(
            "image_numbers") or [1]))
        per_pixel = max(1, per_image // max(1, S * F))
        what = job_id if src.number is None else f"image {src.number} of {job_id}"
        tid = create_job(ctx, owner, kind="trace", config=config,
                         file_names=rec.get("file_names") or {}, outputs=[], shape=(S, F),
                         evaluations=per_pixel * len(todo), warnings=[],
                         label=f"traces of {what}", parent=job_id, trace_pixels=todo)
        ctx.records.set_trace_jobs(job_id, [_key(src, s, f) for s, f in todo], tid)
        trace_job = ctx.records.get(tid)
        states += [{"pixel": [s, f], "status": "pending", "job": tid, "url": url(s, f)}
                   for s, f in todo]
    return trace_job, states


_POST_RESPONSES = {202: {"content": {"application/json": {"example": {
    "trace_job": dict(EXAMPLE_JOB, kind="trace", status="queued"),
    "pixels": [{"pixel": [10, 20], "status": "pending", "job": EXAMPLE_JOB["id"],
                "url": "/v1/jobs/<id>/trace?pixel=10,20"}]}}}},
    **error_responses(401, 404, 409, 422)}


@router.post("/v1/jobs/{job_id}/traces", response_model=TraceSubmission,
             summary="Trace more pixels of a finished job", responses=_POST_RESPONSES)
def post_traces(job_id: str, request: Request, ctx: CtxDep, owner: OwnerDep,
                body: TraceRequest = Body(...)):
    """Queues a small trace job on the job's config for the pixels not traced yet (202), or answers
    200 when every pixel is traced or being traced already."""
    rec = owned_job(request, job_id, owner)
    if rec.get("kind") == "trace":
        raise ApiError(409, "a trace job cannot be traced further; use its parent job",
                       hint=f"POST /v1/jobs/{rec.get('parent')}/traces")
    if is_series(rec):
        raise ApiError(409, "a series traces one image at a time",
                       hint=f"POST /v1/jobs/{job_id}/images/<n>/traces")
    if rec["status"] != "finished":
        raise ApiError(409, f"job is {rec['status']}, not finished",
                       hint="pixels given at submission (trace_pixels) are traced with the image")
    return queue_traces(ctx, owner, rec, ImageSource(rec), body)


@router.post("/v1/jobs/{job_id}/images/{n}/traces", response_model=TraceSubmission,
             summary="Trace more pixels of image n of a series", responses=_POST_RESPONSES)
def post_image_traces(job_id: str, n: ImageNumber, request: Request, ctx: CtxDep, owner: OwnerDep,
                      body: TraceRequest = Body(...)):
    """As ``POST /v1/jobs/{id}/traces``, on the config of image ``n`` (its φ range and seed)."""
    rec = owned_job(request, job_id, owner)
    if rec.get("kind") == "trace":
        raise ApiError(409, "a trace job cannot be traced further; use its parent job",
                       hint=f"POST /v1/jobs/{rec.get('parent')}/traces")
    return queue_traces(ctx, owner, rec, finished_image(ctx, rec, n), body)


def queue_traces(ctx, owner: str, rec: dict, src: ImageSource, body: TraceRequest):
    job_id = rec["id"]
    S, F = rec["shape"]
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
        from app.errors import limit_exceeded
        raise limit_exceeded("pixels", "max_trace_pixels", len(pixels),
                             ctx.settings.max_trace_pixels, "the number of traced pixels")
    # two requests for the same pixel at once would both see it untraced and each queue a trace
    # job: the read-check-create below runs under a per-job Redis lock
    try:
        with ctx.redis.lock(f"{ctx.records.k.traces(job_id)}:lock", timeout=30,
                            blocking_timeout=20):
            trace_job, states = _claim_pixels(ctx, owner, rec, src, pixels)
    except LockError:
        raise ApiError(503, "the job's traces are being queued by another request",
                       hint="try again shortly", headers={"Retry-After": "1"}) from None
    body_out = {"trace_job": job_view(trace_job) if trace_job else None, "pixels": states}
    return JSONResponse(body_out, status_code=202 if trace_job else 200,
                        headers={"Location": f"/v1/jobs/{trace_job['id']}"} if trace_job else None)
