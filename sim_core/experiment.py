"""Resolve a config (plus its input files) into an :class:`Experiment`, in parts shaped like the
experiment (as DIALS' dxtbx models): a :class:`Beam` (direction, polarization, sources, fluence), a
detector (geometry only), a :class:`Goniometer` and a :class:`Scan` (spindle axis, φ values), and a
crystal (cell vectors, size; with the cell matrix of every (φ, mosaic domain) and the structure
factors). Plain models built by the factories below from the config's sections.

This is the "config -> geometry" step of the pipeline; the engine only does arithmetic on what is
resolved here. Random draws (random misset, mosaic domains) use the C program's generators in the
C program's order, so seeds give the C program's crystals.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cache import ByteLRU
from .config import SimulationConfig
from .cost import check_one_image
from .devices import resolve_device
from .errors import ConfigError, InputFileError
from .geometry.crystal import CrystalGeometry, build_crystal
from .geometry.detector import DetectorGeometry, build_detector, c_unitize
from .inputs import is_fdump
from .lab_frame import LabFrame, resolve_frame
from .geometry.rotations import axis_rotation_matrix
from .units import deg2rad
from .geometry.sources import Sources, file_sources, generated_sources
from .physics import fluence_from_beam, water_background
from .sampling import ResolvedSampling, recommended_oversample, resolve_sampling
from .seeds import choose_seed
from .structure_factors import StructureFactorTable

#: maps a file reference of the config (a path, or an uploaded id) to a readable local path
FileResolver = Callable[[str], Path]

#: continuous parameters that can carry gradients (``build_experiment(params=...)``)
GRAD_PARAMETERS = (
    "cell_a_A", "cell_b_A", "cell_c_A", "cell_alpha_deg", "cell_beta_deg", "cell_gamma_deg",
    "misset_x_deg", "misset_y_deg", "misset_z_deg", "distance_mm", "beam_x_mm", "beam_y_mm",
    "rotx_deg", "roty_deg", "rotz_deg", "twotheta_deg", "wavelength_A",
)


def local_files(base: Path | str = ".") -> FileResolver:
    """Resolver for the command line: references are paths relative to ``base``."""
    base = Path(base)

    def resolve(ref: str) -> Path:
        p = Path(ref)
        return p if p.is_absolute() else base / p

    return resolve


@dataclass
class Beam:
    """The incident beam: unit direction, unit E-vector, the sources it is made of, its fluence."""

    direction: torch.Tensor
    polarization_vector: torch.Tensor
    #: unit(direction x polarization_vector), the second divergence axis
    vertical: torch.Tensor
    #: Kahn polarization factor
    polarization: float
    sources: Sources
    #: photons per square metre
    fluence: float


@dataclass
class Goniometer:
    #: unit spindle (φ rotation) axis
    axis: torch.Tensor


@dataclass
class Scan:
    """The φ rotation of one image, as the sampling rules resolve it."""

    phi_start_rad: float
    phi_step_rad: float
    phi_steps: int
    osc_range_rad: float

    @property
    def phi_values_rad(self) -> list[float]:
        return [self.phi_start_rad + self.phi_step_rad * i for i in range(self.phi_steps)]


@dataclass
class Experiment:
    config: SimulationConfig
    frame: LabFrame
    beam: Beam
    detector: DetectorGeometry
    goniometer: Goniometer
    scan: Scan
    crystal: CrystalGeometry
    sampling: ResolvedSampling
    oversample: int
    recommended_oversample: int
    #: real-space cell matrices (rows a, b, c in metres) per (phi step, mosaic domain), phi-major
    cell_matrices: torch.Tensor  # (F*M, 3, 3)
    #: c-parity only: the matrices with a fresh (unrotated) cell at phi == 0
    cell_matrices_fresh: torch.Tensor | None
    mosaic_umats: np.ndarray  # (M, 3, 3)
    structure_factors: StructureFactorTable
    interpolate: bool
    water_I_bg: float
    roi: tuple[int, int, int, int]  # xmin, xmax, ymin, ymax inclusive
    mask: np.ndarray | None  # (slow, fast) bool, True = render
    seeds: dict
    #: the C program's generator state after the misset and mosaic draws (the noise continues it)
    rng: object = None
    #: the HKL grid read from the structure-factor file or computed from a model / MTZ file
    hkl_grid: object = None
    notes: list[str] = field(default_factory=list)

    # -- counts --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.detector.spixels, self.detector.fpixels

    @property
    def thick_steps(self) -> int:
        return self.sampling.thickness.steps

    @property
    def subpixels(self) -> int:
        return self.oversample * self.oversample

    @property
    def orientations(self) -> int:
        return int(self.cell_matrices.shape[0])

    @property
    def steps(self) -> int:
        """nanoBragg's normalisation: sources x domains x phi steps x subpixels (not layers)."""
        return (self.beam.sources.count * self.sampling.mosaic_domains * self.scan.phi_steps
                * self.subpixels)

    @property
    def loops_per_pixel(self) -> int:
        return self.thick_steps * self.subpixels * self.beam.sources.count

    @property
    def evaluations_per_pixel(self) -> int:
        return self.loops_per_pixel * self.orientations

    def render_pixels(self) -> np.ndarray:
        """Linear indices (slow * fpixels + fast) of the pixels to render, in nanoBragg's order."""
        S, F = self.shape
        xmin, xmax, ymin, ymax = self.roi
        s = np.arange(S)[:, None]
        f = np.arange(F)[None, :]
        keep = (f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)
        if self.mask is not None:
            keep &= self.mask
        return np.flatnonzero(keep)

    @property
    def evaluations(self) -> int:
        return int(self.render_pixels().size) * self.evaluations_per_pixel


