"""The FastAPI application: ``create_app()`` wires settings, Redis, the store and the routers."""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import asynccontextmanager

import redis
import redis.asyncio as aredis
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import apidocs, conditional, contract, errors, web, work
from app.context import AppContext
from app.guard import RequestGuard
from app.image_work import ImageWorkGate
from jobs.prometheus import make_registry
from jobs.records import AsyncRecords, Records
from app.routes import (artifacts, datasets, events, files, health, images, jobs, traces,
                        truth, verifications)
from jobs.sweeper import SweeperThread
from jobs.settings import Settings, get_settings
from jobs.store import open_store

log = logging.getLogger("bragg.api")

DESCRIPTION = """Remote nanoBragg simulations. Upload input files, submit a job (a config or a
nanoBragg command line), poll it (or follow its events), download the image, traces and the
reproducibility bundle. Every route but /healthz, /readyz, /metrics and the docs needs
`Authorization: Bearer <token>` when tokens are configured."""


def _preload() -> None:
    try:
        import sim_core.cost  # noqa: F401
        import sim_core.nanobragg_args  # noqa: F401
    except Exception:  # noqa: BLE001 - the first submission will report it
        log.exception("preloading the simulator's config parts failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    conn = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    records = Records(conn, settings.namespace)
    ctx = AppContext(settings=settings, redis=conn, records=records, store=open_store(settings),
                     tokens=settings.token_table(),
                     metrics_registry=make_registry(conn, records, settings.namespace))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.api_preload_simulator:
            threading.Thread(target=_preload, name="preload-sim-core", daemon=True).start()
        aconn = aredis.Redis.from_url(settings.redis_url)
        ctx.arecords = AsyncRecords(aconn, settings.namespace)
        # recovery and retention also run where no worker is left
        sweeper = SweeperThread(ctx, f"api.{socket.gethostname()}.{os.getpid()}")
        sweeper.start()
        yield
        sweeper.stop()
        work.shutdown()
        await aconn.aclose()
        conn.close()

    # operation ids are the route functions' names (submit_job, get_trace, get_dataset): the
    # names a generated client gives its functions
    app = FastAPI(title="bragg-service", version=_version(), description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None,
                  generate_unique_id_function=lambda route: route.name)
    app.state.ctx = ctx
    errors.install(app)
    for r in (files.router, jobs.router, traces.router, artifacts.router, datasets.router,
              images.router, truth.router, events.router, health.router, verifications.router):
        app.include_router(r)
    apidocs.install(app)  # /docs and /redoc without a CDN (app/apidocs.py)
    web.install(app)  # the web page at / (app/web.py)
    app.add_middleware(RequestGuard, ctx_of=lambda: ctx)
    app.add_middleware(ImageWorkGate, ctx_of=lambda: ctx)  # image requests wait for a slot first
    conditional.install(app)  # 304 for an unchanged job list, gzip (app/conditional.py)
    app.openapi = lambda: _openapi(app)
    return app


#: routes that answer without a token
PUBLIC = ("/healthz", "/readyz", "/metrics")


def _openapi(app: FastAPI) -> dict:
    """The generated document, declaring the bearer token on every route that needs it, its
    error answers and downloads completed (app/contract.py)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        doc.setdefault("components", {})["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer <token>"}}
        for path, ops in doc.get("paths", {}).items():
            for op in ops.values():
                op["security"] = [] if path in PUBLIC or not path.startswith("/v1/") \
                    else [{"bearerAuth": []}]
        app.openapi_schema = contract.finish(doc, PUBLIC)
    return app.openapi_schema


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("bragg-service")
    except Exception:  # noqa: BLE001
        return "0+unknown"
