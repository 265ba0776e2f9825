"""A worker's warm state, kept between jobs: settings, Redis, the store, the device (initialised
once, CUDA included), version information for run_metadata.json, and the heartbeat thread."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import redis

from jobs.records import Records
from jobs.settings import Settings, get_settings
from jobs.store import ArtifactStore, open_store

_CTX: Optional["WorkerContext"] = None


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    records: Records
    store: ArtifactStore
    name: str
    device: str  # "cpu" or "cuda"
    device_name: str
    queues: list[str]
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    versions: dict = field(default_factory=dict)
    heartbeat: object = None


def resolve_device(device: str) -> str:
    from sim_core.devices import resolve_device as resolve
    from sim_core.errors import DeviceError
    try:
        return resolve(device)
    except DeviceError as exc:
        raise RuntimeError(f"--device {device}: {exc}") from None


def device_name(device: str) -> str:
    import torch
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or "cpu"


def git_commit() -> Optional[str]:
    env = os.environ.get("BRAGG_GIT_COMMIT")
    if env:
        return env
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions(device: str) -> dict:
    import torch
    try:
        from importlib.metadata import version
        project = version("bragg-service")
    except Exception:  # noqa: BLE001
        project = None
    return {"project": project, "git_commit": git_commit(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "numpy": __import__("numpy").__version__,
            "platform": platform.platform(), "executable": sys.executable}


def build(device: str = "auto", queues: Optional[list[str]] = None, name: Optional[str] = None,
          settings: Optional[Settings] = None) -> WorkerContext:
    from jobs.queue import default_queues
    settings = settings or get_settings()
    dev = resolve_device(device)
    conn = redis.Redis.from_url(settings.redis_url)
    ctx = WorkerContext(settings=settings, redis=conn, records=Records(conn, settings.namespace),
                        store=open_store(settings),
                        name=name or f"{socket.gethostname()}.{os.getpid()}.{dev}",
                        device=dev, device_name=device_name(dev),
                        queues=queues or default_queues(settings.namespace, dev))
    if settings.worker_threads:
        import torch
        torch.set_num_threads(settings.worker_threads)
    ctx.versions = versions(dev)
    return ctx


def install(ctx: WorkerContext) -> None:
    global _CTX
    _CTX = ctx


def get() -> WorkerContext:
    """The process's context (built with defaults when a plain RQ worker runs our task)."""
    global _CTX
    if _CTX is None:
        _CTX = build()
    return _CTX
