"""What a job will cost, by arithmetic on its config and the summaries of its input files.

``estimate(config, summaries)`` counts the evaluations (rendered pixels x subpixels x sensor layers
x sources x phi steps x mosaic domains) and the worker's memory without building anything that grows
with the simulation: it runs in microseconds whatever the config asks for, and imports no torch, so
that a service can refuse an expensive job before doing any work for it.

The counts follow the simulator's own rules (:mod:`sim_core.sampling`, nanoBragg's automatic
oversampling, the elliptical trim of the divergence grid). Two cases give an upper bound instead of
the exact count (``exact`` is False then): a mask together with a region of interest (the summary of
a mask counts its rendered pixels, not where they lie), and a ``close_distance`` on a rotated
detector (the automatic oversampling is taken for the nearest distance).

Structure factors from a model or an MTZ file are priced too: the P1 table the worker computes spans
every reflection the detector can reach (:mod:`sim_core.structure_input`). Without torch the reach
is bounded by the shortest wavelength's backscatter (|q| <= 2 / lambda, or ``1 / dmin_F_A`` when
given, or ``1 / sampling.dmin_A``), with the worker's margin; the table's box and, for a model, the
structure-factor terms (atoms x reflections in that sphere) follow from the cell. An MTZ file's box is
also bounded by its own highest resolution (|h| <= a / d_high). These are upper bounds, not part of
``memory_bytes``; :func:`check_sf_table` refuses a table (a float64 per point of its box: an HKL
file's index ranges, a model's or MTZ file's to a given ``dmin_F_A``; a bound on the detector's
reach is not refused) beyond a limit on its bytes, by arithmetic before any file is read: the
service at submission (``max_sf_table_bytes``), the local command in its preflight
(``MAX_SF_TABLE_BYTES``, the worker's own grid limit). The pixel evaluations stay exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from .config import SimulationConfig
from .errors import ConfigError, InputFileError, StructureFactorTableError
from .sampling import Grid, divergence_kept, recommended_oversample, resolve_sampling

#: bytes of the largest structure-factor table a job may ask for (a float64 per point of the box of
#: its Miller indices): the worker's own grid limit (sim_core.io.hkl.MAX_GRID_POINTS), 1.6 GB
MAX_SF_TABLE_BYTES = 200_000_000 * 8

#: divergence grids above this many points are not trimmed point by point (the count is then the
#: untrimmed grid's, an upper bound)
_TRIM_POINTS = 4_000_000


@dataclass(frozen=True)
class Cost:
    shape: tuple[int, int]  # (slow, fast) pixels of the detector
    pixels: int  # rendered pixels (region of interest and mask)
    subpixels: int  # oversample squared
    oversample: int
    layers: int  # sensor thickness steps
    sources: int
    phi_steps: int
    mosaic_domains: int
    grid_points: int  # structure-factor grid (0 without an HKL file)
    exact: bool
    notes: tuple[str, ...] = ()
    #: the box of a model's or MTZ file's P1 table (an upper bound; 0 without either)
    structure_grid_points: int = 0
    #: atoms x reflections of a model's structure factors (an upper bound; 0 without a model)
    structure_terms: int = 0
    #: the structure-factor table's file: its config field and reference ("" without one), the
    #: box of its Miller indices ((lo, hi) of h, k, l; for a model or MTZ file an upper bound) and,
    #: for a model or MTZ file, the resolution (A) that bound reaches
    sf_field: str = ""
    sf_file: str = ""
    sf_box: tuple = ()
    sf_reach_A: float = 0.0
    #: the box is the table the worker builds, not only a bound on it: an HKL file's index ranges,
    #: or a model's or MTZ file's table to a given dmin_F_A (without one the worker's reach comes
    #: from the detector's geometry, which the arithmetic here only bounds)
    sf_box_exact: bool = False

    @property
    def sf_table_points(self) -> int:
        """Points of the structure-factor table the worker builds (0 without a file)."""
        return self.grid_points or self.structure_grid_points

    @property
    def sf_table_bytes(self) -> int:
        """Bytes of that table: a float64 per point (sim_core.io.hkl.HklGrid.F)."""
        return 8 * self.sf_table_points

    @property
    def orientations(self) -> int:
        return self.phi_steps * self.mosaic_domains

    @property
    def evaluations(self) -> int:
        return (self.pixels * self.subpixels * self.layers * self.sources * self.phi_steps
                * self.mosaic_domains)

    @property
    def memory_parts(self) -> dict[str, int]:
        """The bytes of each of the job's own arrays: the float image and the integer images made
        from it, the structure factors (grid and bordered copy), the cell of every orientation and
        the source directions."""
        S, F = self.shape
        return {"images": S * F * (8 + 4 + 2 + 2 + 1), "structure_factors": self.grid_points * 16,
                "orientations": self.orientations * 3 * 72, "sources": self.sources * 64}

    @property
    def memory_bytes(self) -> int:
        """The worker's memory for the job's own arrays, beyond its render chunks (memory_parts)."""
        return sum(self.memory_parts.values())

    def formula(self) -> str:
        return (f"{self.pixels:,} pixels x {self.subpixels} subpixels x {self.layers} layers x "
                f"{self.sources:,} sources x {self.phi_steps:,} phi steps x "
                f"{self.mosaic_domains:,} mosaic domains = {self.evaluations:,} evaluations")


def detector_shape(config: SimulationConfig) -> tuple[int, int]:
    """(slow, fast) pixels, by the detector's rule (a pixel count, else the size over the pixel)."""
    det = config.detector
    pixel = det.pixel_size_mm / 1000.0
    size_f = pixel * det.fast_pixels if det.fast_pixels else det.size_fast_mm / 1000.0
    size_s = pixel * det.slow_pixels if det.slow_pixels else det.size_slow_mm / 1000.0
    try:
        f = math.ceil(size_f / pixel - 0.5)
        s = math.ceil(size_s / pixel - 0.5)
    except (OverflowError, ValueError, ZeroDivisionError):
        raise ConfigError("detector: the detector size over the pixel size is not a pixel count",
                          field="detector.pixel_size_mm") from None
    if f <= 0 or s <= 0:
        raise ConfigError("detector: the detector has no pixels", field="detector.fast_pixels")
    return s, f


