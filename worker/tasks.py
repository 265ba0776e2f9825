"""The RQ task: run one job (render or trace) and publish its artifacts, or record why not.

``run_job(job_id)`` never raises for a job's own failure: an engine error, a timeout or a cancel ends
the job's record (failed / canceled) and the worker carries on with the next job. Artifacts are
written into a staging folder and published as a whole; a failed or canceled job leaves nothing.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Optional

import redis

from jobs.commands import commands_text
from jobs.job import OUTPUT_FILES, image_artifact, is_series_child, parse_file_id
from jobs.store import disk_error, write_atomic
from sim_core.errors import SimCoreError

from worker import context
from jobs.artifacts import metadata, seal, write_json

log = logging.getLogger("bragg.worker")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


class Stop(Exception):
    """Raised to end a job early: canceled, timed out, or taken from this worker."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RunningJob:
    """What the engine's hooks and the heartbeat thread share about the job in progress."""

    def __init__(self, ctx, rec: dict, attempt: int):
        self.ctx = ctx
        self.id = rec["id"]
        self.owner = rec["owner"]
        self.attempt = attempt
        self.started = time.time()
        self.deadline = time.monotonic() + int(rec.get("timeout_s") or 3600)
        self.progress_value = 0.0
        self._written = -1.0
        self._last_write = 0.0
        self._last_check = 0.0
        self.reason: Optional[str] = None
        self._unreachable = False
        #: a child of a series: its parent and how many images it renders
        self.series = rec["parent"] if is_series_child(rec) else None
        self.images = len(rec.get("image_numbers") or [])
        self.peak_rss = _rss()

    # -- shared with the heartbeat thread ---------------------------------------------------------
    def pending_progress(self) -> Optional[float]:
        return self.progress_value if self.progress_value != self._written else None

    def renew(self, wait: bool = False) -> None:
        """Refresh the lease, write the progress, and learn about a cancel or a lost lease.
        While Redis is unreachable the render goes on (the lease decides once Redis is back);
        with ``wait`` this waits for Redis to answer instead (before publishing)."""
        s = self.ctx.settings
        p = self.pending_progress()

        def call():
            return self.ctx.records.renew(self.id, self.ctx.name, self.attempt, s.lease_ttl_s, p)

        try:
            out = until_redis_answers(self.ctx, call) if wait else call()
        except redis.RedisError as exc:
            if not self._unreachable:
                log.warning("job %s: could not renew its lease (%s); rendering on", self.id, exc)
            self._unreachable = True
            self._last_write = self._last_check = time.monotonic()
            return
        self._unreachable = False
        if p is not None:
            self._written = p
            if self.series and out == "ok":
                # the child's share of its series' progress (0.95 of a job is its render)
                self.ctx.records.series_progress(self.series, self.id,
                                                 min(1.0, p / 0.95) * self.images)
        self._last_write = self._last_check = time.monotonic()
        if out == "cancel" and self.reason is None:
            self.reason = "cancel"
        elif out == "lost":
            self.reason = "lost"

    # -- engine hooks ---------------------------------------------------------------------------------
    def progress(self, fraction: float) -> None:
        self.progress_value = round(min(1.0, max(0.0, fraction)) * 0.95, 4)
        self.peak_rss = max(self.peak_rss, _rss())
        if time.monotonic() - self._last_write >= self.ctx.settings.progress_interval_s:
            self.renew()

    def should_stop(self) -> bool:
        if self.reason is None and time.monotonic() > self.deadline:
            self.reason = "timeout"
        if self.reason is None and (time.monotonic() - self._last_check
                                    >= self.ctx.settings.cancel_check_interval_s):
            self.renew()
        return self.reason is not None

    def check(self) -> None:
        if self.should_stop():
            raise Stop(self.reason)


def until_redis_answers(ctx, call):
    """``call()``, retried with backoff while Redis is unreachable (at most
    ``BRAGG_REDIS_OUTAGE_MAX_S``): a finished render is published after an outage, not lost."""
    deadline = time.monotonic() + ctx.settings.redis_outage_max_s
    delay = 0.2
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(5.0, delay * 2)


def _device_for(ctx, requested: str) -> str:
    return ctx.device if requested == "auto" else requested


def _resolver(ctx):
    def resolve(ref: str) -> Path:
        digest = parse_file_id(ref)
        if digest is None:
            from sim_core.errors import InputFileError
            raise InputFileError(f"{ref}: not an uploaded file id")
        return ctx.store.input_path(digest)
    return resolve


