"""The kinds of job, one module each, behind one table.

A row (:class:`KindSpec`) says how a kind is priced, whether it has a queue entry of its own, how a
worker runs it, and whether it has images (the image, viewer and dataset routes) and pixels that
can be traced. The worker dispatches through :data:`KINDS`; the routes' guards ask it. Adding a
kind is a module here (with its ``run`` and its pricing) and a row below
(``docs/architecture.md``: "how to add a job kind").

Runners import the simulator inside the function: the API imports this table without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from jobs.context import WorkerServices
from jobs.job import Job, JobKind
from jobs.running import RunningJob, RunResult

from . import render, series, trace, verification

#: ``run(ctx, job, running, device, staging)``: write the job's files into ``staging``
Runner = Callable[[WorkerServices, Job, RunningJob, str, Path], RunResult]


@dataclass(frozen=True)
class KindSpec:
    kind: JobKind
    description: str
    #: the evaluations the job costs, from the cost of one image of its config:
    #: ``price(per_image_evaluations, images=..., pixels=..., detector_pixels=...)``
    price: Callable[..., int]
    #: how a worker runs it (None: no worker does; a series' children are render jobs)
    run: Optional[Runner]
    #: it has a queue entry of its own (a series' parent has none: its children have)
    queued: bool = True
    #: it has images (image, viewer and dataset routes)
    has_images: bool = True
    #: pixels of its images can be traced by a trace job (POST .../traces)
    traceable: bool = True


KINDS: dict[JobKind, KindSpec] = {
    JobKind.render: KindSpec(JobKind.render, render.DESCRIPTION, render.price, render.run),
    JobKind.series: KindSpec(JobKind.series, series.DESCRIPTION, series.price, None, queued=False),
    JobKind.trace: KindSpec(JobKind.trace, trace.DESCRIPTION, trace.price, trace.run,
                            has_images=False, traceable=False),
    # queued by ROLLUP once its render sides (child render jobs) have ended: the report step
    JobKind.verification: KindSpec(JobKind.verification, verification.DESCRIPTION,
                                   verification.price, verification.run, has_images=False,
                                   traceable=False),
}


def spec(job: Job) -> KindSpec:
    return KINDS[job.kind]


__all__ = ["KINDS", "KindSpec", "Runner", "spec"]