def _roi_pixels(config: SimulationConfig, shape: tuple[int, int]) -> tuple[int, bool]:
    S, F = shape
    roi = config.sampling.roi
    if roi is None:
        return S * F, True
    xmin, xmax, ymin, ymax = (int(x) for x in roi)
    xmin, xmax = (xmin if xmin >= 0 else 0), (xmax if xmax >= 0 else F)
    ymin, ymax = (ymin if ymin >= 0 else 0), (ymax if ymax >= 0 else S)
    nf = max(0, min(xmax, F - 1) - max(xmin, 0) + 1)
    ns = max(0, min(ymax, S - 1) - max(ymin, 0) + 1)
    return nf * ns, nf == F and ns == S


def divergence_count(h: Grid, v: Grid, round_div: bool) -> tuple[int, bool]:
    """How many (hdiv, vdiv) points nanoBragg keeps (see sim_core.geometry.sources)."""
    total = h.steps * v.steps
    if not round_div:
        return total, True
    if total > _TRIM_POINTS:
        return total, False
    return int(np.count_nonzero(divergence_kept(h, v, round_div))), True


def _structure_file(config: SimulationConfig, summaries: Mapping[str, dict]) -> Optional[dict]:
    sf = config.structure_factors
    ref = sf.model_file or sf.mtz_file
    return summaries.get(ref) if ref else None


