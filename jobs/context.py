"""What every part of the service is handed: the settings, Redis, the records and the store.

The API's ``AppContext`` and the worker's ``WorkerContext`` both are one; code of the core types
its ``ctx`` as :class:`ServiceContext`, and code that runs only in a worker as
:class:`WorkerServices` (with the worker's name, device and versions).
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from jobs.records import Records
from jobs.settings import Settings
from jobs.store import ArtifactStore


class ServiceContext(Protocol):
    settings: Settings
    redis: redis.Redis
    records: Records
    store: ArtifactStore


class WorkerServices(ServiceContext, Protocol):
    """A worker's context as the kinds' runners see it."""

    name: str
    device: str
    device_name: str
    host: str
    pid: int
    versions: dict
    heartbeat: Any


__all__ = ["ServiceContext", "WorkerServices"]