def _read_matrix(resolve: FileResolver, ref: str) -> np.ndarray:
    from .io.mosflm import read_mosflm_matrix
    return read_mosflm_matrix(resolve(ref))


def _read_hkl(resolve: FileResolver, ref: str, default_F: float):
    """An HKL text file, or nanoBragg's binary Fdump.bin cache (recognised by its header).

    Grids are kept in a cache keyed by the file's identity, so that a warm worker does not parse the
    same structure factors for every job; the cache holds at most ``NANOBRAGG_HKL_CACHE_MB`` of grids.
    """
    path = resolve(ref)
    try:
        st = os.stat(path)
    except OSError:  # let the reader raise its own, located error
        return _parse_hkl(str(path), default_F)
    key = (str(path), st.st_mtime_ns, st.st_size, default_F)
    grid = HKL_CACHE.get(key)
    if grid is None:
        grid = _parse_hkl(str(path), default_F)
        HKL_CACHE.put(key, grid, grid.F.nbytes)
    return grid


def _parse_hkl(path: str, default_F: float):
    from .io.hkl import read_fdump, read_hkl
    if is_fdump(Path(path)):
        return read_fdump(path)
    return read_hkl(path, default_F)


#: structure-factor grids kept between jobs (``NANOBRAGG_HKL_CACHE_MB``, default 512)
HKL_CACHE = ByteLRU(int(float(os.environ.get("NANOBRAGG_HKL_CACHE_MB", "512")) * (1 << 20)))


def _read_mask(resolve: FileResolver, ref: str, shape: tuple[int, int]) -> np.ndarray:
    from .io.smv import read_smv
    path = resolve(ref)
    try:
        _, img = read_smv(path)
    except FileNotFoundError as exc:
        raise InputFileError(f"mask file {ref} not found", path=str(path),
                             field="detector.mask_file") from exc
    if img.shape != shape:
        raise InputFileError(f"mask file {ref} is {img.shape[1]}x{img.shape[0]} pixels but the "
                             f"detector is {shape[1]}x{shape[0]}", path=str(path),
                             field="detector.mask_file")
    return img != 0


def _unit(v) -> torch.Tensor:
    return torch.as_tensor(c_unitize(v)[0], dtype=torch.float64)


def build_goniometer(frame: LabFrame) -> Goniometer:
    return Goniometer(axis=_unit(frame.spindle))


def build_scan(sampling: ResolvedSampling) -> Scan:
    return Scan(phi_start_rad=sampling.phi0, phi_step_rad=sampling.phi_step,
                phi_steps=sampling.phi_steps, osc_range_rad=sampling.osc)


def build_beam(config: SimulationConfig, frame: LabFrame, sampling: ResolvedSampling,
               lam_m: torch.Tensor, files: FileResolver) -> Beam:
    """The beam's unit vectors (nanoBragg's unitize), its sources and its fluence."""
    bm = config.beam
    direction, polar = _unit(frame.beam), _unit(frame.polar)
    vert = torch.linalg.cross(direction, polar)
    vert_len = torch.linalg.vector_norm(vert)
    vert = vert / vert_len if float(vert_len) > 0 else vert
    if bm.source_file:
        from .io.sources import read_source_file
        sources = file_sources(read_source_file(files(bm.source_file)), direction, lam_m)
    else:
        sources = generated_sources(sampling, direction, polar, vert, lam_m,
                                    round_div=bm.round_div)
    fluence = fluence_from_beam(bm.fluence_photons_per_m2, bm.flux_photons_per_s, bm.exposure_s,
                                bm.beam_size_mm / 1000.0)
    return Beam(direction=direction, polarization_vector=polar, vertical=vert,
                polarization=bm.polarization, sources=sources, fluence=fluence)


