"""A trace job: the intermediate values of a few pixels of a finished image, one log per pixel
(``trace_<slow>_<fast>.log``), rendered on the config of the image it traces."""

from __future__ import annotations

import time
from pathlib import Path

from sim_core.output_formats import RUN_METADATA, trace_name

from jobs.artifacts import metadata, write_json
from jobs.context import WorkerServices
from jobs.job import Job
from jobs.running import RunningJob, RunResult
from jobs.store import write_atomic

DESCRIPTION = "traces of pixels of a finished image (its parent job)"


def price(per_image: int, *, images: int = 1, pixels: int = 0, detector_pixels: int = 0) -> int:
    """A pixel costs the image's evaluations over its pixels."""
    return max(1, per_image // max(1, detector_pixels)) * pixels


def run(ctx: WorkerServices, job: Job, running: RunningJob, device: str,
        staging: Path) -> RunResult:
    from sim_core.config import load_config
    from sim_core.simulate import trace_pixels

    from .render import input_resolver

    config = load_config(job.config)
    pixels = [tuple(p) for p in job.trace_pixels]
    t0 = time.perf_counter()
    traces = []
    for i, pixel in enumerate(pixels):
        running.check()
        traces += trace_pixels(config, [pixel], input_resolver(ctx), device=device,
                               dtype=config.run.dtype)
        running.progress((i + 1) / len(pixels))
    for t in traces:
        write_atomic(staging / trace_name(t.slow, t.fast), t.text)
    write_json(staging / RUN_METADATA,
               metadata(ctx, job, attempt=running.attempt, started=running.started,
                        ended=time.time(), config=config,
                        peak_memory=running.peak_memory(device), traces=pixels,
                        warnings=job.warnings))
    return RunResult(device=device, render_s=time.perf_counter() - t0)


__all__ = ["DESCRIPTION", "price", "run"]