def _cell_lengths_m(config: SimulationConfig, summaries: Mapping[str, dict]) -> list[float]:
    cr = config.crystal
    if cr.cell is not None:
        return [cr.cell.a_A * 1e-10, cr.cell.b_A * 1e-10, cr.cell.c_A * 1e-10]
    if cr.matrix_file is not None:
        per_A = summaries[cr.matrix_file]["cell_lengths_per_A"]
        return [x * config.beam.wavelength_A * 1e-10 for x in per_A]
    # the cell of the model or MTZ file
    return [x * 1e-10 for x in _structure_file(config, summaries)["cell"][:3]]


def _cell_volume_A3(cell) -> float:
    a, b, c = cell[:3]
    ca, cb, cg = (math.cos(math.radians(x)) for x in cell[3:])
    return a * b * c * math.sqrt(max(0.0, 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg))


def check_structure_file(config: SimulationConfig, summaries: Mapping[str, dict]) -> None:
    """What the summary of a model or MTZ file tells before any table is computed: a given cell
    within 0.5 % of the file's (:func:`sim_core.structure_input.check_cell`) and an MTZ column the
    file has, holding amplitudes or intensities. ConfigError naming the field."""
    from types import SimpleNamespace

    from .io.structure import AMPLITUDE_TYPES, INTENSITY_TYPES, _list_columns, _type_name
    from .structure_input import check_cell

    found = _structure_file(config, summaries)
    if found is None:
        return
    sf, cr = config.structure_factors, config.crystal
    ref = sf.model_file or sf.mtz_file
    if cr.cell is not None:
        c = cr.cell
        check_cell(SimpleNamespace(name=ref, cell=tuple(found["cell"])), cr,
                   (c.a_A, c.b_A, c.c_A, c.alpha_deg, c.beta_deg, c.gamma_deg))
    if sf.mtz_file and sf.mtz_column is None:
        columns = [(col["label"], col["type"]) for col in found.get("columns", [])]
        if not any(t in AMPLITUDE_TYPES for _, t in columns):
            # the worker takes amplitudes by default; intensities only when named
            intensity = next((lab for lab, t in columns if t in INTENSITY_TYPES), None)
            how = (f"name its intensity column to use it, converted with F = sqrt(max(I, 0)): "
                   f"mtz_column {intensity} (-mtz_column {intensity})" if intensity else
                   "it holds no intensities either")
            raise ConfigError(f"{ref}: no amplitude column (type F); the file has "
                              f"{_list_columns(columns) or 'no data columns'}: {how}",
                              field="structure_factors.mtz_column")
    if sf.mtz_file and sf.mtz_column is not None:
        columns = [(col["label"], col["type"]) for col in found.get("columns", [])]
        kind = dict(columns).get(sf.mtz_column)
        if kind is None:
            raise ConfigError(f"{ref}: no column '{sf.mtz_column}'; the file has "
                              f"{_list_columns(columns)}", field="structure_factors.mtz_column")
        if kind not in AMPLITUDE_TYPES and kind not in INTENSITY_TYPES:
            raise ConfigError(f"{ref}: column {sf.mtz_column} holds {_type_name(kind)} values, "
                              "not amplitudes (F) or intensities (J)",
                              field="structure_factors.mtz_column")


def check_physical_cell(config: SimulationConfig, summaries: Mapping[str, dict]) -> None:
    """The cell a matrix file gives at the config's wavelength, or a model's or MTZ file's, within
    the edges a given cell may have (a 0.001 A cell is refused here, not in the worker)."""
    from .config import CELL_EDGE_MAX_A, CELL_EDGE_MIN_A

    cr, sf = config.crystal, config.structure_factors
    if cr.cell is not None:
        return
    if cr.matrix_file is not None:
        field, ref = "crystal.matrix_file", cr.matrix_file
    elif _structure_file(config, summaries) is not None:
        field = "structure_factors.model_file" if sf.model_file else "structure_factors.mtz_file"
        ref = sf.model_file or sf.mtz_file
    else:
        return
    edges = [x * 1e10 for x in _cell_lengths_m(config, summaries)]
    if not all(CELL_EDGE_MIN_A <= x <= CELL_EDGE_MAX_A for x in edges):
        shown = ", ".join(f"{x:.4g}" for x in edges)
        at = f" at the wavelength {config.beam.wavelength_A:g} A" if cr.matrix_file else ""
        raise ConfigError(f"{ref}: the cell edges{at} are {shown} A; a simulation takes edges "
                          f"from {CELL_EDGE_MIN_A:g} to {CELL_EDGE_MAX_A:g} A", field=field)