def _clean_message(ctx, rec: dict, message: str) -> str:
    """Store paths are internal: name input files as the user named them."""
    names = rec.get("file_names") or {}
    files_root = str(ctx.store.input_path("0" * 64).parent.parent) + "/"

    def repl(m):
        ref = f"sha256:{m.group(1)}"
        return names.get(ref, ref)

    return re.sub(re.escape(files_root) + r"[0-9a-f]{2}/([0-9a-f]{64})", repl, message)


def _peak_memory(job: RunningJob, device: str) -> dict:
    if device.startswith("cuda"):
        import torch
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated())}
    return {"kind": "process_rss", "bytes": int(max(job.peak_rss, _rss()))}


# -- the kinds of job -------------------------------------------------------------------------------
def _render(ctx, rec: dict, job: RunningJob, device: str, staging: Path) -> dict:
    from sim_core.config import load_config

    if is_series_child(rec):
        return _render_images(ctx, rec, job, device, staging)
    return _render_image(ctx, rec, job, device, staging, load_config(rec["config"]),
                         progress=job.progress)


def _render_images(ctx, rec: dict, job: RunningJob, device: str, staging: Path) -> dict:
    """A child of a series: render each of its images, ``image_config(series config, n)``, into
    artifacts numbered like the nanobragg command's files (``floatimage_00003.bin``)."""
    from sim_core.config import load_config
    from sim_core.series import image_config, series_image

    parent = ctx.records.get(rec["parent"])
    if parent is None or not parent.get("config"):
        raise SeriesGone(f"the series {rec['parent']} of this job no longer exists")
    series = load_config(parent["config"])
    numbers = list(rec["image_numbers"])
    total = {"evaluations": 0, "render_s": 0.0, "eps": 0.0, "device": device, "warnings": []}
    for k, n in enumerate(numbers):
        job.check()
        part = (lambda f, k=k: job.progress((k + f) / len(numbers)))
        stats = _render_image(ctx, rec, job, device, staging, image_config(series, n),
                              progress=part, number=n,
                              image=dict(series_image(series, n).as_dict(),
                                         series=rec["parent"]))
        total["evaluations"] += stats["evaluations"]
        total["render_s"] += stats["render_s"]
        total["device"] = stats["device"]
        total["warnings"] = stats["warnings"]
    total["eps"] = total["evaluations"] / total["render_s"] if total["render_s"] > 0 else 0.0
    return total


class SeriesGone(SimCoreError):
    """A child job whose series record is gone (removed by retention)."""


def _render_image(ctx, rec: dict, job: RunningJob, device: str, staging: Path, config, *,
                  progress, number: Optional[int] = None, image: Optional[dict] = None) -> dict:
    """Render one image and write its artifacts into ``staging``: named as a single job's, or
    for image ``number`` of a series numbered (``intimage_00003.img``, ``run_metadata_00003.json``)."""
    from sim_core.outputs import write_outputs
    from sim_core.simulate import simulate

    def name(n: Optional[str]) -> Optional[str]:
        return n if n is None else image_artifact(n, number)

    result = simulate(config, _resolver(ctx), progress=progress, cancel=job.should_stop,
                      device=device, dtype=config.run.dtype)
    job.check()
    non_finite = check_finite(result.image, rec)
    outputs = set(rec.get("outputs") or [])
    names = {k: (name(v) if k in outputs else None) for k, v in OUTPUT_FILES.items()}
    report = write_outputs(result, staging, float_file=names["float"], int_file=names["smv"],
                           noise_file=names["noise"], png_file=names["png"],
                           cbf_file=names["cbf"])
    for t in result.traces:
        write_atomic(staging / name(f"trace_{t.slow}_{t.fast}.log"), t.text)
    hkl_name = names["hkl"] if result.experiment.hkl_grid is not None else None
    if hkl_name and not (staging / hkl_name).exists():  # the P1 table, for the C program
        from sim_core.io.hkl import write_hkl
        write_hkl(staging / hkl_name, result.experiment.hkl_grid)
    write_atomic(staging / name("commands.txt"),
                 commands_text(rec["id"], result.config, rec.get("file_names") or {},
                               ctx.versions.get("project"), hkl_artifact=hkl_name,
                               cell=result.experiment.crystal.cell_report["cell_A_deg"]))
    result.experiment.notes = [_clean_message(ctx, rec, n) for n in result.experiment.notes]
    # the API noted what the config and the upload summaries tell; what only the built experiment
    # knows (the reach of a model's table, say) joins the record's warnings here
    known = list(rec.get("warnings") or [])
    rec["warnings"] = known + [f"note: {n}" for n in result.experiment.notes
                               if f"note: {n}" not in known]
    ended = time.time()
    md = metadata(ctx, rec, attempt=job.attempt, started=job.started, ended=ended,
                  result=result, report=report, peak_memory=_peak_memory(job, device),
                  traces=[(t.slow, t.fast) for t in result.traces])
    md["non_finite_pixels"] = non_finite
    if image is not None:
        md["series_image"] = image
    write_json(staging / name("run_metadata.json"), md)
    return {"evaluations": int(result.evaluations), "render_s": result.elapsed_s,
            "eps": result.evaluations_per_second, "device": result.device,
            "warnings": rec.get("warnings") or []}


