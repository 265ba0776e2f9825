"""Health and metrics: /healthz (process up), /readyz (Redis, the live workers and the devices they
serve), /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import CtxDep
from app.response_models import Health, Readiness
from app.schemas import ErrorBody
from jobs.queue import DEVICES, queue_name

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up", response_model=Health,
            responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
async def healthz():
    # on the event loop: it answers while the thread pool is busy
    return {"status": "ok"}


@router.get("/readyz", summary="Redis is reachable and at least one worker is alive",
            response_model=Readiness,
            responses={200: {"content": {"application/json": {"example": {
                "status": "ready", "redis": "ok", "devices": ["cpu", "auto"], "workers": [
                    {"name": "host.1234.cpu", "device": "cpu", "state": "idle"}]}}}},
                       503: {"model": ErrorBody, "content": {"application/json": {"example": {
                           "detail": "no live worker", "status": "not ready", "redis": "ok",
                           "workers": [], "reason": "no live worker"}}}}})
def readyz(ctx: CtxDep):
    try:
        ctx.redis.ping()
    except Exception as exc:  # noqa: BLE001 - reported
        return _not_ready(f"unreachable: {exc}", "Redis is unreachable")
    workers = ctx.records.live_workers()
    if not workers:
        return _not_ready("ok", "no live worker")
    served = {q for w in workers for q in w.queues}
    devices = [d for d in DEVICES if queue_name(ctx.settings.namespace, d) in served]
    return {"status": "ready", "redis": "ok", "devices": devices,
            "workers": [w.public() for w in workers]}


def _not_ready(redis_state: str, reason: str) -> JSONResponse:
    """503 in the API's error body (``detail``), with the readiness fields beside it."""
    return JSONResponse({"detail": reason, "status": "not ready", "redis": redis_state,
                         "workers": [], "reason": reason}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"example":
                                                        'bragg_jobs{status="finished"} 12.0\n'}}}})
def metrics(ctx: CtxDep):
    """Jobs by status, queue lengths, job durations, evaluations per second, live workers."""
    return Response(generate_latest(ctx.metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)
