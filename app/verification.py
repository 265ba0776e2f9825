"""From a verification submission to a queued verification: its command checked and priced as a
job's (``app.submit.prepare``), its sides resolved — render sides as child jobs with their own
device, dtype and φ mode, uploaded references checked against the detector, earlier jobs looked up
through their owner — and everything written in one script (``jobs.kinds.verification``).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim_core.config import SimulationConfig
from sim_core.output_formats import BY_KEY

from app.context import AppContext
from app.errors import invalid_field, limit_exceeded, not_found
from app.limits import file_summary
from app.schemas import JobSubmission, Pixel, example_file_id
from app.submit import (earlier_or_refused, owned_file, queued_job, after_record, new_job_id,
                        prepare)
from jobs.admission import admit
from jobs.job import JobKind, JobStatus, parse_file_id
from jobs.kinds import KINDS
from jobs.kinds.verification import EARLIER, REFERENCE, RENDER
from jobs.live_workers import unserved_warnings

#: the most sides one verification may have
MAX_SIDES = 8
FLOAT = BY_KEY["float"].artifact


class SideSpec(BaseModel):
    """One side: a render by the service (``device``, ``dtype``, ``phi_mode``), an uploaded
    reference (``reference_image`` and/or ``reference_trace``), or an earlier finished job of
    yours (``against``)."""

    model_config = ConfigDict(extra="forbid")

    device: Optional[Literal["cpu", "cuda", "auto"]] = None
    dtype: Optional[Literal["float64", "float32"]] = None
    phi_mode: Optional[Literal["default", "c-parity"]] = None
    reference_image: Optional[str] = Field(
        None, description="uploaded id of a raw float32 image (kind float_image)")
    reference_trace: Optional[str] = Field(
        None, description="uploaded id of a trace log, e.g. the C program's TRACE_C lines "
                          "(kind trace_log)")
    against: Optional[str] = Field(None, description="the id of an earlier finished job")
    name: Optional[Annotated[str, Field(max_length=60)]] = None

    @model_validator(mode="after")
    def _one_source(self) -> "SideSpec":
        ref = self.reference_image is not None or self.reference_trace is not None
        render = any(v is not None for v in (self.device, self.dtype, self.phi_mode))
        if sum((ref, self.against is not None, render)) > 1:
            raise ValueError("a side is a render (device, dtype, phi_mode), a reference "
                             "(reference_image, reference_trace) or an earlier job (against), "
                             "not several")
        return self

    @property
    def source(self) -> str:
        if self.reference_image is not None or self.reference_trace is not None:
            return REFERENCE
        return EARLIER if self.against is not None else RENDER


class VerificationSubmission(BaseModel):
    """A command (``config`` or ``nanobragg_args`` with ``files``), the pixels to trace (given,
    and/or the ``brightest`` of the first side), tolerances, and two or more sides."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "nanobragg_args": ["-mat", "A.mat", "-hkl", "P1.hkl", "-N", "8", "-phisteps", "5",
                           "-osc", "0.5", "-detpixels", "128", "-distance", "100"],
        "files": {"A.mat": example_file_id("A.mat"), "P1.hkl": example_file_id("P1.hkl")},
        "pixels": [[65, 65]], "brightest": 1, "phi_mode": "c-parity",
        "sides": [{"device": "cpu", "dtype": "float64"}, {"device": "cpu", "dtype": "float32"}],
    }]})

    config: Optional[SimulationConfig] = None
    nanobragg_args: Optional[list[Annotated[str, Field(max_length=4096)]]] = Field(
        None, max_length=4096)
    files: dict[str, str] = Field(default_factory=dict)
    sides: list[SideSpec] = Field(..., min_length=2, max_length=MAX_SIDES)
    pixels: list[Pixel] = Field(default_factory=list, description="(slow, fast) pixels to trace")
    brightest: Annotated[int, Field(ge=0, le=16)] = Field(
        0, description="also trace this many brightest pixels of the first side's image")
    phi_mode: Optional[Literal["default", "c-parity"]] = Field(
        None, description="the φ mode of render sides that do not name one")
    tolerance: Optional[Annotated[float, Field(gt=0, le=1)]] = Field(
        None, description="image max|A-B|/max|A| (default: as nanobragg-parity, per pair)")
    trace_tolerance: Optional[Annotated[float, Field(gt=0, le=1)]] = Field(
        None, description="per trace line (default: the image tolerance; float32 traces are "
                          "judged only when given)")
    label: Optional[Annotated[str, Field(max_length=200)]] = None

    @model_validator(mode="after")
    def _one_form(self) -> "VerificationSubmission":
        if (self.config is None) == (self.nanobragg_args is None):
            raise ValueError("give exactly one of 'config' and 'nanobragg_args'")
        return self