class NonFiniteImage(SimCoreError):
    """Every pixel of the image is infinite or NaN: there is nothing to publish."""


def check_finite(image, rec: dict) -> dict:
    """Count the image's inf and NaN pixels; warn in the record (the C program writes such images
    too), or fail the job when no pixel is finite."""
    import numpy as np

    img = np.asarray(image)
    nan = int(np.count_nonzero(np.isnan(img)))
    inf = int(np.count_nonzero(np.isinf(img)))
    counts = {"inf": inf, "nan": nan}
    if nan + inf and nan + inf == img.size:
        raise NonFiniteImage(f"the image is entirely non-finite ({inf:,} inf and {nan:,} NaN "
                             f"pixels of {img.size:,}): the fluence, structure factors or geometry "
                             "overflow double precision")
    if nan + inf:
        rec["warnings"] = list(rec.get("warnings") or []) + [
            f"the image has {inf:,} inf and {nan:,} NaN pixels of {img.size:,} (values beyond "
            "double precision; they are 0 in the SMV images)"]
    return counts


def _trace(ctx, rec: dict, job: RunningJob, device: str, staging: Path) -> dict:
    from sim_core.config import load_config
    from sim_core.simulate import trace_pixels

    config = load_config(rec["config"])
    pixels = [tuple(p) for p in rec.get("trace_pixels") or []]
    t0 = time.perf_counter()
    traces = []
    for i, pixel in enumerate(pixels):
        job.check()
        traces += trace_pixels(config, [pixel], _resolver(ctx), device=device,
                               dtype=config.run.dtype)
        job.progress((i + 1) / len(pixels))
    for t in traces:
        write_atomic(staging / f"trace_{t.slow}_{t.fast}.log", t.text)
    write_json(staging / "run_metadata.json",
               metadata(ctx, rec, attempt=job.attempt, started=job.started, ended=time.time(),
                        config=config, peak_memory=_peak_memory(job, device), traces=pixels))
    return {"evaluations": 0, "render_s": time.perf_counter() - t0, "eps": 0.0, "device": device}


# -- the task -------------------------------------------------------------------------------------------
def run_job(job_id: str) -> Optional[str]:
    """RQ entry point. Returns the job's final status (or why it was not run)."""
    ctx = context.get()
    rec = ctx.records.get(job_id)
    if rec is None:
        log.warning("job %s: no record; skipped", job_id)
        return "missing"
    device = _device_for(ctx, rec.get("requested_device", "auto"))
    label = "cuda:0" if device == "cuda" else device
    from rq import get_current_job
    current = get_current_job()
    # the entry's id: an entry that the sweeper replaced (its taker seemed dead) is refused
    status, attempt = ctx.records.start(job_id, ctx.name, label, ctx.settings.lease_ttl_s,
                                        current.id if current is not None else "")
    if status != "running":
        log.info("job %s: %s, not started", job_id, status)
        return status
    job = RunningJob(ctx, rec, attempt)
    hb = ctx.heartbeat
    if hb is not None:
        hb.current = job
    _settle(ctx, rec)
    try:
        return _execute(ctx, rec, job, device)
    except Exception as exc:  # noqa: BLE001 - e.g. Redis gone while finishing: do not leave it running
        log.exception("job %s: could not be completed", job_id)
        try:
            return _fail(ctx, rec, job, type(exc).__name__, str(exc))
        except Exception:  # noqa: BLE001 - the sweeper requeues it once the lease expires
            return "error"
    finally:
        if hb is not None:
            hb.current = None
        _settle(ctx, rec)


