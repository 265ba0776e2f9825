"""The API's context: what every request handler needs (settings, Redis, records, the store)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from jobs.records import AsyncRecords, Records
from jobs.settings import Settings
from jobs.store import ArtifactStore


@dataclass
class AppContext:
    settings: Settings
    redis: redis.Redis
    records: Records
    store: ArtifactStore
    tokens: dict[str, str]
    metrics_registry: object
    #: reads of the hot paths (status polls, events) without a worker thread
    arecords: AsyncRecords | None = None

    @property
    def store_tmp(self) -> Path:
        return self.settings.data_dir / "tmp"
