"""Counters for /metrics and the presence of live workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .base import RecordsBase, s_

#: buckets of the job duration histogram (seconds)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600)


@dataclass(frozen=True)
class LiveWorker:
    """A worker whose presence key has not expired."""

    name: str
    device: str = ""
    state: str = ""
    job: str | None = None
    queues: list[str] = field(default_factory=list)
    pid: int = 0
    host: str = ""
    #: its compiled kernels: compiling (a core is busy with it), ready, off or failed
    kernels: str = ""

    def public(self) -> dict:
        return {"name": self.name, "device": self.device, "state": self.state, "job": self.job,
                "queues": self.queues, "pid": self.pid, "host": self.host,
                "kernels": self.kernels}


class MetricRecords(RecordsBase):
    def observe_job(self, duration_s: float, evaluations: int, render_s: float, eps: float,
                    device: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        for b in DURATION_BUCKETS:
            if duration_s <= b:
                pipe.hincrby(self._k.metrics, f"duration_le_{b}", 1)
        pipe.hincrby(self._k.metrics, "duration_count", 1)
        pipe.hincrbyfloat(self._k.metrics, "duration_sum", duration_s)
        if evaluations > 0:  # renders (trace jobs only add to the durations)
            pipe.hincrby(self._k.metrics, "evaluations_total", int(evaluations))
            pipe.hincrbyfloat(self._k.metrics, "render_seconds_total", render_s)
            pipe.hset(self._k.metrics, f"last_eps:{device.split(':')[0]}", f"{eps:.1f}")
        pipe.execute()

    def observed_rate(self) -> float:
        """Evaluations per second of one worker over the jobs rendered so far (their whole
        duration, overheads included); 0 before any."""
        evaluations, seconds = self.r.hmget(self._k.metrics, "evaluations_total", "duration_sum")
        if not evaluations or not seconds or float(seconds) <= 0:
            return 0.0
        return int(evaluations) / float(seconds)

    def count_retention(self, removed: dict[str, int]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for what, n in removed.items():
            if n:
                pipe.hincrby(self._k.metrics, f"retention_removed:{what}", n)
        pipe.execute()

    def metrics(self) -> dict[str, str]:
        return {s_(k): s_(v) for k, v in self.r.hgetall(self._k.metrics).items()}

    # -- workers ----------------------------------------------------------------------------------------
    def register_worker(self, name: str, fields: dict, ttl_s: int) -> None:
        """A worker's presence, renewed by its heartbeat; it expires ``ttl_s`` after the last."""
        mapping = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                   for k, v in fields.items()}
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self._k.worker(name), mapping=mapping)
        pipe.expire(self._k.worker(name), ttl_s)
        pipe.sadd(self._k.workers, name)
        pipe.execute()

    def unregister_worker(self, name: str) -> None:
        self.r.delete(self._k.worker(name))
        self.r.srem(self._k.workers, name)

    def worker_alive(self, name: str) -> bool:
        return bool(self.r.exists(self._k.worker(name)))

    def live_workers(self) -> list[LiveWorker]:
        """Workers whose presence has not expired (dead ones are dropped from the set)."""
        names = sorted(s_(m) for m in self.r.smembers(self._k.workers))
        if not names:
            return []
        pipe = self.r.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(self._k.worker(n))
        out, dead = [], []
        for n, raw in zip(names, pipe.execute()):
            if not raw:
                dead.append(n)
                continue
            w = {s_(k): s_(v) for k, v in raw.items()}
            out.append(LiveWorker(name=n, device=w.get("device", ""), state=w.get("state", ""),
                                  job=w.get("job") or None,
                                  queues=w.get("queues", "").split(","),
                                  pid=int(w.get("pid") or 0), host=w.get("host", ""),
                                  kernels=w.get("kernels", "")))
        if dead:
            self.r.srem(self._k.workers, *dead)
        return out


__all__ = ["MetricRecords", "LiveWorker", "DURATION_BUCKETS"]
