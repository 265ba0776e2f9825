"""GET /v1/jobs/{id}/events: Server-Sent Events with each status and progress change until the end."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import redis

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.deps import CtxDep, OwnerDep
from app.errors import job_not_found
from app.schemas import error_responses
from app.views import job_view

router = APIRouter(tags=["jobs"])
log = logging.getLogger("bragg.api")

_EXAMPLE = ('event: status\nid: 2\ndata: {"id": "3f9a...", "status": "running", "progress": 0.0, '
            '...}\n\nevent: progress\nid: 3\ndata: {"id": "3f9a...", "status": "running", '
            '"progress": 0.52, ...}\n\nevent: status\nid: 5\ndata: {"id": "3f9a...", "status": '
            '"finished", "progress": 1.0, ...}\n\n')


def sse(event: str, data: dict, event_id: str) -> bytes:
    return f"event: {event}\nid: {event_id}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/v1/jobs/{job_id}/events", summary="Status and progress changes (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"example": _EXAMPLE}}},
                       **error_responses(401, 404)})
async def job_events(job_id: str, request: Request, ctx: CtxDep, owner: OwnerDep):
    """One ``status`` event at once and at every status change, a ``progress`` event at every
    progress change; the stream ends after the terminal status (finished, failed, canceled). If
    the job store becomes unreachable the stream ends with an ``error`` event (reconnect later)."""
    job = await ctx.arecords.get_owned(job_id, owner)
    if job is None:
        raise job_not_found(job_id)

    async def stream():
        try:
            async for chunk in changes():
                yield chunk
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("events of job %s: the job store is unreachable (%s)", job_id, exc)
            yield sse("error", {"detail": "the job store (Redis) is unavailable",
                                "hint": "reconnect later"}, "error")

    async def changes():
        nonlocal job
        last_version = None
        last_status = None
        last_sent = time.monotonic()
        while True:
            if job is not None and job.version != last_version:
                view = job_view(job)
                kind = "status" if job.status != last_status else "progress"
                yield sse(kind, view, str(job.version))
                last_version, last_status = job.version, job.status
                last_sent = time.monotonic()
                if job.ended:
                    return
            elif time.monotonic() - last_sent > ctx.settings.events_keepalive_s:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(ctx.settings.events_poll_s)
            job = await ctx.arecords.get(job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