def _side_name(side: SideSpec, i: int, taken: set[str], device: str, dtype: str) -> str:
    if side.name:
        base = side.name
    elif side.source == RENDER:
        base = f"{device}:{dtype}" + (f":{side.phi_mode}" if side.phi_mode else "")
    elif side.source == REFERENCE:
        base = "reference"
    else:
        base = f"job {side.against[:8]}"
    name = base
    n = 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    taken.add(name)
    return name


def _reference(ctx: AppContext, owner: str, ref: str, where: str, kind: str, shape) -> tuple:
    rec = owned_file(ctx, owner, ref, where)
    if rec.kind != kind:
        raise invalid_field(where, f"{rec.name} was uploaded as a {rec.kind} file; this needs a "
                                   f"{kind} file (upload it with kind={kind})")
    summary = file_summary(ctx, owner, rec, where)
    S, F = shape
    if kind == "float_image" and summary.get("pixels") != S * F:
        raise invalid_field(where, f"{rec.name} holds {summary.get('pixels')} float32 pixels; the "
                                   f"detector has {S} slow x {F} fast = {S * F}")
    return rec


def create_verification(ctx: AppContext, owner: str, sub: VerificationSubmission,
                        idem=None) -> str:
    """Check, price and write a verification; returns its id. Every fault is a 422 naming its
    field; nothing is queued then."""
    settings = ctx.settings
    job_sub = JobSubmission(config=sub.config, nanobragg_args=sub.nanobragg_args, files=sub.files,
                            trace_pixels=sub.pixels, outputs=["float"], label=sub.label)
    prepared = prepare(ctx, owner, job_sub)
    if prepared.images > 1:
        raise invalid_field("nanobragg_args" if sub.nanobragg_args is not None else "config",
                            "a verification compares one image: drop -images (or scan.images)")
    cfg = prepared.config
    if len(sub.pixels) + sub.brightest > settings.max_trace_pixels:
        raise limit_exceeded("pixels", "max_trace_pixels", len(sub.pixels) + sub.brightest,
                             settings.max_trace_pixels, "the traced pixels (pixels + brightest)")
    phi_mode = sub.phi_mode or cfg.run.phi_mode
    renders = [s for s in sub.sides if s.source == RENDER]
    total = KINDS[JobKind.verification].price(prepared.evaluations, images=len(renders))
    # each side is one image, within max_evaluations (prepare); together they are priced as a
    # series of as many images
    if total > settings.max_series_evaluations:
        raise limit_exceeded("sides", "max_series_evaluations", total,
                             settings.max_series_evaluations,
                             f"the evaluations of the {len(renders)} render sides together")
    parent_id = new_job_id()
    taken: set[str] = set()
    sides, children, warnings = [], [], list(prepared.warnings)
    file_names = dict(prepared.file_names)
    for i, s in enumerate(sub.sides):
        where = f"sides.{i}"
        if s.source == RENDER:
            device, dtype = s.device or "cpu", s.dtype or "float64"
            child_cfg = cfg.model_copy(deep=True)
            child_cfg.run.device, child_cfg.run.dtype = device, dtype
            child_cfg.run.phi_mode = s.phi_mode or phi_mode
            name = _side_name(s, i, taken, device, dtype)
            child = queued_job(settings, new_job_id(), owner, kind=JobKind.render,
                                config=child_cfg, file_names=prepared.file_names,
                                outputs=["float"], shape=prepared.shape,
                                evaluations=prepared.evaluations, warnings=[],
                                label=f"side {name}", parent=parent_id,
                                trace_pixels=[tuple(p) for p in sub.pixels])
            child.image_numbers = [len(children) + 1]
            child.trace_brightest = sub.brightest
            children.append(child)
            warnings += [f"side {name}: {w}" for w in unserved_warnings(ctx, device)]
            sides.append({"name": name, "source": RENDER, "device": device, "dtype": dtype,
                          "phi_mode": child_cfg.run.phi_mode, "job": child.id})
        elif s.source == REFERENCE:
            entry = {"name": _side_name(s, i, taken, "", ""), "source": REFERENCE}
            for field, kind, key in (("reference_image", "float_image", "image"),
                                     ("reference_trace", "trace_log", "trace")):
                ref = getattr(s, field)
                if ref is not None:
                    rec = _reference(ctx, owner, ref, f"{where}.{field}", kind, prepared.shape)
                    entry[key], entry[f"{key}_name"] = ref, rec.name
                    file_names[ref] = rec.name
            sides.append(entry)
        else:
            other = ctx.records.get_owned(s.against, owner)
            if other is None:  # another owner's job reads as unknown
                raise not_found("job", hint=f"{where}.against: no job {s.against[:40]!r} of "
                                            "yours", field=f"{where}.against")
            if other.status is not JobStatus.finished or other.artifact(FLOAT) is None:
                raise invalid_field(f"{where}.against", f"job {other.id} is {other.status.value}"
                                    + ("" if other.status is not JobStatus.finished else
                                       f" but has no {FLOAT} (a single render has one)")
                                    + "; a side needs a finished render")
            if list(other.shape) != list(prepared.shape):
                raise invalid_field(f"{where}.against", f"job {other.id} has {other.shape[0]} "
                                    f"slow x {other.shape[1]} fast pixels; this command "
                                    f"{prepared.shape[0]} x {prepared.shape[1]}")
            sides.append({"name": _side_name(s, i, taken, "", ""), "source": EARLIER,
                          "job": other.id})
    parent = queued_job(settings, parent_id, owner, kind=JobKind.verification, config=cfg,
                         file_names=file_names, outputs=[], shape=prepared.shape,
                         evaluations=total, warnings=warnings, label=sub.label, parent=None,
                         trace_pixels=[tuple(p) for p in sub.pixels], device="auto")
    # the report step compares images (no render): its timeout is that of a small job
    parent.timeout_s = settings.job_timeout(prepared.shape[0] * prepared.shape[1])
    parent.verification = {
        "sides": sides, "pixels": [list(p) for p in sub.pixels], "brightest": sub.brightest,
        "tolerance": sub.tolerance, "trace_tolerance": sub.trace_tolerance,
        "phi_mode": phi_mode, "command": list(sub.nanobragg_args or []),
    }
    if children:
        parent.rq_id = ""  # queued by ROLLUP once its last side has ended
        parent.images = parent.children = len(children)
        code, val = ctx.records.create_series(parent, children, settings.owner_limits(), idem,
                                              settings.idempotency_ttl_s)
    else:
        code, val = ctx.records.create(parent, settings.owner_limits(), idem,
                                       settings.idempotency_ttl_s)
    earlier = earlier_or_refused(ctx, owner, code, val, idem)
    if earlier is not None:
        return earlier
    after_record(ctx, owner, {ref: n for ref, n in file_names.items() if parse_file_id(ref)})
    admit(ctx, sorted({child.queue for child in children or [parent]}))
    return parent_id


def cancel_verification(ctx: AppContext, job) -> str:
    """Cancel every side (queued ones at once, running ones at their next chunk) and the report
    step: the parent ends canceled with its last side, or at once when its report is queued."""
    from app.routes.jobs import cancel_children
    from jobs import queue as rq_queue

    outcome = ctx.records.mark_cancel(job.id, job.owner)
    if outcome in ("finished", "failed", "canceled"):
        return outcome
    if job.children:
        cancel_children(ctx, job.id, job.owner)
    now = ctx.records.get(job.id)
    if now is not None and not now.ended and now.children_ended >= now.children:
        # every side has ended: the report step is queued or running
        if ctx.records.cancel(job.id, job.owner) == "canceled":
            rq_queue.discard(ctx.redis, now.rq_id)
    return "cancel-requested"


__all__ = ["VerificationSubmission", "SideSpec", "create_verification", "cancel_verification",
           "MAX_SIDES"]