def _misset(config: SimulationConfig, generator, seeds: dict, notes: list[str]):
    """The misset angles in radians: given, or drawn as nanoBragg draws them (first of all draws)."""
    from . import rng as crng

    cr = config.crystal
    if cr.misset_random:
        seed = cr.misset_seed if cr.misset_seed is not None else choose_seed()
        seeds["misset_seed"] = seed
        misset = tuple(crng.random_misset(generator, crng.SeedCell(-seed)))
        notes.append("random orientation misset angles: %f %f %f deg"
                     % tuple(math.degrees(x) for x in misset))
        return misset
    if cr.misset_deg is not None:
        return tuple(deg2rad(x) for x in cr.misset_deg)
    return None


def _structure_factors(config: SimulationConfig, files: FileResolver, crystal: CrystalGeometry,
                       structure, det: DetectorGeometry, beam: Beam, sampling: ResolvedSampling,
                       compute: bool, notes: list[str]):
    """(table, interpolate, grid): an HKL file's, or a model's or MTZ file's for the reflections
    the detector reaches; interpolation decided on the flag-level crystal size, as in C."""
    from .structure_input import experiment_table

    sf_cfg = config.structure_factors
    if structure is not None:
        grid, sf_notes = experiment_table(structure, config, crystal, det, beam, sampling,
                                          compute=compute)
        notes.extend(sf_notes)
    else:
        grid = _read_hkl(files, sf_cfg.hkl_file, sf_cfg.default_F) if sf_cfg.hkl_file else None
    sf = StructureFactorTable.from_grid(grid, sf_cfg.default_F)
    if sf_cfg.interpolate == "auto":
        interpolate = any(n <= 2 for n in crystal.N_flags)
    else:
        interpolate = sf_cfg.interpolate == "on"
    return sf, interpolate and sf.has_grid, grid


def _orientations(config: SimulationConfig, crystal: CrystalGeometry, goniometer: Goniometer,
                  scan: Scan, sampling: ResolvedSampling, generator, seeds: dict):
    """(cell matrices, c-parity fresh matrices, mosaic rotations) for every (φ, domain)."""
    from . import rng as crng

    # mosaic domains (the generator runs even for one domain, as in C)
    mosaic_seed = config.crystal.mosaic_seed
    seeds["mosaic_seed"] = mosaic_seed
    umats = crng.mosaic_umats(sampling.mosaic_spread, sampling.mosaic_domains, generator,
                              crng.SeedCell(-mosaic_seed))
    if sampling.mosaic_spread <= 0.0:
        umats = np.broadcast_to(np.eye(3), (sampling.mosaic_domains, 3, 3)).copy()
    phis = scan.phi_values_rad
    A0 = torch.stack((crystal.a, crystal.b, crystal.c))  # rows a, b, c
    U = torch.as_tensor(umats, dtype=torch.float64)
    axis = goniometer.axis
    cell = _cell_matrices(A0, axis, phis, U)
    fresh = None
    if config.run.phi_mode == "c-parity" and any(p == 0.0 for p in phis):
        nonzero = [p for p in phis if p != 0.0]
        last = nonzero[-1] if nonzero else 0.0
        cell = _cell_matrices(A0, axis, _phi_carried(phis, last), U)
        fresh = _cell_matrices(A0, axis, _phi_carried(phis, 0.0), U)
    return cell, fresh, np.asarray(umats)