def _settle(ctx, rec: dict) -> None:
    """Roll a series child's move up into its series (the sweeper does it should this fail)."""
    try:
        ctx.records.settle(rec)
    except redis.RedisError as exc:
        log.warning("job %s: its series %s not updated yet (%s)", rec["id"], rec.get("parent"),
                    exc)


def _execute(ctx, rec: dict, job: RunningJob, device: str) -> str:
    from rq.timeouts import JobTimeoutException
    from sim_core.errors import RenderCancelled, SimCoreError

    job_id, owner, name, attempt = rec["id"], rec["owner"], ctx.name, job.attempt
    log.info("job %s: attempt %d on %s", job_id, attempt, device)
    staging = None
    try:
        ctx.store.sweep(job_id)
        staging = ctx.store.staging_dir(job_id, attempt)
        if device == "cuda":
            import torch
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        run = _trace if rec.get("kind") == "trace" else _render
        stats = run(ctx, rec, job, device, staging)
        artifacts = seal(staging)
        # the attempt must still be ours (and not canceled) right before publishing: after a
        # Redis outage this waits for Redis, which then says whether the lease survived it
        job.renew(wait=True)
        job.check()
        ctx.store.commit(job_id, staging)
        done = {"artifacts": artifacts, "progress": "1", "device": stats["device"]}
        if stats.get("warnings"):
            done["warnings"] = stats["warnings"]
        out = until_redis_answers(ctx, lambda: ctx.records.finish(
            job_id, owner, name, attempt, "finished", done))
        if out == "cancel":
            ctx.store.remove_job(job_id)
            ctx.records.finish(job_id, owner, name, attempt, "canceled")
            log.info("job %s: canceled while finishing", job_id)
            return "canceled"
        if out == "lost":
            log.warning("job %s: attempt %d was taken from this worker; result dropped", job_id,
                        attempt)
            return "lost"
        ctx.records.observe_job(time.time() - job.started, stats["evaluations"], stats["render_s"],
                                stats["eps"], stats["device"])
        log.info("job %s: finished in %.3f s", job_id, time.time() - job.started)
        return "finished"
    except (Stop, RenderCancelled):
        reason = job.reason or "cancel"
        if reason == "lost":
            log.warning("job %s: attempt %d was taken from this worker; stopped", job_id, attempt)
            return "lost"
        if reason == "timeout":
            return _fail(ctx, rec, job, "JobTimeout", f"the job ran longer than its timeout of "
                                                     f"{rec.get('timeout_s')} s")
        ctx.records.finish(job_id, owner, name, attempt, "canceled")
        log.info("job %s: canceled", job_id)
        return "canceled"
    except JobTimeoutException as exc:
        return _fail(ctx, rec, job, "JobTimeout", str(exc) or "the job exceeded its timeout")
    except SimCoreError as exc:
        return _fail(ctx, rec, job, type(exc).__name__, _clean_message(ctx, rec, str(exc)))
    except OSError as exc:
        found = disk_error(exc)
        if found is None:
            log.exception("job %s: unexpected error", job_id)
            return _fail(ctx, rec, job, type(exc).__name__, _clean_message(ctx, rec, str(exc)))
        log.error("job %s: storage error: %s", job_id, exc)
        return _fail(ctx, rec, job, "StorageError",
                     f"{found[1]} ({exc.strerror}); the job wrote nothing")
    except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
        log.exception("job %s: unexpected error", job_id)
        return _fail(ctx, rec, job, type(exc).__name__, _clean_message(ctx, rec, str(exc)))
    finally:
        if staging is not None:
            ctx.store.discard(staging)


def _fail(ctx, rec: dict, job: RunningJob, etype: str, message: str) -> str:
    log.info("job %s: failed: %s: %s", rec["id"], etype, message)
    out = until_redis_answers(ctx, lambda: ctx.records.finish(
        rec["id"], rec["owner"], ctx.name, job.attempt, "failed",
        {"error_type": etype, "error_message": message[:4000]}))
    if out == "failed":  # a folder this attempt may have published is not the job's result
        try:
            ctx.store.remove_job(rec["id"])
        except OSError as exc:
            log.error("job %s: could not remove its folder: %s", rec["id"], exc)
    return "failed"


__all__ = ["run_job", "RunningJob"]
