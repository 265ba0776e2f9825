"""Typed dependencies of the routes: ``ctx: CtxDep`` is the application's context, ``owner:
OwnerDep`` the owner named by the request's bearer token, and ``job: OwnedJobDep`` the job of the
path's ``{job_id}`` when that owner owns it (404 otherwise: another owner's job reads as unknown)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth import current_owner
from app.context import AppContext
from app.errors import job_not_found
from jobs.job import Job


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]
OwnerDep = Annotated[str, Depends(current_owner)]


def owned_job(job_id: str, ctx: CtxDep, owner: OwnerDep) -> Job:
    job = ctx.records.get_owned(job_id, owner)
    if job is None:
        raise job_not_found(job_id)
    return job


OwnedJobDep = Annotated[Job, Depends(owned_job)]

__all__ = ["CtxDep", "OwnerDep", "OwnedJobDep", "get_ctx", "owned_job"]
