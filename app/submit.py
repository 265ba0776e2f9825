"""From a submission to a queued job: build the config, resolve uploaded files, check the limits,
write the record, enqueue.

Both forms end as one :class:`~sim_core.config.SimulationConfig` whose file references are uploaded
ids (``sha256:<hex>``), whose clock-chosen seeds are fixed (so that ``config_sha256`` identifies the
image and the run can be repeated) and whose output file names are the service's artifact names.
Everything that can be wrong with a submission is found here and answered with 422 naming the field;
nothing is queued then.

The job's cost and limits come from the config and the uploads' summaries by arithmetic
(app.limits); the API never builds the experiment and never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sim_core.config import SimulationConfig, set_field
from sim_core.errors import ArgumentError, ConfigError, InputFileError, SimCoreError
from sim_core.inputs import BY_FIELD, HEADER_FLAGS
from sim_core.seeds import with_seeds
from sim_core.series import image_config, plan_child_count

from sim_core.output_formats import BY_KEY, SERVICE_OUTPUTS

from app.context import AppContext
from app.errors import ApiError, Checks, invalid, invalid_field, limit_exceeded
from app.ignored import output_field_warnings, output_flag_warnings
from app.limits import (args_field, check_cost, check_grid, check_kind, check_series, file_summary,
                        job_cost, named)
from app.schemas import JobSubmission
from app.stills import (check_outputs as check_stills_outputs, priced_image as stills_priced_image,
                        with_truth_outputs)
from jobs import queue as rq_queue
from jobs.admission import admit
from jobs.job import FileRecord, Job, JobKind, JobStatus, parse_file_id
from jobs.kinds import KINDS
from jobs.live_workers import serving_workers, unserved_warnings
from jobs.records import now
from jobs.records.jobs import OverLimit
from jobs.store import safe_name

log = logging.getLogger("bragg.api")


@dataclass
class PreparedJob:
    config: SimulationConfig
    file_names: dict[str, str]
    outputs: list[str]
    shape: tuple[int, int]
    #: of one image (every image of a series costs the same; a stills dataset's: its costliest)
    evaluations: int
    warnings: list[str] = field(default_factory=list)
    #: images of a series (1: a single image)
    images: int = 1
    #: a stills dataset (a series even of one image: its image's crystal is drawn)
    stills: bool = False

    @property
    def total_evaluations(self) -> int:
        return self.evaluations * self.images

    @property
    def is_series(self) -> bool:
        return self.images > 1 or self.stills


def owned_file(ctx: AppContext, owner: str, ref: str, where: str) -> FileRecord:
    digest = parse_file_id(ref)
    if digest is None:
        raise invalid_field(where, f"expected an uploaded file id 'sha256:<64 hex digits>', got "
                                   f"{ref[:80]!r} (upload the file with POST /v1/files)")
    rec = ctx.records.get_file(owner, digest)
    if rec is None or not ctx.store.has_input(digest):
        raise invalid_field(where, f"unknown file id {ref}: no such upload of yours")
    return rec


# -- the two forms --------------------------------------------------------------------------------
def _from_config(ctx: AppContext, owner: str, sub: JobSubmission, summaries: dict
                 ) -> tuple[SimulationConfig, dict, list]:
    cfg = sub.config.model_copy(deep=True)
    names: dict[str, str] = {}
    used: set[str] = set()
    checks = Checks()  # every file at fault at once
    for path, ref in cfg.file_refs().items():
        with checks.check():
            rec = owned_file(ctx, owner, ref, f"config.{path}")
            _use_file(ctx, owner, rec, path, f"config.{path}", rec.name, summaries)
        if not checks.ok or ref in names:
            continue
        name = rec.name if safe_name(rec.name) else f"input{len(names) + 1}"
        if name in used:
            name = f"{len(names) + 1}_{name}"
        used.add(name)
        names[ref] = name
    checks.done()
    return cfg, names, list(cfg.deprecations) + output_field_warnings(sub.config, sub.outputs)


def _use_file(ctx: AppContext, owner: str, rec: FileRecord, path: str, where: str, name: str,
              summaries: dict) -> None:
    check_kind(rec, path, where, name)
    summary = file_summary(ctx, owner, rec, where)
    if path == "structure_factors.hkl_file":
        check_grid(ctx.settings, summary, where, name)
    summaries[rec.id] = summary


def _from_args(ctx: AppContext, owner: str, sub: JobSubmission, summaries: dict
               ) -> tuple[SimulationConfig, dict, list]:
    argv = list(sub.nanobragg_args)
    ids: dict[str, str] = {}
    recs: dict[str, FileRecord] = {}
    checks = Checks()  # every entry of 'files', -img and -mask at fault, at once
    for name, ref in sub.files.items():
        with checks.check():
            if not safe_name(name):
                raise invalid_field(f"files.{name}", "a file name without directories or a "
                                                     "leading dot, e.g. 'P1.hkl'")
            recs[name] = owned_file(ctx, owner, ref, f"files.{name}")
            ids[name] = ref
    # -img and -mask headers are read while parsing: only uploaded files may be named there
    header_files = {}
    for i, a in enumerate(argv[:-1]):
        if a in HEADER_FLAGS:
            name = argv[i + 1]
            with checks.check():
                if name not in sub.files:
                    raise invalid_field(f"nanobragg_args.{i + 1}",
                                        f"{a} names {name!r}, which is not in 'files' (map it to "
                                        "an uploaded id)")
                if name not in ids:  # its entry of 'files' is at fault, and said so
                    continue
                header_files[name] = ids[name]
                if a == "-mask":
                    check_kind(recs[name], "detector.mask_file", f"files.{name}", name)
    checks.done()
    from sim_core.nanobragg_args import parse_nanobragg_args

    base = Path(tempfile.mkdtemp(prefix="args-", dir=ctx.store_tmp))
    try:
        for name, ref in header_files.items():
            (base / name).symlink_to(ctx.store.input_path(parse_file_id(ref)))
        parsed = parse_nanobragg_args(argv, base_dir=base, allow_fdump=False)
    except (ArgumentError, ConfigError) as exc:
        # a command line with several errors: each at the index of its flag
        raise invalid([{"field": _arg_field(argv, e), "message": str(e)}
                       for e in getattr(exc, "errors", [exc])]) from None
    except InputFileError as exc:
        raise invalid_field("nanobragg_args", str(exc).replace(str(base) + "/", "")) from None
    except SimCoreError as exc:
        raise invalid_field("nanobragg_args", str(exc)) from None
    except (ArithmeticError, ValueError) as exc:  # a value no flag check caught: still the input's
        raise invalid_field("nanobragg_args", f"a value the simulation cannot use: {exc}") from None
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cfg = parsed.config
    warnings = list(parsed.warnings) + output_flag_warnings(argv, sub.outputs)
    if parsed.trace_file:
        warnings.append("-trace_file is ignored: traces are artifacts trace_<slow>_<fast>.log")
    if parsed.force:
        warnings.append("-force is ignored: the service's own limits apply (BRAGG_MAX_*)")
    names: dict[str, str] = {}
    checks = Checks()  # every file the command line names that is missing or of the wrong kind
    for path, name in parsed.input_files.items():
        flag = BY_FIELD[path].flag
        with checks.check():
            if name not in ids:
                raise invalid_field("files", f"{flag} names {name!r}, which is not in 'files' "
                                             "(map it to an uploaded id: \"files\": {\"" + name
                                             + "\": \"sha256:...\"})")
            _use_file(ctx, owner, recs[name], path, f"files.{name}", name, summaries)
            set_field(cfg, path, ids[name])
            names[ids[name]] = name
    checks.done()
    return cfg, names, warnings


def _arg_field(argv: list[str], exc: SimCoreError) -> str:
    """``nanobragg_args.<index>`` of the flag at fault: the flag the error names, or the last flag
    that sets the config field it names."""
    flag = getattr(exc, "flag", None)
    if flag in argv:
        return f"nanobragg_args.{len(argv) - 1 - argv[::-1].index(flag)}"
    return args_field(argv, exc.field)[0]


# -- checks -----------------------------------------------------------------------------------------
def _check_trace_pixels(settings, pixels, shape, field_name: str) -> None:
    if len(pixels) > settings.max_trace_pixels:
        raise limit_exceeded(field_name, "max_trace_pixels", len(pixels), settings.max_trace_pixels,
                             "the number of traced pixels")
    S, F = shape
    errs = [{"field": f"{field_name}.{i}", "message": f"pixel ({s}, {f}) is outside the detector "
                                                      f"of {S} slow x {F} fast pixels"}
            for i, (s, f) in enumerate(pixels) if not (0 <= s < S and 0 <= f < F)]
    if errs:
        raise invalid(errs)


def prepare(ctx: AppContext, owner: str, sub: JobSubmission) -> PreparedJob:
    settings = ctx.settings
    form = "config" if sub.config is not None else "nanobragg_args"
    summaries: dict[str, dict] = {}
    if form == "config":
        cfg, names, warnings = _from_config(ctx, owner, sub, summaries)
    else:
        cfg, names, warnings = _from_args(ctx, owner, sub, summaries)
    run = cfg.run
    if sub.trace_pixels:
        run.trace_pixels = [tuple(p) for p in sub.trace_pixels]
    if sub.device:
        run.device = sub.device
    if sub.dtype:
        run.dtype = sub.dtype
    outputs = [o for o in SERVICE_OUTPUTS if o in set(sub.outputs)]
    # what is wrong with the outputs, the price and the traced pixels is said in one answer
    checks = Checks()
    with checks.check():
        if "hkl" in outputs and not (cfg.structure_factors.model_file
                                     or cfg.structure_factors.mtz_file):
            raise invalid_field("outputs", "'hkl' writes the P1 structure factors of a model or "
                                           "MTZ file; the job has neither")
    with checks.check():
        if "nexus" in outputs and cfg.detector.curved:
            raise invalid_field("outputs", "'nexus' describes flat detector modules (NXmx); a "
                                           "curved detector (detector.curved, -curved_det) has no "
                                           "NXmx description: drop one of them")
    # the config names the files the service writes (commands.txt reproduces them by name)
    for f in BY_KEY.values():
        if f.config_field:
            set_field(cfg, f.config_field, f.artifact if f.key in outputs or f.always else None)
    cfg = with_seeds(cfg)
    images = cfg.scan.images
    stills = cfg.scan.random_orientations
    if stills:
        with checks.check():
            check_stills_outputs(outputs)
        outputs = with_truth_outputs(outputs)
        # the images are counted before every image's draws are
        with checks.check():
            check_series(settings, images, 0, form, sub.nanobragg_args)
        checks.done()
        priced = stills_priced_image(cfg, form, names, sub.nanobragg_args)
    else:
        # every image of a series costs what its first one does (only its φ range and noise differ)
        priced = image_config(cfg, cfg.scan.first_image) if images > 1 else cfg
    cost = None
    with checks.check():
        cost = job_cost(priced, summaries, form, names, sub.nanobragg_args)
    if cost is not None:
        with checks.check():
            check_cost(settings, cost, form)
        if images > 1:
            with checks.check():
                check_series(settings, images, cost.evaluations, form, sub.nanobragg_args)
        with checks.check():
            _check_trace_pixels(settings, run.trace_pixels, cost.shape,
                                "trace_pixels" if sub.trace_pixels or form == "nanobragg_args"
                                else "config.run.trace_pixels")
    checks.done()
    warnings += [f"note: {named(n, names)}" for n in cost.notes]
    warnings += unserved_warnings(ctx, run.device)
    return PreparedJob(config=cfg, file_names=names, outputs=outputs, shape=cost.shape,
                       evaluations=cost.evaluations, warnings=warnings, images=images,
                       stills=stills)


# -- the record and the queue ----------------------------------------------------------------------
def new_job_id() -> str:
    return uuid.uuid4().hex


def idempotency(key: Optional[str], body: dict) -> Optional[tuple[str, str]]:
    """(key hash, body hash) of an ``Idempotency-Key`` header and the submission it came with."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise invalid_field("Idempotency-Key", "1 to 255 printable characters, e.g. a UUID")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return (hashlib.sha256(key.encode()).hexdigest(),
            hashlib.sha256(canonical.encode()).hexdigest())


