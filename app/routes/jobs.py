"""Jobs: submit, read (with ETag), list, cancel."""

from __future__ import annotations

import math
import re
from typing import Optional

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from app.context import AppContext
from app.deps import CtxDep, OwnedJobDep, OwnerDep
from app.errors import ApiError, invalid_field, job_not_found
from app.schemas import EXAMPLE_JOB, JobList, JobRecord, JobSubmission, Status, error_responses
from app.submit import create_job, create_series, idempotency, prepare, replayed_job
from app.views import etag_matches, job_url, job_view
from jobs import queue as rq_queue
from jobs.job import Job, JobKind, JobStatus

router = APIRouter(tags=["jobs"])
#: ASCII digits only: str.isdigit() also takes '²', which int() refuses
_CURSOR = re.compile(r"[0-9]{1,18}")

_SUBMIT_EXAMPLES = {
    "config": {"summary": "a config", "value": JobSubmission.model_config["json_schema_extra"][
        "examples"][0]},
    "nanobragg_args": {"summary": "a nanoBragg command line with uploaded files",
                       "value": JobSubmission.model_config["json_schema_extra"]["examples"][1]},
}
_QUEUED = dict(EXAMPLE_JOB, status="queued", progress=0.0, started_at=None, finished_at=None,
               artifacts=[], attempts=0, worker=None, device="auto")


def job_response(job: Job, status_code: int = 200, headers: Optional[dict] = None) -> Response:
    h = {"ETag": job.etag}
    h.update(headers or {})
    return JSONResponse(job_view(job), status_code=status_code, headers=h)


def retry_after(settings, evaluations: int) -> str:
    return str(max(1, min(60, math.ceil(evaluations / settings.retry_after_rate))))


@router.post("/v1/jobs", status_code=202, response_model=JobRecord,
             summary="Submit a simulation job",
             responses={202: {"content": {"application/json": {"example": _QUEUED}},
                              "headers": {"Location": {"schema": {"type": "string"}},
                                          "Retry-After": {"schema": {"type": "integer"}}}},
                        **error_responses(401, 422, 429)})
def submit_job(ctx: CtxDep, owner: OwnerDep,
               body: JobSubmission = Body(..., openapi_examples=_SUBMIT_EXAMPLES),
               idempotency_key: Optional[str] = Header(
                   None, description="a key of the client's choosing (e.g. a UUID): a retry with "
                                     "the same key and body returns the job the first request "
                                     "created; kept 24 h per owner")):
    """Answers 202 with the queued job, ``Location`` and ``Retry-After``. Invalid input is 422 with
    the path of each bad field; nothing is queued then. Over one of the owner's limits of
    unfinished work (jobs, images, evaluations) it is 429 naming the limit, with ``Retry-After``.
    With ``Idempotency-Key`` a retry returns the original job (``Idempotent-Replayed: true``);
    the same key with another body is 422."""
    idem = idempotency(idempotency_key, body.model_dump(mode="json"))
    job_id = replayed_job(ctx, owner, idem)
    replayed = job_id is not None
    if job_id is None:
        prepared = prepare(ctx, owner, body)
        if prepared.is_series:
            job_id = create_series(ctx, owner, prepared, label=body.label, idem=idem)
        else:
            job_id = create_job(ctx, owner, kind=JobKind.render, config=prepared.config,
                                file_names=prepared.file_names, outputs=prepared.outputs,
                                shape=prepared.shape, evaluations=prepared.evaluations,
                                warnings=prepared.warnings, label=body.label, idem=idem)
    job = ctx.records.get(job_id)
    if job is None:  # replayed, but the job has been removed since (retention)
        raise job_not_found(job_id)
    headers = {"Location": job_url(job_id),
               "Retry-After": retry_after(ctx.settings, job.evaluations)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return job_response(job, 202, headers)


@router.get("/v1/jobs", response_model=JobList, summary="The caller's jobs, newest first",
            responses=error_responses(401, 422))
def list_jobs(status: Optional[Status]
              = Query(None, description="only jobs in this status"),
              limit: int = Query(20, ge=1, le=200),
              cursor: Optional[str] = Query(None, description="next_cursor of the previous page"),
              parent: Optional[str] = Query(None, description="a series' id: its child jobs, in "
                                                              "image order"),
              *, ctx: CtxDep, owner: OwnerDep):
    """The caller's jobs (a series once, not its children), newest first; with ``parent`` the
    children of that series in image order."""
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise invalid_field("cursor", "expected the next_cursor of a previous page")
    if parent is not None:
        prec = ctx.records.get_owned(parent, owner)
        if prec is None:
            raise job_not_found(parent)
        found, nxt = ctx.records.children_of(parent, limit=limit,
                                             cursor=int(cursor) if cursor else None)
        if status:
            found = [j for j in found if j.status.value == status]
    else:
        found, nxt = ctx.records.list(owner, status=status, limit=limit,
                                      cursor=int(cursor) if cursor else None)
    return JSONResponse({"jobs": [job_view(j) for j in found],
                         "next_cursor": str(nxt) if nxt is not None else None})


@router.get("/v1/jobs/{job_id}", response_model=JobRecord, summary="A job's status and artifacts",
            responses={304: {"description": "not modified since the ETag in If-None-Match"},
                       **error_responses(401, 404)})
async def get_job(job_id: str, request: Request, ctx: CtxDep, owner: OwnerDep):
    """With an ``ETag``; ``If-None-Match`` with it gives 304 while nothing changed."""
    job = await ctx.arecords.get_owned(job_id, owner)
    if job is None:
        raise job_not_found(job_id)
    if etag_matches(request.headers.get("if-none-match"), job.etag):
        return Response(status_code=304, headers={"ETag": job.etag})
    return job_response(job)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobRecord, summary="Cancel a job",
             responses={202: {"model": JobRecord,
                              "description": "running: it stops at its next chunk"},
                        **error_responses(401, 404, 409)})
