"""Verifications: one submission renders a command on several sides, traces, compares and writes
a report (``jobs/kinds/verification.py``). The job itself is read, listed, canceled and downloaded
through the jobs routes; its report is the artifacts ``report.json`` and ``report.md``."""

from __future__ import annotations

from fastapi import APIRouter, Body

from app.deps import CtxDep, OwnerDep
from app.routes.jobs import job_response, retry_after
from app.schemas import JobRecord, error_responses
from app.verification import VerificationSubmission, create_verification
from app.views import job_url

router = APIRouter(tags=["verifications"])


@router.post("/v1/verifications", status_code=202, response_model=JobRecord,
             summary="Submit a verification (several sides of one command, compared)",
             responses=error_responses(401, 404, 422, 429))
def submit_verification(ctx: CtxDep, owner: OwnerDep,
                        body: VerificationSubmission = Body(...)):
    """Answers 202 with the queued verification (kind ``verification``). Render sides run as child
    jobs on the queue of their device (``GET /v1/jobs?parent=<id>``); once every side has ended a
    worker writes the report. A side that cannot run (no worker of its device within the queue
    timeout) is reported "not run". Invalid input is 422 naming the field (``sides.1.against``,
    ``sides.2.reference_image``, ...); another owner's job reads as unknown."""
    job_id = create_verification(ctx, owner, body)
    job = ctx.records.get(job_id)
    return job_response(job, 202, {"Location": job_url(job_id),
                                   "Retry-After": retry_after(ctx.settings, job.evaluations)})