def replayed_job(ctx: AppContext, owner: str, idem: Optional[tuple[str, str]]) -> Optional[str]:
    """The job an earlier request with the same key created (None if there was none); 422 if
    that request had another body."""
    if idem is None:
        return None
    found = ctx.records.idempotent_job(owner, idem[0])
    if found is None:
        return None
    job_id, body_hash = found
    if body_hash != idem[1]:
        raise _key_reused()
    return job_id


def _key_reused():
    return invalid_field("Idempotency-Key", "this key was used with another request body in the "
                                            "last 24 h: use a new key for a new job")


def create_job(ctx: AppContext, owner: str, *, kind: JobKind, config: SimulationConfig,
               file_names: dict,
               outputs: list[str], shape, evaluations: int, warnings: list[str],
               label: Optional[str] = None, parent: Optional[str] = None,
               trace_pixels=None, idem: Optional[tuple[str, str]] = None) -> str:
    """Write the record (refused when the owner has too many unfinished jobs) and enqueue it.

    The script that writes the record also puts it in the outbox (``ns:queued``): should this
    process die before the enqueue below, or Redis refuse it, the sweeper enqueues the job one
    lease time later. With an idempotency key the script returns the job an earlier request with
    that key created instead."""
    settings = ctx.settings
    job_id = new_job_id()
    job = queued_job(settings, job_id, owner, kind=kind, config=config, file_names=file_names,
                      outputs=outputs, shape=shape, evaluations=evaluations, warnings=warnings,
                      label=label, parent=parent,
                      trace_pixels=(trace_pixels if trace_pixels is not None
                                    else config.run.trace_pixels))
    code, val = ctx.records.create(job, settings.owner_limits(), idem, settings.idempotency_ttl_s)
    earlier = earlier_or_refused(ctx, owner, code, val, idem)
    if earlier is not None:
        return earlier
    after_record(ctx, owner, file_names)
    admit(ctx, [job.queue])
    return job_id


