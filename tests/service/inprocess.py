"""The API in this test process (the real app on the session's real Redis, a namespace of its own,
no worker), driven through its ASGI interface: for checks of the API's own answers at its default
limits, and for the property-based tests that send it thousands of requests."""

from __future__ import annotations

import contextlib
import time

from starlette.testclient import TestClient

from app.main import create_app
from jobs.settings import Settings

TOKEN = "fuzz-token"


@contextlib.contextmanager
def inprocess_client(redis_url: str, data_dir, **limits):
    settings = Settings(redis_url=redis_url, namespace=f"inproc{time.monotonic_ns()}",
                        data_dir=data_dir, tokens=f"fuzzer:{TOKEN}",
                        api_preload_simulator=False, **limits)
    with TestClient(create_app(settings), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
