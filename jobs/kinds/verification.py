"""A verification: one command rendered on several sides, traced, compared, and written down.

The parent record (kind ``verification``) holds the command's config and ``verification``, the
spec of its sides::

    {"sides": [{"name": "cpu:float64", "source": "render", "device": "cpu", "dtype": "float64",
                "phi_mode": "c-parity", "job": "<child id>"},
               {"name": "reference", "source": "reference", "image": "sha256:…",
                "trace": "sha256:…"},
               {"name": "job 3f2a…", "source": "job", "job": "<an earlier job of the owner>"}],
     "pixels": [[685, 1039]], "brightest": 1, "tolerance": null, "trace_tolerance": null}

Each render side is a child job (kind render, ``parent`` = the verification, ``image_numbers`` =
[its side number], its own config: device, dtype, φ mode) on the queue of its device, retried,
canceled and failed (``NoWorker``) like a series' child; ROLLUP counts it. When the last side has
ended ROLLUP queues the parent itself, on the ``auto`` queue: the *report step*, which a worker
runs here (``run``) like any job: it reads every side's image and traces (a child's artifacts, an
upload, an earlier job's artifacts), builds the report with :mod:`sim_core.verification` and writes
``report.json``, ``report.md``, every side's traces, ``commands.txt`` and ``run_metadata.json``
(``sha256.txt`` is sealed by the worker).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sim_core.output_formats import (BY_KEY, COMMANDS, REPORT_JSON, REPORT_MD, RUN_METADATA,
                                     side_trace_name)

from jobs.artifacts import metadata, write_json
from jobs.context import ServiceContext, WorkerServices
from jobs.job import Job, JobStatus, parse_file_id
from jobs.running import RunningJob, RunResult
from jobs.store import write_atomic

DESCRIPTION = ("a verification: render sides as child jobs, then a report comparing them with "
               "uploaded references or earlier jobs")

RENDER, REFERENCE, EARLIER = "render", "reference", "job"
FLOAT_IMAGE = BY_KEY["float"].artifact


def price(per_image: int, *, images: int = 1, pixels: int = 0, detector_pixels: int = 0) -> int:
    """The sum of its sides: ``images`` render sides, each an image (its traces included)."""
    return per_image * images


def enqueue_report(ctx: ServiceContext, parent_id: str) -> None:
    """Put a verification's queued report step on its queue (ROLLUP answered 'report'); should
    this fail, the sweeper's outbox repair enqueues it on its next pass."""
    from jobs import queue as rq_queue

    parent = ctx.records.get(parent_id)
    if parent is None or parent.status is not JobStatus.queued or not parent.rq_id:
        return
    rq_queue.enqueue(ctx.redis, parent.queue, parent.id, parent.rq_id, parent.timeout_s or 60)


def not_run_reason(side: Job) -> str:
    """Why a render side has no image, said plainly ("not run: no CUDA worker")."""
    if side.status is JobStatus.failed and side.error_type == "NoWorker":
        return f"not run: no {side.requested_device.upper()} worker"
    if side.status is JobStatus.canceled:
        return "not run: canceled"
    if side.status is JobStatus.failed:
        return f"failed: {side.error_type}: {side.error_message}"
    return f"not run: {side.status.value}"


def _read(ctx: WorkerServices, job_id: str, name: str) -> bytes:
    with ctx.store.open_artifact(job_id, name) as fh:
        return fh.read()


def _job_side(ctx: WorkerServices, spec: dict, job: Job, shape) -> tuple:
    """(Side, commands text, trace texts by artifact name) of a finished job's files."""
    import numpy as np

    from sim_core.trace_diff import parse_trace, pixels_of
    from sim_core.verification import Side

    side = Side(spec["name"], spec["source"], device=job.device or job.requested_device,
                dtype=job.dtype, phi_mode=spec.get("phi_mode", ""), job=job.id)
    if job.status is not JobStatus.finished:
        side.ran, side.reason = False, not_run_reason(job)
        return side, ""
    raw = _read(ctx, job.id, FLOAT_IMAGE)
    side.image = np.frombuffer(raw, dtype="<f4").reshape(tuple(job.shape or shape))
    for a in job.artifacts:
        if a.name.startswith("trace_") and a.name.endswith(".log"):
            text = _read(ctx, job.id, a.name).decode(errors="replace")
            for p in pixels_of(parse_trace(text)):
                if p is not None:
                    side.traces[p] = text
    if job.artifact(RUN_METADATA) is not None:
        md = json.loads(_read(ctx, job.id, RUN_METADATA))
        side.environment = {k: md.get(k) for k in ("python", "torch", "cuda", "numpy",
                                                    "device", "device_name", "dtype")}
        side.environment["service"] = (md.get("project") or {}).get("version")
        side.environment["worker"] = (md.get("worker") or {}).get("name")
        side.phi_mode = side.phi_mode or (md.get("config") or {}).get("run", {}).get("phi_mode",
                                                                                      "")
    commands = (_read(ctx, job.id, COMMANDS).decode()
                if job.artifact(COMMANDS) is not None else "")
    return side, commands