def structure_notes(config: SimulationConfig, summaries: Mapping[str, dict]) -> list[str]:
    """The notes the experiment will make about a model or MTZ file, from its summary: the unit
    cell taken from the file, the MTZ column chosen when none is named."""
    found = _structure_file(config, summaries)
    if found is None:
        return []
    sf, cr = config.structure_factors, config.crystal
    ref = sf.model_file or sf.mtz_file
    notes = []
    if cr.cell is None and cr.matrix_file is None:
        cell = " ".join(f"{x:g}" for x in found["cell"])
        notes.append(f"unit cell from {ref}: {cell} ({found['space_group']})")
    if sf.mtz_file and sf.mtz_column is None:
        kind = dict((c["label"], c["type"]) for c in found.get("columns", [])).get(found["column"])
        which = "amplitude" if kind == "F" else "intensity"
        notes.append(f"{ref}: data from column {found['column']}, the first {which} column "
                     "(choose another with mtz_column / -mtz_column)")
    return notes


def _structure_cost(config: SimulationConfig, summaries: Mapping[str, dict],
                    sampling) -> tuple[int, int, list[int], float]:
    """(grid points, structure-factor terms, largest |h|, |k|, |l|, q_cut) of a model's or MTZ
    file's P1 table: upper bounds (zeros without either file)."""
    found = _structure_file(config, summaries)
    if found is None:
        return 0, 0, [], 0.0
    sf = config.structure_factors
    cell = list(found["cell"])
    lengths = [x * 1e10 for x in _cell_lengths_m(config, summaries)]
    if sf.dmin_F_A:
        q_cut = 1.0 / sf.dmin_F_A
    else:
        disp = sampling.dispersion
        lam = config.beam.wavelength_A * (1.0 - disp.range / 2.0 if disp.steps > 1 else 1.0)
        q = 2.0 / max(lam, 1e-12)
        if config.sampling.dmin_A > 0:
            q = min(q, 1.0 / config.sampling.dmin_A)
        recip = sum(1.0 / x for x in lengths)  # at least the reciprocal lengths of any cell
        q_cut = q * 1.01 + 2.0 * recip
    box = [int(math.floor(q_cut * x + 1e-9)) for x in lengths]
    from .structure_input import CELL_TOLERANCE
    ref = sf.model_file or sf.mtz_file
    field = "structure_factors.model_file" if sf.model_file else "structure_factors.mtz_file"
    if not any(box):
        # even the bound on the reach holds no reflection: the worker would find none
        shown = ", ".join(f"{x:.4g}" for x in lengths)
        raise ConfigError(f"{ref}: no reflection of the cell ({shown} A) lies within the "
                          f"detector's reach ({1 / q_cut:.3g} A at best)", field=field)
    low = (found.get("resolution_A") or [0, 0])[0]
    if sf.mtz_file and low > 0 and 1.0 / low > q_cut * (1 + CELL_TOLERANCE):
        raise ConfigError(f"{ref}: the file's lowest-resolution reflection ({low:.3g} A) lies "
                          f"beyond the detector's reach ({1 / q_cut:.3g} A at best)", field=field)
    high = (found.get("resolution_A") or [0, 0])[1]
    if sf.mtz_file and high > 0:
        # an MTZ file's indices (and their symmetry mates) satisfy |h| <= a / d_high in its cell
        box = [min(n, int(math.floor(x * (1 + CELL_TOLERANCE) / high + 1e-9)))
               for n, x in zip(box, cell[:3])]
    points = math.prod(2 * n + 1 for n in box)
    reflections = min(points, math.ceil(4.0 / 3.0 * math.pi * q_cut ** 3 * _cell_volume_A3(cell)))
    terms = int(found.get("atoms", 0)) * reflections
    return points, terms, box, q_cut


