"""The worker process: RQ's in-process ``SimpleWorker`` plus a heartbeat thread.

Jobs run in the worker's own process, one after the other, so that the device (CUDA context,
kernels, the simulator's JIT-compiled generators) stays initialised between jobs. RQ's default
worker forks a child per job, and CUDA cannot be used in a child forked after the parent has
initialised it; the fork would also throw away the warm state every time.

The heartbeat thread keeps this worker visible (``ns:worker:<name>``, read by /readyz), renews the
lease of the job in progress, writes its progress and sees cancel requests. The sweeper
(jobs/sweeper.py), which requeues the jobs of dead workers, runs in a thread of its own, so that a
slow pass never delays a renewal.
"""

from __future__ import annotations

import logging
import threading

from rq.worker import SimpleWorker

from sim_core import kernels

from worker.context import WorkerContext


log = logging.getLogger("bragg.worker")


class BraggWorker(SimpleWorker):
    """A SimpleWorker (no fork): the device and warm state live as long as the process."""

    def subscribe(self) -> None:
        # RQ reads its command channel with a 60 s timeout, and its stop closes that channel while
        # the reading thread holds it: a stop then waited up to a minute. Reading with a 1 s timeout
        # lets the thread see the stop and the close go through at once.
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        # RQ's own bookkeeping of the job; the lease in jobs.records is what detects dead workers
        return int(job.timeout or 600) + 60


class Heartbeat(threading.Thread):
    def __init__(self, ctx: WorkerContext):
        super().__init__(name="bragg-heartbeat", daemon=True)
        self.ctx = ctx
        self.current = None  # tasks.RunningJob while a job runs
        self.stopping = threading.Event()

    def register(self) -> None:
        ctx = self.ctx
        job = self.current
        ctx.records.register_worker(ctx.name, {
            "name": ctx.name, "device": ctx.device, "device_name": ctx.device_name,
            "queues": ",".join(ctx.queues), "pid": ctx.pid, "host": ctx.host,
            "started_at": ctx.started_at, "state": "busy" if job else "idle",
            "job": job.id if job else "", "versions": ctx.versions,
            "kernels": kernels.state()}, ctx.settings.lease_ttl_s)

    def unregister(self) -> None:
        self.ctx.records.unregister_worker(self.ctx.name)

    def beat(self) -> None:
        self.register()
        job = self.current
        if job is not None:
            job.renew()

    def run(self) -> None:
        failing = False
        while not self.stopping.wait(self.ctx.settings.heartbeat_interval_s):
            try:
                self.beat()
                if failing:
                    log.info("heartbeat: Redis answers again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep beating (Redis may come back)
                if not failing:
                    log.warning("heartbeat failed (%s: %s); retrying", type(exc).__name__, exc)
                failing = True

    def stop(self) -> None:
        self.stopping.set()
