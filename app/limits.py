"""The price of a submission, checked before anything is queued: file kinds and summaries, the
structure-factor grid, and every limit on the job's cost (pixels, sources, orientations,
evaluations, memory), all by arithmetic (:func:`sim_core.cost.estimate`); nothing here grows with
the simulation or imports torch.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from sim_core.config import SimulationConfig
from sim_core.cost import Cost, check_sf_table, estimate
from sim_core.errors import ConfigError, InputFileError, StructureFactorTableError
from sim_core.inputs import BY_FIELD, summarize

from app.context import AppContext
from app.errors import ApiError, Checks, invalid_field, limit_exceeded
from jobs.job import FileRecord

log = logging.getLogger("bragg.api")

def file_summary(ctx: AppContext, owner: str, rec: FileRecord, where: str) -> dict:
    """The upload's summary; files uploaded before summaries existed are summarized once now."""
    if rec.summary:
        return rec.summary
    path = ctx.store.input_path(rec.digest)
    try:
        summary = summarize(path, rec.kind)
    except InputFileError as exc:
        raise invalid_field(where, str(exc).replace(str(path), rec.name)) from None
    ctx.records.put_file(owner, rec.digest, rec.name, rec.size, rec.kind, summary)
    return summary


def check_kind(rec: FileRecord, path: str, where: str, name: str) -> None:
    """A file used where its kind does not belong (an HKL file as the matrix) is a 422."""
    want = BY_FIELD[path].kind
    if rec.kind != want:
        raise invalid_field(where, f"{name} was uploaded as a {rec.kind} file, but "
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


def named(message: str, names: dict[str, str]) -> str:
    """``message`` with uploaded ids replaced by the names the job gives its files."""
    for ref, name in names.items():
        message = message.replace(ref, name)
    return message


@dataclasses.dataclass(frozen=True)
class JobCost(Cost):
    """A submission's cost, with where its structure-factor file is named: the request's field
    (``config.structure_factors.<file>`` or ``nanobragg_args.<index>``) and the file's name."""

    sf_where: str = ""
    sf_name: str = ""


def job_cost(cfg: SimulationConfig, summaries: dict, form: str,
             names: dict[str, str] | None = None, argv: list[str] | None = None) -> JobCost:
    """The job's cost; 422 naming the field: ``config.<path>``, or for a command line
    ``nanobragg_args.<index>`` of the flag that set it, the message saying which flag and field
    (uploaded ids in the message shown by the names the job gives its files)."""
    try:
        cost = estimate(cfg, summaries)
    except (ConfigError, InputFileError) as exc:
        raise config_error(exc, form, names, argv) from None
    where = ""
    if cost.sf_field:
        where = f"config.{cost.sf_field}" if form != "nanobragg_args" \
            else args_field(argv, cost.sf_field)[0]
    return JobCost(**{f.name: getattr(cost, f.name) for f in dataclasses.fields(Cost)},
                   sf_where=where, sf_name=(names or {}).get(cost.sf_file, cost.sf_file))


def config_error(exc, form: str, names: dict[str, str] | None = None,
                 argv: list[str] | None = None):
    """The 422 of a config or input file error: at ``config.<field>``, or at the flag of a command
    line that set the field, the message naming the flag and the field."""
    message = named(str(exc), names or {})
    if form != "nanobragg_args":
        return invalid_field(f"config.{exc.field}" if exc.field else "config", message)
    where, flag = args_field(argv, exc.field)
    which = [x for x in (flag, exc.field) if x and x not in message]
    if which:
        message = f"{' / '.join(which)}: {message}"
    return invalid_field(where, message)


def args_field(argv: Optional[list[str]], path: Optional[str]) -> tuple[str, Optional[str]]:
    """The field of a command line that sets config field ``path``: ``nanobragg_args.<index>``
    of its (last) flag, and that flag (``nanobragg_args`` and None where no flag sets it)."""
    from sim_core.nanobragg_args import flag_position

    idx = flag_position(argv or [], path) if path else None
    if idx is None:
        return "nanobragg_args", None
    return f"nanobragg_args.{idx}", argv[idx]


def check_series(settings, images: int, evaluations: int, form: str,
                 argv: Optional[list[str]] = None) -> None:
    """The limits of a series, by arithmetic: its images, and its evaluations (all images)."""
    if form == "config":
        where, what = "config.scan.images", "the number of images of the series"
    else:
        where, flag = args_field(argv, "scan.images")
        what = f"{flag or '-images'} / scan.images: the number of images of the series"
    if images > settings.max_series_images:
        raise limit_exceeded(where, "max_series_images", images, settings.max_series_images,
                             what)
    total = images * evaluations
    if total > settings.max_series_evaluations:
        err = limit_exceeded(where, "max_series_evaluations", total,
                             settings.max_series_evaluations, "the series' evaluations")
        err.errors[0]["message"] = (f"the series' evaluations are {images:,} images x "
                                    f"{evaluations:,} = {total:,}; the limit "
                                    f"max_series_evaluations is {settings.max_series_evaluations:,}")
        raise err


def check_cost(settings, cost: Cost, form: str) -> None:
    """Every limit the job's cost crosses, all in one 422."""
    checks = Checks()
    for one in (_check_pixels, _check_evaluations, _check_sources, _check_orientations,
                _check_memory, _check_sf_table):
        with checks.check():
            one(settings, cost, form)
    checks.done()


def _check_pixels(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    S, F = cost.shape
    if S * F > settings.max_detector_pixels:
        raise limit_exceeded(f"{where}.detector" if form == "config" else where,
                             "max_detector_pixels", S * F, settings.max_detector_pixels,
                             "the detector's pixel count")


def _check_evaluations(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    if cost.evaluations > settings.max_evaluations:
        err = limit_exceeded(where, "max_evaluations", cost.evaluations, settings.max_evaluations,
                             "the job's evaluations")
        err.errors[0]["message"] = (f"the job's evaluations are {cost.formula()}; the limit "
                                    f"max_evaluations is {settings.max_evaluations:,}")
        raise err


def _check_sources(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    if cost.sources > settings.max_sources:
        raise limit_exceeded(f"{where}.beam" if form == "config" else where, "max_sources",
                             cost.sources, settings.max_sources,
                             "the number of sources (divergence points x dispersion steps)")


def _check_orientations(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    if cost.orientations > settings.max_orientations:
        raise limit_exceeded(f"{where}.crystal" if form == "config" else where,
                             "max_orientations", cost.orientations, settings.max_orientations,
                             "the number of crystal orientations (phi steps x mosaic domains)")


def _check_memory(settings, cost: Cost, form: str) -> None:
    where = "config" if form == "config" else form
    if cost.memory_bytes > settings.max_job_memory_bytes:
        raise limit_exceeded(where, "max_job_memory_bytes", cost.memory_bytes,
                             settings.max_job_memory_bytes,
                             "the job's memory in a worker (bytes: images, structure factors, "
                             "orientations, sources)")


def _check_sf_table(settings, cost: Cost, form: str) -> None:
    """The structure-factor table the worker would build (a float64 per point of its index box,
    sim_core.cost.check_sf_table), against max_sf_table_bytes: 422 at the file's field, naming
    the file, the table's size and the limit."""
    try:
        check_sf_table(cost, settings.max_sf_table_bytes, limit_name="max_sf_table_bytes",
                       name=getattr(cost, "sf_name", "") or None)
    except StructureFactorTableError as exc:
        where = getattr(cost, "sf_where", "") or (
            f"config.{exc.field}" if form != "nanobragg_args" else "nanobragg_args")
        raise ApiError(422, "the structure-factor table exceeds the limit max_sf_table_bytes",
                       errors=[{"field": where, "limit": "max_sf_table_bytes",
                                "value": exc.table_bytes, "allowed": exc.limit,
                                "message": str(exc)}]) from None


__all__ = ["JobCost", "file_summary", "check_kind", "check_grid", "job_cost", "config_error", "check_cost", "check_series",
           "args_field", "named"]