def _oversample(config: SimulationConfig, summaries: Mapping[str, dict]) -> tuple[int, bool]:
    if config.sampling.oversample:
        return int(config.sampling.oversample), True
    cr, det = config.crystal, config.detector
    lengths = _cell_lengths_m(config, summaries)
    sizes = [None if s is None else s / 1000.0 for s in (cr.size_a_mm, cr.size_b_mm, cr.size_c_mm)]
    beamsize = config.beam.beam_size_mm / 1000.0
    if beamsize >= 0:
        for i in (1, 2):
            if sizes[i] is not None and beamsize < sizes[i]:
                sizes[i] = beamsize
    xtal = 0.0
    for n, size, length in zip((cr.Na, cr.Nb, cr.Nc), sizes, lengths):
        if size is not None and size > 0:
            n = math.ceil(size / length)
        xtal = max(xtal, length * max(int(n), 1))
    exact = True
    if det.distance_mm is not None:
        distance = det.distance_mm / 1000.0
    elif det.close_distance_mm is not None:
        distance = det.close_distance_mm / 1000.0
        exact = not (det.rotx_deg or det.roty_deg or det.rotz_deg or det.convention == "custom")
    else:
        distance = 0.1
    try:
        n = recommended_oversample(xtal, config.beam.wavelength_A * 1e-10, distance,
                                   det.pixel_size_mm / 1000.0)
    except (OverflowError, ValueError, ZeroDivisionError):
        raise ConfigError("the crystal size, wavelength, distance and pixel size give no "
                          "oversampling (set sampling.oversample)",
                          field="sampling.oversample") from None
    return n, exact


def check_one_image(config: SimulationConfig) -> None:
    """An experiment (and a job) is one image: a series is rendered image by image."""
    if config.scan.images != 1:
        raise ConfigError(f"scan.images: a series of {config.scan.images} images is rendered one "
                          "image at a time: sim_core.simulate.render_series(config), or "
                          "sim_core.series.image_config(config, n) for image n",
                          field="scan.images")
    if config.scan.random_orientations:
        # its orientation is drawn per image: rendered as it stands, the crystal would not turn
        raise ConfigError("scan.random_orientations: a stills dataset is rendered image by image: "
                          "sim_core.simulate.render_series(config), or "
                          "sim_core.series.image_config(config, n) for image n",
                          field="scan.random_orientations")


def _summary(summaries: Mapping[str, dict], ref: Optional[str], field: str) -> Optional[dict]:
    if ref is None:
        return None
    try:
        return summaries[ref]
    except KeyError:
        raise InputFileError(f"no summary of the file {ref}", field=field) from None


