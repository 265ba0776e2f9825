"""The price of a submission, checked before anything is queued: file kinds and summaries, the
structure-factor grid, and every limit on the job's cost (pixels, sources, orientations,
evaluations, memory), all by arithmetic (:func:`sim_core.cost.estimate`); nothing here grows with
the simulation or imports torch.
"""

from __future__ import annotations

import logging
import math

from sim_core.config import SimulationConfig
from sim_core.cost import Cost, estimate
from sim_core.errors import ConfigError, InputFileError
from sim_core.io.summary import summarize

from .errors import ApiError, invalid, invalid_field, limit_exceeded

log = logging.getLogger("bragg.api")

#: config field holding a file -> the upload kind it needs
FIELD_KINDS = {"crystal.matrix_file": "matrix", "structure_factors.hkl_file": "hkl",
               "beam.source_file": "sources", "detector.mask_file": "mask"}


def file_summary(ctx, owner: str, rec: dict, where: str) -> dict:
    """The upload's summary; files uploaded before summaries existed are summarized once now."""
    summary = rec.get("summary")
    if summary:
        return summary
    digest = rec["id"].removeprefix("sha256:")
    try:
        summary = summarize(ctx.store.input_path(digest), rec["kind"])
    except InputFileError as exc:
        raise invalid_field(where, str(exc).replace(str(ctx.store.input_path(digest)),
                                                    rec["name"])) from None
    ctx.records.put_file(owner, digest, rec["name"], rec["size"], rec["kind"], summary)
    return summary


def check_kind(rec: dict, path: str, where: str, name: str) -> None:
    """A file used where its kind does not belong (an HKL file as the matrix) is a 422."""
    want = FIELD_KINDS[path]
    if rec.get("kind") != want:
        raise invalid_field(where, f"{name} was uploaded as a {rec.get('kind')} file, but "
                                   f"{path} needs a {want} file (upload it with kind={want})")


def check_grid(settings, summary: dict, where: str, name: str) -> None:
    points, limit = int(summary.get("grid_points", 0)), settings.max_hkl_grid_points
    if points > limit:
        h, k, l = summary["h"], summary["k"], summary["l"]
        raise ApiError(422, "the HKL grid exceeds the limit max_hkl_grid_points", errors=[{
            "field": where, "limit": "max_hkl_grid_points", "value": points, "allowed": limit,
            "message": f"{name}: the index ranges h {h[0]}..{h[1]}, k {k[0]}..{k[1]}, l {l[0]}..{l[1]} "
                       f"make a grid of {points:,} points; the limit max_hkl_grid_points is "
                       f"{limit:,}"}])


def non_finite_fields(value, path: str = "") -> list[str]:
    """Paths of the NaN and infinite numbers in a config dump (a job's config must be JSON)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_fields(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite_fields(v, f"{path}.{i}")]
    return []


def check_finite(cfg: SimulationConfig, form: str) -> None:
    bad = non_finite_fields(cfg.model_dump(mode="python"))
    if bad:
        raise invalid([{"field": f"config.{p}" if form == "config" else form,
                        "message": f"{p} must be a finite number"} for p in bad])


def job_cost(cfg: SimulationConfig, summaries: dict, form: str) -> Cost:
    try:
        return estimate(cfg, summaries)
    except (ConfigError, InputFileError) as exc:
        where = form if form == "nanobragg_args" else f"config.{exc.field}" if exc.field \
            else "config"
        raise invalid_field(where, str(exc)) from None


def check_cost(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    S, F = cost.shape
    if S * F > settings.max_detector_pixels:
        raise limit_exceeded(f"{where}.detector" if form == "config" else where,
                             "max_detector_pixels", S * F, settings.max_detector_pixels,
                             "the detector's pixel count")
    if cost.evaluations > settings.max_evaluations:
        err = limit_exceeded(where, "max_evaluations", cost.evaluations, settings.max_evaluations,
                             "the job's evaluations")
        err.errors[0]["message"] = (f"the job's evaluations are {cost.formula()}; the limit "
                                    f"max_evaluations is {settings.max_evaluations:,}")
        raise err
    if cost.sources > settings.max_sources:
        raise limit_exceeded(f"{where}.beam" if form == "config" else where, "max_sources",
                             cost.sources, settings.max_sources,
                             "the number of sources (divergence points x dispersion steps)")
    if cost.orientations > settings.max_orientations:
        raise limit_exceeded(f"{where}.crystal" if form == "config" else where,
                             "max_orientations", cost.orientations, settings.max_orientations,
                             "the number of crystal orientations (phi steps x mosaic domains)")
    if cost.memory_bytes > settings.max_job_memory_bytes:
        raise limit_exceeded(where, "max_job_memory_bytes", cost.memory_bytes,
                             settings.max_job_memory_bytes,
                             "the job's memory in a worker (bytes: images, structure factors, "
                             "orientations, sources)")


__all__ = ["file_summary", "check_kind", "check_grid", "check_finite", "job_cost", "check_cost",
           "FIELD_KINDS"]