def _reference_side(ctx: WorkerServices, spec: dict, shape, pixels) -> tuple:
    import numpy as np

    from sim_core.trace_diff import parse_trace, pixels_of
    from sim_core.verification import Side

    side = Side(spec["name"], REFERENCE, dtype="float32", expects_traces=bool(spec.get("trace")),
                expects_phi_lines=False)
    lines = [f"# side {spec['name']}: uploaded by the user, made elsewhere (e.g. the C nanoBragg)"]
    if spec.get("image"):
        path = ctx.store.input_path(parse_file_id(spec["image"]))
        side.image = np.fromfile(path, dtype="<f4").reshape(tuple(shape))
        lines.append(f"#   float image {spec.get('image_name', '')} ({spec['image']})")
    if spec.get("trace"):
        text = ctx.store.input_path(parse_file_id(spec["trace"])).read_text(errors="replace")
        found = [p for p in pixels_of(parse_trace(text)) if p is not None]
        if not found and pixels:  # a log without pixel headers: the first pixel asked for
            found = [tuple(pixels[0])]
        for p in found:
            side.traces[tuple(p)] = text
        lines.append(f"#   trace log {spec.get('trace_name', '')} ({spec['trace']})")
    side.environment = {"uploaded": ", ".join(
        spec.get(k, "") for k in ("image_name", "trace_name") if spec.get(k))}
    return side, "\n".join(lines) + "\n"


def brightest(image, n: int) -> list[tuple[int, int]]:
    """The ``n`` brightest pixels (slow, fast) of an image, brightest first."""
    import numpy as np

    flat = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=-np.inf).ravel()
    n = min(n, flat.size)
    idx = np.argsort(-flat, kind="stable")[:n]
    return [tuple(int(v) for v in divmod(int(i), image.shape[1])) for i in idx]


def _brightest_of_first(sides: list, pixels: list, n: int) -> list[tuple[int, int]]:
    """The brightest pixels of the first side that ran: those a render side traced besides the
    given pixels (it picked them among its rendered pixels, the ROI's), else its image's."""
    first = next((s for s in sides if s.ran and s.image is not None), None)
    if first is None:
        return []
    if first.source == RENDER:
        return [p for p in first.traces if p not in pixels][:n]
    return [p for p in brightest(first.image, n) if p not in pixels]


def run(ctx: WorkerServices, job: Job, running: RunningJob, device: str,
        staging: Path) -> RunResult:
    """The report step: every side has ended; compare them and write the report."""
    from sim_core.config import load_config
    from sim_core.sampling import resolve_sampling
    from sim_core.verification import build_report, format_markdown

    t0 = time.perf_counter()
    spec = job.verification
    config = load_config(job.config)
    shape = tuple(job.shape)
    pixels = [tuple(p) for p in spec.get("pixels", [])]
    sides, commands = [], []
    for sd in spec["sides"]:
        running.check()
        if sd["source"] == REFERENCE:
            side, cmd = _reference_side(ctx, sd, shape, pixels)
        else:
            other = ctx.records.get(sd["job"])
            if other is None:
                from sim_core.verification import Side
                side, cmd = Side(sd["name"], sd["source"], ran=False,
                                 reason=f"not run: job {sd['job']} no longer exists"), ""
            else:
                side, cmd = _job_side(ctx, sd, other, shape)
        sides.append(side)
        if cmd:
            commands.append(f"# ---- side {side.name}" + (f" (job {side.job})" if side.job
                                                          else "") + "\n" + cmd)
    if spec.get("brightest"):
        pixels += _brightest_of_first(sides, pixels, int(spec["brightest"]))
    running.progress(0.5)
    report = build_report(sides, pixels=pixels,
                          phi_steps=resolve_sampling(config).phi_steps,
                          tolerance=spec.get("tolerance"),
                          trace_tolerance=spec.get("trace_tolerance"),
                          phi_mode=spec.get("phi_mode", ""), command=spec.get("command"))
    report["job"] = job.id
    report["brightest"] = spec.get("brightest", 0)
    for s, entry in zip(sides, report["sides"]):
        entry["trace_artifacts"] = {}
        for (ps, pf), text in s.traces.items():
            if (ps, pf) in pixels:
                name = side_trace_name(s.name, ps, pf)
                write_atomic(staging / name, text)
                entry["trace_artifacts"][f"{ps},{pf}"] = name
    write_json(staging / REPORT_JSON, report)
    write_atomic(staging / REPORT_MD, format_markdown(
        report, title=f"Verification report — job {job.id}" + (f" ({job.label})"
                                                                  if job.label else "")))
    write_atomic(staging / COMMANDS, "\n".join(commands) or "# no side has a command\n")
    md = metadata(ctx, job, attempt=running.attempt, started=running.started, ended=time.time(),
                  config=config, peak_memory=running.peak_memory(device), traces=pixels,
                  warnings=job.warnings)
    md["verdict"] = report["verdict"]
    md["sides"] = [{"name": s["name"], "source": s["source"], "job": s["job"] or None,
                    "ran": s["ran"], "reason": s["reason"], "environment": s["environment"]}
                   for s in report["sides"]]
    write_json(staging / RUN_METADATA, md)
    return RunResult(device=device, render_s=time.perf_counter() - t0,
                     fields={"verdict": report["verdict"]})


__all__ = ["DESCRIPTION", "price", "run", "enqueue_report", "not_run_reason", "brightest",
           "RENDER", "REFERENCE", "EARLIER"]