def estimate(config: SimulationConfig, summaries: Mapping[str, dict] | None = None) -> Cost:
    """The job's :class:`Cost`. ``summaries`` maps each file reference of the config to its
    summary (:func:`sim_core.inputs.summarize`).

    Raises:
        ConfigError: sampling or a detector that nanoBragg could not make (field named).
        InputFileError: a mask whose shape is not the detector's.
    """
    summaries = summaries or {}
    check_one_image(config)
    for path, ref in config.file_refs().items():
        _summary(summaries, ref, path)
    shape = detector_shape(config)
    pixels, whole = _roi_pixels(config, shape)
    exact = True
    mask = _summary(summaries, config.detector.mask_file, "detector.mask_file")
    if mask is not None:
        if tuple(mask["shape"]) != shape:
            ms, mf = mask["shape"]
            raise InputFileError(f"mask file {config.detector.mask_file} is {mf}x{ms} pixels but "
                                 f"the detector is {shape[1]}x{shape[0]}",
                                 field="detector.mask_file")
        exact = whole or mask["rendered"] == 0
        pixels = min(pixels, int(mask["rendered"]))
    sampling = resolve_sampling(config)
    source_file = _summary(summaries, config.beam.source_file, "beam.source_file")
    if source_file is not None:
        sources = int(source_file["count"])
    else:
        points, trimmed = divergence_count(sampling.hdiv, sampling.vdiv, config.beam.round_div)
        sources = points * sampling.dispersion.steps
        exact = exact and trimmed
    oversample, exact_os = _oversample(config, summaries)
    hkl = _summary(summaries, config.structure_factors.hkl_file, "structure_factors.hkl_file")
    check_structure_file(config, summaries)
    check_physical_cell(config, summaries)
    structure_points, terms, box, q_cut = _structure_cost(config, summaries, sampling)
    sf = config.structure_factors
    if hkl:
        sf_field, sf_file = "structure_factors.hkl_file", sf.hkl_file
        sf_box = tuple(tuple(hkl[axis]) for axis in "hkl")
    elif box:
        sf_field = "structure_factors.model_file" if sf.model_file else "structure_factors.mtz_file"
        sf_file, sf_box = sf.model_file or sf.mtz_file, tuple((-n, n) for n in box)
    else:
        sf_field, sf_file, sf_box = "", "", ()
    return Cost(shape=shape, pixels=pixels, subpixels=oversample * oversample,
                oversample=oversample, layers=sampling.thickness.steps, sources=sources,
                phi_steps=sampling.phi_steps, mosaic_domains=sampling.mosaic_domains,
                grid_points=int(hkl["grid_points"]) if hkl else 0, exact=exact and exact_os,
                notes=sampling.notes + tuple(structure_notes(config, summaries)),
                structure_grid_points=structure_points,
                structure_terms=terms, sf_field=sf_field, sf_file=sf_file or "", sf_box=sf_box,
                sf_reach_A=1.0 / q_cut if box else 0.0,
                sf_box_exact=bool(hkl) or bool(box and sf.dmin_F_A))


def check_sf_table(cost: Cost, limit: int = MAX_SF_TABLE_BYTES, *, limit_name: str = "",
                   name: str | None = None, flag: str | None = None) -> None:
    """Refuse a structure-factor table of more than ``limit`` bytes by arithmetic on the cost
    (no file is read): StructureFactorTableError naming the file (``name``, else its reference),
    its index box, its size, the limit (``limit_name`` when a setting gives it) and what to change.
    Only a box the worker builds as it is (``Cost.sf_box_exact``) is refused: a bound on the
    detector's reach is no reason to refuse a job (a large cell on a small detector renders
    fine); the worker checks the table it computes before it allocates it.
    """
    table = cost.sf_table_bytes
    if table <= limit or not cost.sf_box_exact:
        return
    file = name or cost.sf_file
    box = ", ".join(f"{axis} {lo}..{hi}" for axis, (lo, hi) in zip("hkl", cost.sf_box))
    if cost.sf_field == "structure_factors.hkl_file":
        what, fix = f"its index ranges {box}", "use a file with a smaller range of Miller indices"
    else:
        what = (f"the indices {box} of its P1 table to {cost.sf_reach_A:.3g} A "
                "(structure_factors.dmin_F_A)")
        fix = ("a larger structure_factors.dmin_F_A (-dmin_F), or none: the table then reaches "
               "as far as the detector does")
    named = f"the limit {limit_name}" if limit_name else "the limit"
    raise StructureFactorTableError(
        f"{file}: {what} make a structure-factor table of {cost.sf_table_points:,} points, "
        f"{table:,} bytes ({table / 2 ** 30:.2f} GiB, 8 a point); {named} is {limit:,} bytes "
        f"({limit / 2 ** 30:.2f} GiB): {fix}", field=cost.sf_field, flag=flag,
        table_bytes=table, limit=limit)


__all__ = ["Cost", "estimate", "check_sf_table", "MAX_SF_TABLE_BYTES", "check_one_image", "check_structure_file", "check_physical_cell", "structure_notes", "detector_shape", "divergence_count"]
