"""``run_worker(device, queues)``: a job worker (``bragg worker``)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the worker's context imports torch: only when the worker starts
    from jobs.settings import Settings
    from worker.context import WorkerContext

log = logging.getLogger("bragg.worker")


def _queue_names(ns: str, queues):
    from jobs.queue import DEVICES, queue_name
    if not queues:
        return None
    return [queue_name(ns, q) if q in DEVICES else q for q in queues]


def warm_up(device: str) -> float:
    """Render, trace and write a tiny image once: compiles the generators, initialises the device."""
    from sim_core.config import load_config
    from sim_core.outputs import write_outputs
    from sim_core.simulate import simulate

    t0 = time.perf_counter()
    cfg = load_config({
        "crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}, "Na": 2, "Nb": 2, "Nc": 2,
                    "mosaic_spread_deg": 0.1, "mosaic_domains": 2},
        "structure_factors": {"default_F": 10},
        "detector": {"fast_pixels": 8, "slow_pixels": 8},
        "noise": {"seed": 1}, "run": {"trace_pixels": [[4, 4]]}})
    result = simulate(cfg, device=device)
    with tempfile.TemporaryDirectory() as d:
        write_outputs(result, Path(d), {"float": "f.bin", "smv": "i.img", "noise": "n.img",
                                        "png": "p.png"})
        from sim_core.nanobragg_args import config_to_args
        config_to_args(result.config)
    return time.perf_counter() - t0


def run_worker(device: str = "auto", queues=None, *, name: str | None = None,
               burst: bool = False) -> int:
    from jobs.settings import get_settings
    from jobs.sweeper import SweeperThread

    from worker import context
    from worker.worker import Heartbeat

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        ctx = context.build(device, _queue_names(settings.namespace, queues), name, settings)
    except RuntimeError as exc:
        print(f"bragg worker: error: {exc}", file=sys.stderr)
        return 2
    context.install(ctx)
    from sim_core import kernels
    # compile the fused kernels while already taking jobs; big jobs use them once ready
    kernels.warm_up_in_background(ctx.device)
    if settings.worker_warmup:
        log.info("warm-up on %s took %.2f s", ctx.device, warm_up(ctx.device))
    hb = Heartbeat(ctx)
    ctx.heartbeat = hb
    hb.register()
    hb.start()
    sweeper = SweeperThread(ctx, ctx.name, retention=False)
    sweeper.start()
    log.info("worker %s on %s (%s) listening on %s", ctx.name, ctx.device, ctx.device_name,
             ", ".join(ctx.queues))
    try:
        rc = _work(ctx, settings, burst)
    finally:
        sweeper.stop()
        hb.stop()
        try:
            hb.unregister()
        except Exception:  # noqa: BLE001
            pass
    # Everything a worker has to say is in Redis and the store by now. The interpreter's own exit
    # would wait for torch's compile workers and thread pools (seconds, much longer on a busy
    # machine), so a stop request would not be prompt: leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _work(ctx: WorkerContext, settings: Settings, burst: bool) -> int:
    """RQ's work loop, started again (with backoff) whenever it gave up on Redis: RQ retries a
    lost connection while it waits for a job, but quits on one while it does its bookkeeping."""
    import redis

    from worker.worker import BraggWorker

    delay = 1.0
    while True:
        worker = BraggWorker(ctx.queues, name=ctx.name, connection=ctx.redis, worker_ttl=60)
        try:
            _forget_previous_birth(worker)
            worker.work(burst=burst, logging_level=settings.log_level.upper(),
                        dequeue_strategy=_dequeue_strategy(ctx.device))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker %s: Redis unreachable (%s)", ctx.name, exc)
        except Exception:  # noqa: BLE001 - RQ's bookkeeping failed: the worker carries on
            log.exception("worker %s: the work loop failed", ctx.name)
        # a SIGTERM or SIGINT (RQ notes when it came) ends the loop for good
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return 0
        log.warning("worker %s: the work loop ended without a stop request; starting it again "
                    "in %.0f s", ctx.name, delay)
        time.sleep(delay)
        delay = min(30.0, delay * 2)
        try:
            ctx.redis.ping()
            delay = 1.0
        except (redis.ConnectionError, redis.TimeoutError):
            pass


def _dequeue_strategy(device: str):
    """A CPU worker's queues ('cpu', 'auto') take turns, so that a backlog on one never holds up
    the other; a CUDA worker takes CUDA jobs first (no other worker can)."""
    from rq.worker import DequeueStrategy
    return DequeueStrategy.DEFAULT if device == "cuda" else DequeueStrategy.ROUND_ROBIN


def _forget_previous_birth(worker) -> None:
    """A work loop that died with Redis left this worker's RQ key behind: it is ours."""
    if not worker.connection.hexists(worker.key, "death"):
        worker.connection.delete(worker.key)