def create_series(ctx: AppContext, owner: str, prepared: PreparedJob, *,
                  label: Optional[str] = None,
                  idem: Optional[tuple[str, str]] = None) -> str:
    """Write a series: its parent and the fields its children share, in its owner's line.

    Consecutive images are grouped into children of about ``BRAGG_SERIES_CHILD_EVALUATIONS``
    evaluations, as many as a multiple of the live workers that serve the device (at least one
    each), unless there are fewer images. The children are made one at a time as the owner's
    turns come (jobs.admission), so a series of thousands of images costs one record to submit
    and one step to cancel. A child's record holds only its image numbers: the worker renders
    ``image_config(parent's config, n)``. The parent counts once against the owner's job limit
    and with the images it has left against the image and evaluation limits."""
    settings = ctx.settings
    cfg = prepared.config
    scan = cfg.scan
    workers = max(1, serving_workers(ctx, cfg.run.device))
    count, largest = plan_child_count(scan.images, max(1, prepared.evaluations),
                                      settings.series_child_evaluations, min_children=workers,
                                      multiple_of=workers)
    job_id = new_job_id()
    parent = queued_job(settings, job_id, owner, kind=JobKind.series, config=cfg,
                         file_names=prepared.file_names, outputs=prepared.outputs,
                         shape=prepared.shape,
                         evaluations=KINDS[JobKind.series].price(prepared.evaluations,
                                                                 images=prepared.images),
                         warnings=prepared.warnings, label=label, parent=None,
                         trace_pixels=cfg.run.trace_pixels)
    parent.timeout_s = 0
    parent.images, parent.first_image, parent.children = scan.images, scan.first_image, count
    # the shared fields of its children (ADMIT writes each one's id, images, label, evaluations);
    # the timeout is the largest child's
    child = queued_job(settings, f"{job_id}-00000", owner, kind=JobKind.render, config=None,
                        file_names=prepared.file_names, outputs=prepared.outputs,
                        shape=prepared.shape, evaluations=prepared.evaluations * largest,
                        warnings=[], label="", parent=job_id,
                        trace_pixels=cfg.run.trace_pixels, dtype=cfg.run.dtype,
                        device=cfg.run.device)
    code, val = ctx.records.create_lazy_series(parent, child, settings.owner_limits(), idem,
                                               settings.idempotency_ttl_s)
    earlier = earlier_or_refused(ctx, owner, code, val, idem)
    if earlier is not None:
        return earlier
    after_record(ctx, owner, prepared.file_names)
    admit(ctx, [child.queue])
    return job_id


