"""The local command's price check: what a ``nanobragg`` command will ask of this machine, by the
service's arithmetic (:func:`sim_core.cost.estimate`), before anything is allocated or rendered.

A command whose arrays need more memory than the machine has, or whose evaluations (all images of
a series) would take more than a day even at a rate no device reaches today, is refused with a
:class:`~sim_core.errors.ResourceError` that names the flag and the size, within a second, instead
of running for minutes and dying of a MemoryError (or running for weeks); one whose
structure-factor table would exceed ``MAX_SF_TABLE_BYTES`` (the worker's grid limit) with its
subclass :class:`~sim_core.errors.StructureFactorTableError`, before the file is read. ``-force`` renders it
anyway (the problems become warnings). Memory beyond what is free right now is a warning only.

Nothing here imports torch: the check runs before the simulator is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import SimulationConfig
from .cost import MAX_SF_TABLE_BYTES, Cost, check_sf_table, estimate
from .errors import InputFileError, ResourceError, StructureFactorTableError
from .flag_table import FLAGS_BY_NAME
from .inputs import BY_FIELD, summarize

#: evaluations per second assumed for the time check: about ten times what a GPU renders today
#: (docs/performance.md), so that only what no machine can finish is refused
OPTIMISTIC_RATE = 10e9
#: a render longer than this at OPTIMISTIC_RATE is refused without -force
MAX_SECONDS = 24 * 3600.0

#: the factors of the evaluation count (sim_core.cost.Cost.formula) and the fields that set them,
#: directly or by nanoBragg's sampling rules (a range without steps, a spread without a count)
FACTORS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pixels", "pixels", ("detector.fast_pixels", "detector.slow_pixels",
                          "detector.size_fast_mm", "detector.size_slow_mm",
                          "detector.pixel_size_mm", "sampling.roi", "detector.mask_file")),
    ("subpixels", "subpixels", ("sampling.oversample",)),
    ("layers", "sensor layers", ("detector.thickness_steps", "detector.thickness_um")),
    ("sources", "sources", ("beam.hdiv_steps", "beam.vdiv_steps", "beam.hdiv_step_mrad",
                            "beam.vdiv_step_mrad", "beam.hdiv_range_mrad", "beam.vdiv_range_mrad",
                            "beam.dispersion_steps", "beam.dispersion_pct", "beam.source_file")),
    ("phi_steps", "phi steps", ("scan.phi_steps", "scan.phi_step_deg", "scan.osc_range_deg")),
    ("mosaic_domains", "mosaic domains", ("crystal.mosaic_domains",
                                          "crystal.mosaic_spread_deg")),
)


def size(n: float) -> str:
    """Bytes as people read them: 40 GB, 1.5 TB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    for unit, s in (("years", 365 * 86400.0), ("days", 86400.0), ("hours", 3600.0)):
        if seconds >= s:
            return f"{seconds / s:,.3g} {unit}"
    return f"{seconds:,.0f} s"


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def available_memory() -> int | None:
    """Memory free for a new process now (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def flags_setting(argv: list[str], fields: tuple[str, ...]) -> list[str]:
    """The flags of ``argv`` (each with its values, as typed) that set any of ``fields``, in
    command-line order."""
    from .nanobragg_args import flag_position

    found = sorted({i for f in fields if (i := flag_position(argv, f)) is not None})
    out = []
    for i in found:
        row = FLAGS_BY_NAME[argv[i]]
        n = 0 if row.kind == "switch" else row.nargs
        out.append(" ".join(argv[i:i + 1 + n]))
    return out


def _summaries(config: SimulationConfig, base: Path) -> dict[str, dict]:
    """The summary of every input file, as the service keeps for uploads (bounded memory)."""
    out = {}
    for path, ref in config.file_refs().items():
        row = BY_FIELD[path]
        try:
            out[ref] = summarize(base / ref, row.kind)
        except FileNotFoundError:
            raise InputFileError(f"{row.flag}: file {ref} not found", path=ref,
                                 field=path) from None
    return out


def _memory_problem(cost: Cost, config: SimulationConfig, argv: list[str],
                    memory: int) -> tuple[str, str, str | None, str]:
    """(message, what to do, flag, field) for arrays that do not fit in ``memory`` bytes, named by
    their largest part (Cost.memory_parts)."""
    S, F = cost.shape
    pixels = S * F
    image_bytes = pixels * (8 if config.run.dtype == "float64" else 4)
    part = cost.memory_parts
    about = {
        "images": (FACTORS[0][2], f"{pixels:,} pixels ({F:,} x {S:,}) need {size(image_bytes)} "
                                  f"for the {config.run.dtype} image alone", "a smaller detector"),
        "structure_factors": (("structure_factors.hkl_file",),
                              f"a structure-factor grid of {cost.grid_points:,} points needs "
                              f"{size(part['structure_factors'])}",
                              "a smaller range of Miller indices"),
        "orientations": (("scan.phi_steps", "crystal.mosaic_domains"),
                         f"{cost.orientations:,} crystal orientations ({cost.phi_steps:,} phi "
                         f"steps x {cost.mosaic_domains:,} mosaic domains) need "
                         f"{size(part['orientations'])}", "fewer phi steps or mosaic domains"),
        "sources": (FACTORS[3][2], f"{cost.sources:,} sources need {size(part['sources'])}",
                    "fewer sources"),
    }
    fields, what, fix = about[max(part, key=part.get)]
    what += f" and {size(cost.memory_bytes)} in all"
    flags = flags_setting(argv, fields)
    where = f"{', '.join(flags)}: " if flags else ""
    message = f"{where}{what}, more than the {size(memory)} of memory of this machine"
    first = flags[0].split()[0] if flags else None
    return message, f"ask for {fix}", first, fields[0]


def _time_problem(cost: Cost, images: int,
                  argv: list[str]) -> tuple[str, str, str | None, str | None]:
    """(message, what to do, flag, field) for a render (of ``images`` images) that would take more
    than MAX_SECONDS: every factor of its evaluation count above 1 with the flag that set it, the
    largest first."""
    seconds = cost.evaluations * images / OPTIMISTIC_RATE
    factors = sorted((f for f in FACTORS if getattr(cost, f[0]) > 1),
                     key=lambda f: -getattr(cost, f[0]))
    named, first, field = [], None, None
    if images > 1:
        series = flags_setting(argv, ("scan.images",))
        named.append(f"{', '.join(series)} ({images:,} images)")
        first, field = series[0].split()[0], "scan.images"
    for name, label, fields in factors:
        flags = flags_setting(argv, fields)
        if flags:
            named.append(f"{', '.join(flags)} ({getattr(cost, name):,} {label})")
            first, field = first or flags[0].split()[0], field or fields[0]
        elif name == "subpixels":
            named.append(f"oversampling {cost.oversample} chosen from the spot size "
                         f"({cost.subpixels:,} subpixels; set -oversample)")
        else:
            named.append(f"{getattr(cost, name):,} {label}")
    per_image = f" per image, {images:,} images" if images > 1 else ""
    return (f"{first + ': ' if first else ''}the render needs {cost.formula()}{per_image}: more "
            f"than {duration(seconds)} even at {OPTIMISTIC_RATE / 1e6:,.0f} M evaluations/s",
            f"the factors: {'; '.join(named)}", first, field)


def check(config: SimulationConfig, argv: list[str], base: Path | str = ".", *,
          force: bool = False, memory: int | None = None,
          max_sf_table_bytes: int = MAX_SF_TABLE_BYTES) -> list[str]:
    """Price ``config`` (parsed from ``argv``; files relative to ``base``) for this machine.

    Returns warnings (memory beyond what is free now; with ``force``, what would be refused).
    ``memory`` replaces the machine's physical memory (bytes).

    Raises:
        ResourceError: the arrays need more than the machine's memory, or the evaluations more
            than a day at OPTIMISTIC_RATE (not with ``force``); the message names the flag.
        StructureFactorTableError: the structure-factor table would take more than
            ``max_sf_table_bytes`` (not with ``force``); the message names the flag and the file.
        ConfigError, InputFileError: what the pricing itself finds wrong (as the service).
    """
    images = config.scan.images
    if images != 1 or config.scan.random_orientations:
        # price the first image (a series' images cost the same; a still's own draws may differ
        # a little) and time them all
        from .seeds import with_seeds
        from .series import image_config
        config = image_config(with_seeds(config), config.scan.first_image)
    cost = estimate(config, _summaries(config, Path(base)))
    warnings = []
    flags = flags_setting(argv, (cost.sf_field,)) if cost.sf_field else []
    try:
        check_sf_table(cost, max_sf_table_bytes, flag=flags[0].split()[0] if flags else None)
    except StructureFactorTableError as exc:
        if not force:
            where = f"{flags[0]}: " if flags else ""
            exc.message = f"{where}{exc.message} (or add -force to render it anyway)"
            exc.args = (exc.message,)
            raise
        warnings.append(f"-force: rendering anyway: {exc}")
    problems = []
    memory = memory if memory is not None else physical_memory()
    if memory is not None and cost.memory_bytes > memory:
        problems.append(_memory_problem(cost, config, argv, memory))
    if cost.evaluations * images > OPTIMISTIC_RATE * MAX_SECONDS:
        problems.append(_time_problem(cost, images, argv))
    if problems and force:
        warnings += [f"-force: rendering anyway: {m}" for m, _, _, _ in problems]
    elif problems:
        message = "; ".join(f"{m}; {fix}" for m, fix, _, _ in problems)
        _, _, flag, field = problems[0]
        raise ResourceError(f"{message} (or add -force to render it anyway)", flag=flag,
                            field=field)
    free = available_memory()
    if not problems and free is not None and cost.memory_bytes > free:
        warnings.append(f"the render needs {size(cost.memory_bytes)} of memory and "
                        f"{size(free)} is free now: it may swap or be stopped")
    return warnings


__all__ = ["check", "size", "duration", "physical_memory", "available_memory", "flags_setting",
           "OPTIMISTIC_RATE", "MAX_SECONDS"]
