"""Prometheus metrics, read from Redis at each scrape (the workers write them there).

``bragg_jobs{status}``, ``bragg_queue_length{queue}``, ``bragg_job_duration_seconds`` (histogram,
from start to finish of finished jobs), ``bragg_evaluations_total``, ``bragg_render_seconds_total``
(their ratio is the fleet's evaluations per second), ``bragg_evaluations_per_second{device}`` (the
latest finished job's), ``bragg_workers{device}``, ``bragg_retention_removed_total{what}``.
"""

from __future__ import annotations

from prometheus_client.core import (CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from jobs.queue import queue_lengths
from jobs.records import DURATION_BUCKETS, Records


class RedisCollector:
    def __init__(self, connection, records: Records, ns: str):
        self.r = connection
        self.records = records
        self.ns = ns

    def collect(self):
        jobs = GaugeMetricFamily("bragg_jobs", "Jobs by status", labels=["status"])
        for status, n in self.records.status_counts().items():
            jobs.add_metric([status], n)
        yield jobs
        ql = GaugeMetricFamily("bragg_queue_length", "Jobs waiting in each queue",
                               labels=["queue"])
        for device, n in queue_lengths(self.r, self.ns).items():
            ql.add_metric([device], n)
        yield ql
        m = self.records.metrics()
        buckets = []
        for b in DURATION_BUCKETS:
            buckets.append((str(float(b)), int(m.get(f"duration_le_{b}", 0))))
        count = int(m.get("duration_count", 0))
        buckets.append(("+Inf", count))
        h = HistogramMetricFamily("bragg_job_duration_seconds",
                                  "Seconds from start to end of finished jobs")
        h.add_metric([], buckets, float(m.get("duration_sum", 0.0)))
        yield h
        yield CounterMetricFamily("bragg_evaluations", "Evaluations rendered by finished jobs",
                                  value=int(m.get("evaluations_total", 0)))
        yield CounterMetricFamily("bragg_render_seconds", "Seconds spent rendering finished jobs",
                                  value=float(m.get("render_seconds_total", 0.0)))
        eps = GaugeMetricFamily("bragg_evaluations_per_second",
                                "Evaluations per second of the latest finished job, by device",
                                labels=["device"])
        for k, v in m.items():
            if k.startswith("last_eps:"):
                eps.add_metric([k.split(":", 1)[1]], float(v))
        yield eps
        removed = CounterMetricFamily("bragg_retention_removed",
                                      "What the retention sweeps removed (jobs, job_bytes, "
                                      "uploads, tmp, quota entries)", labels=["what"])
        for k, v in m.items():
            if k.startswith("retention_removed:"):
                removed.add_metric([k.split(":", 1)[1]], int(v))
        yield removed
        workers = GaugeMetricFamily("bragg_workers", "Live workers by device", labels=["device"])
        per: dict[str, int] = {}
        for w in self.records.live_workers():
            per[w.device] = per.get(w.device, 0) + 1
        for d, n in sorted(per.items()):
            workers.add_metric([d], n)
        yield workers


def make_registry(connection, records: Records, ns: str) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RedisCollector(connection, records, ns))
    return reg