def queued_job(settings, job_id: str, owner: str, *, kind: JobKind, config, file_names: dict,
                outputs: list[str], shape, evaluations: int, warnings: list[str],
                label: Optional[str], parent: Optional[str], trace_pixels,
                dtype: Optional[str] = None, device: Optional[str] = None) -> Job:
    """A new queued job's record (``config`` None: a series child, which reads its parent's)."""
    device = device or config.run.device
    return Job(
        id=job_id, owner=owner, kind=kind, parent=parent or "", label=label or "",
        status=JobStatus.queued, created_at=now(), requested_device=device, device=device,
        dtype=dtype or config.run.dtype,
        config=config.canonical_json() if config is not None else "",
        config_sha256=config.config_sha256() if config is not None else "", outputs=outputs,
        trace_pixels=[list(p) for p in trace_pixels], file_names=file_names, warnings=warnings,
        shape=list(shape), evaluations=evaluations, timeout_s=settings.job_timeout(evaluations),
        max_attempts=1 + settings.job_retries,
        # a kind without a queue entry of its own (a series) is moved by its children
        queue=rq_queue.queue_name(settings.namespace, device) if KINDS[kind].queued else "",
        rq_id=rq_queue.new_rq_id(job_id) if KINDS[kind].queued else "")


def earlier_or_refused(ctx: AppContext, owner: str, code: int, val, idem) -> Optional[str]:
    """None when the record was written; the earlier job of a replayed idempotency key; raises
    429 over one of the owner's limits."""
    if code == 2:  # a concurrent request with the same key won
        earlier, _, body_hash = str(val).partition(" ")
        if body_hash != idem[1]:
            raise _key_reused()
        return earlier
    if code == 0:
        raise owner_over_limit(ctx, owner, val)
    return None