def cancel_job(job: OwnedJobDep, ctx: CtxDep):
    """A queued job is canceled at once (200); a running job stops at its next chunk and ends
    ``canceled`` with no artifacts (202). A finished or failed job gives 409. A series cancels
    every child (those running stop at their next chunk) and ends ``canceled`` with the last;
    a child of a series is canceled with its series only (409). A verification cancels every
    side and its report step."""
    if job.is_series:
        return _cancel_series(ctx, job)
    if job.kind is JobKind.verification:
        return _cancel_verification(ctx, job)
    if job.is_series_child:
        raise ApiError(409, "a child of a series is canceled with its series",
                       hint=f"POST /v1/jobs/{job.parent}/cancel")
    outcome = ctx.records.cancel(job.id, job.owner)
    if outcome == "canceled":
        rq_queue.discard(ctx.redis, job.rq_id)
        return job_response(ctx.records.get(job.id))
    if outcome == "cancel-requested":
        return job_response(ctx.records.get(job.id), 202)
    if outcome in ("finished", "failed"):
        raise ApiError(409, f"job is already {outcome}")
    return job_response(ctx.records.get(job.id))


def _cancel_series(ctx: AppContext, job: Job) -> Response:
    outcome = ctx.records.mark_cancel(job.id, job.owner)
    if outcome in ("finished", "failed"):
        raise ApiError(409, f"job is already {outcome}")
    if outcome == "cancel-requested":
        cancel_children(ctx, job.id, job.owner)
    now = ctx.records.get(job.id)
    return job_response(now, 200 if now.status is JobStatus.canceled else 202)


def _cancel_verification(ctx: AppContext, job: Job) -> Response:
    from app.verification import cancel_verification

    outcome = cancel_verification(ctx, job)
    if outcome in ("finished", "failed"):
        raise ApiError(409, f"job is already {outcome}")
    now = ctx.records.get(job.id)
    return job_response(now, 200 if now.status is JobStatus.canceled else 202)


def cancel_children(ctx: AppContext, parent: str, owner: str) -> None:
    """Cancel every live child of a series (those not made yet never will be): queued ones at
    once (their queue entries dropped), running ones at their next chunk; each child's move is
    rolled up into the parent."""
    canceled = ctx.records.cancel_children(parent, owner)
    by_queue: dict[str, list[str]] = {}
    for c in canceled:
        by_queue.setdefault(c.queue, []).append(c.rq_id)
    for queue, rq_ids in by_queue.items():
        rq_queue.discard_many(ctx.redis, queue, rq_ids)