def _roi(config: SimulationConfig, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    S, F = shape
    roi = config.sampling.roi
    if roi is None:
        return (0, F, 0, S)
    roi = tuple(int(x) for x in roi)
    return (roi[0] if roi[0] >= 0 else 0, roi[1] if roi[1] >= 0 else F,
            roi[2] if roi[2] >= 0 else 0, roi[3] if roi[3] >= 0 else S)


def build_experiment(config: SimulationConfig, files: FileResolver | None = None, *,
                     params: dict | None = None, compute_F: bool = True) -> Experiment:
    """Resolve ``config`` into an :class:`Experiment` (float64, CPU; the engine moves it).

    ``compute_F=False`` reads a model or MTZ file and checks it against the experiment but leaves
    its structure factors uncomputed (a submission check needs the shape and the counts only).
    """
    from . import rng as crng
    from .structure_input import check_cell, crystal_with_cell, open_structure_input

    check_one_image(config)
    files = files or local_files()
    notes: list[str] = []
    seeds: dict = {}
    sampling = resolve_sampling(config)
    notes.extend(sampling.notes)
    frame = resolve_frame(config)
    det = build_detector(config.detector, frame, params)
    notes.extend(det.notes)
    goniometer, scan = build_goniometer(frame), build_scan(sampling)

    wavelength_A = params["wavelength_A"] if params and "wavelength_A" in params \
        else config.beam.wavelength_A
    lam_m = (wavelength_A.to(torch.float64) if isinstance(wavelength_A, torch.Tensor)
             else torch.tensor(float(wavelength_A), dtype=torch.float64)) * 1e-10

    # a model or MTZ file gives the unit cell unless the config does
    structure = open_structure_input(config, files)
    cr = config.crystal
    if structure is not None:
        cr, cell_notes = crystal_with_cell(structure, cr)
        notes.extend(cell_notes + structure.data.warnings)

    # random generators in the C program's order: misset, then mosaic domains (noise comes last)
    generator = crng.CRandom()
    misset = _misset(config, generator, seeds, notes)
    matrix = _read_matrix(files, cr.matrix_file) if cr.matrix_file else None
    crystal = build_crystal(cr, wavelength_A, matrix=matrix, misset_rad=misset,
                            beam_size_mm=config.beam.beam_size_mm, params=params)
    notes.extend(crystal.notes)
    if structure is not None:
        check_cell(structure, config.crystal, tuple(crystal.cell_report["cell_A_deg"]))

    # oversampling from the crystal size, as nanoBragg chooses it
    rec = recommended_oversample(crystal.xtal_size_max_m, float(lam_m.detach()),
                                 float(det.distance.detach()), float(det.pixel_size))
    oversample = config.sampling.oversample or rec
    if oversample < rec:
        notes.append(f"oversample {oversample} is below the recommended {rec}: intensity may vary "
                     "significantly across a pixel")

    beam = build_beam(config, frame, sampling, lam_m, files)
    sf, interpolate, grid = _structure_factors(config, files, crystal, structure, det, beam,
                                               sampling, compute_F, notes)
    cell, fresh, umats = _orientations(config, crystal, goniometer, scan, sampling, generator,
                                       seeds)
    I_bg = water_background(config.background.water_um * 1e-6, beam.fluence)
    shape = (det.spixels, det.fpixels)
    mask = _read_mask(files, config.detector.mask_file, shape) if config.detector.mask_file \
        else None
    if config.noise.seed is not None:
        seeds["seed"] = config.noise.seed

    return Experiment(
        config=config, frame=frame, beam=beam, detector=det, goniometer=goniometer, scan=scan,
        crystal=crystal, sampling=sampling, oversample=oversample, recommended_oversample=rec,
        cell_matrices=cell, cell_matrices_fresh=fresh, mosaic_umats=umats, structure_factors=sf,
        interpolate=interpolate, water_I_bg=I_bg, roi=_roi(config, shape), mask=mask, seeds=seeds,
        rng=generator, hkl_grid=grid, notes=notes)


def _phi_carried(phis: list[float], previous: float) -> list[float]:
    """The angle each phi step really uses in the released C program.

    At phi == 0 the C program skips the rotation and keeps the rotated cell it computed last: the
    previous nonzero step of the same pass, or, before any, ``previous`` (the last nonzero step of the
    pass before; 0, the unrotated cell, for the very first pass of a render).
    """
    out = []
    prev = previous
    for p in phis:
        if p != 0.0:
            prev = p
        out.append(prev)
    return out


def _cell_matrices(A0: torch.Tensor, spindle: torch.Tensor, phis: list[float],
                   U: torch.Tensor) -> torch.Tensor:
    """Rows a, b, c of the cell for every (phi, domain): U_m R(phi_f) applied to each vector."""
    R = axis_rotation_matrix(spindle, torch.tensor(phis, dtype=torch.float64))  # (F, 3, 3)
    # rotated vectors v' = U R v; as rows: A' = A0 R^T U^T
    rotated = torch.einsum("jx,fyx->fjy", A0, R)  # (F, 3, 3) rows = R v
    cells = torch.einsum("fjy,mzy->fmjz", rotated, U)  # (F, M, 3, 3) rows = U R v
    return cells.reshape(-1, 3, 3)


def check_device(device: str) -> torch.device:
    return torch.device(resolve_device(device))


__all__ = ["Experiment", "Beam", "Goniometer", "Scan", "build_experiment", "is_fdump", "local_files", "FileResolver", "GRAD_PARAMETERS",
           "check_device", "choose_seed", "ConfigError"]