def after_record(ctx: AppContext, owner: str, file_names: dict) -> None:
    if file_names:
        ctx.records.touch_files(owner, [parse_file_id(ref) for ref in file_names])
    if ctx.settings.fault_injection == "exit-after-record":
        os._exit(17)  # tests only: the crash window between the record and the queue entry


def owner_over_limit(ctx: AppContext, owner: str, over: OverLimit) -> ApiError:
    """429: which of the owner's limits the submission would exceed, the owner's unfinished work
    with it, and when to try again: once the excess has rendered at the service's recent rate."""
    name = f"max_queued_{over.limit}_per_owner"  # the setting of each counted quantity
    allowed = getattr(ctx.settings, name)
    what = f"unfinished {over.limit}"
    # the excess, in evaluations: the owner's average per job, per image, or 1 per evaluation
    wait = wait_seconds(ctx, (over.value() - allowed) * over.evaluations / max(1, over.value()))
    return ApiError(
        429, f"{owner} would have {over.value():,} {what} with this submission; the limit "
             f"{name} is {allowed:,}",
        errors=[{"field": "(owner)", "limit": name, "value": over.value(), "allowed": allowed,
                 "message": f"{what} of {owner} with this submission: {over.value():,}; the "
                            f"limit {name} is {allowed:,}",
                 "unfinished": {"jobs": over.jobs, "images": over.images,
                                "evaluations": over.evaluations}}],
        hint=f"try again in {wait} s, when more of your work has rendered, or cancel some of it",
        headers={"Retry-After": str(wait)})


def wait_seconds(ctx: AppContext, evaluations: float) -> int:
    """Seconds for the service to render ``evaluations`` at the rate of the jobs it has rendered
    (``BRAGG_RETRY_AFTER_RATE`` before it has any), with every live worker: 1 s to 1 h."""
    rate = ctx.records.observed_rate() or ctx.settings.retry_after_rate
    workers = max(1, len(ctx.records.live_workers()))
    return max(1, min(3600, math.ceil(evaluations / (rate * workers))))


__all__ = ["prepare", "create_job", "create_series", "idempotency", "replayed_job", "PreparedJob"]
