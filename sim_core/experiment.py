"""Resolve a config (plus its input files) into an :class:`Experiment`: geometry, sampling, sources,
cell orientations for every (phi, mosaic domain), structure factors, scaling constants.

This is the "config -> geometry" step of the pipeline; the engine only does arithmetic on what is
resolved here. Random draws (random misset, mosaic domains) use the C program's generators in the
C program's order, so seeds give the C program's crystals.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import SimulationConfig
from .errors import ConfigError, InputFileError
from .io.summary import is_fdump
from .geometry.crystal import CrystalGeometry, build_crystal
from .geometry.detector import DetectorGeometry, build_detector
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
class Experiment:
    config: SimulationConfig
    detector: DetectorGeometry
    crystal: CrystalGeometry
    sampling: ResolvedSampling
    sources: Sources
    oversample: int
    recommended_oversample: int
    #: real-space cell matrices (rows a, b, c in metres) per (phi step, mosaic domain), phi-major
    cell_matrices: torch.Tensor  # (F*M, 3, 3)
    #: c-parity only: the matrices with a fresh (unrotated) cell at phi == 0
    cell_matrices_fresh: torch.Tensor | None
    phi_values_rad: list[float]
    mosaic_umats: np.ndarray  # (M, 3, 3)
    structure_factors: StructureFactorTable
    interpolate: bool
    fluence: float
    water_I_bg: float
    roi: tuple[int, int, int, int]  # xmin, xmax, ymin, ymax inclusive
    mask: np.ndarray | None  # (slow, fast) bool, True = render
    seeds: dict
    #: the C program's generator state after the misset and mosaic draws (the noise continues it)
    rng: object = None
    #: the HKL grid read from the structure-factor file (None without one)
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
        return (self.sources.count * self.sampling.mosaic_domains * self.sampling.phi_steps
                * self.subpixels)

    @property
    def loops_per_pixel(self) -> int:
        return self.thick_steps * self.subpixels * self.sources.count

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
    same structure factors for every job; the cache holds at most ``HKL_CACHE_BYTES`` of grids.
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


class ByteLRU:
    """A least-recently-used cache bounded by the bytes of its values (an item larger than the
    whole budget is not kept)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self.bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes:
                _, (_, n) = self._items.popitem(last=False)
                self.bytes -= n

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


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


def build_experiment(config: SimulationConfig, files: FileResolver | None = None, *,
                     params: dict | None = None) -> Experiment:
    """Resolve ``config`` into an :class:`Experiment` (float64, CPU; the engine moves it)."""
    from . import rng as crng

    files = files or local_files()
    notes: list[str] = []
    seeds: dict = {}
    sampling = resolve_sampling(config)
    notes.extend(sampling.notes)
    det = build_detector(config.detector, config.beam, config.crystal, params)
    notes.extend(det.notes)

    wavelength_A = params["wavelength_A"] if params and "wavelength_A" in params \
        else config.beam.wavelength_A
    lam_m = (wavelength_A.to(torch.float64) if isinstance(wavelength_A, torch.Tensor)
             else torch.tensor(float(wavelength_A), dtype=torch.float64)) * 1e-10

    # random generators in the C program's order: misset, then mosaic domains (noise comes last)
    generator = crng.CRandom()
    cr = config.crystal
    misset = None
    if cr.misset_random:
        seed = cr.misset_seed if cr.misset_seed is not None else choose_seed()
        seeds["misset_seed"] = seed
        misset = tuple(crng.random_misset(generator, crng.SeedCell(-seed)))
        notes.append("random orientation misset angles: %f %f %f deg"
                     % tuple(math.degrees(x) for x in misset))
    elif cr.misset_deg is not None:
        misset = tuple(deg2rad(x) for x in cr.misset_deg)

    matrix = _read_matrix(files, cr.matrix_file) if cr.matrix_file else None
    crystal = build_crystal(cr, wavelength_A, matrix=matrix, misset_rad=misset,
                            beam_size_mm=config.beam.beam_size_mm, params=params)
    notes.extend(crystal.notes)

    # oversampling from the crystal size, as nanoBragg chooses it
    rec = recommended_oversample(crystal.xtal_size_max_m, float(lam_m.detach()),
                                 float(det.distance.detach()), float(det.pixel_size))
    oversample = config.sampling.oversample or rec
    if oversample < rec:
        notes.append(f"oversample {oversample} is below the recommended {rec}: intensity may vary "
                     "significantly across a pixel")

    # structure factors; interpolation decided on the flag-level crystal size as nanoBragg does
    sf_cfg = config.structure_factors
    grid = _read_hkl(files, sf_cfg.hkl_file, sf_cfg.default_F) if sf_cfg.hkl_file else None
    sf = StructureFactorTable.from_grid(grid, sf_cfg.default_F)
    if sf_cfg.interpolate == "auto":
        interpolate = any(n <= 2 for n in crystal.N_flags)
    else:
        interpolate = sf_cfg.interpolate == "on"
    if not sf.has_grid:
        interpolate = False

    # sources
    if config.beam.source_file:
        from .io.sources import read_source_file
        rows = read_source_file(files(config.beam.source_file))
        sources = file_sources(rows, det.beam, lam_m)
    else:
        sources = generated_sources(sampling, det.beam, det.polar, det.vert, lam_m,
                                    round_div=config.beam.round_div)

    # mosaic domains (the generator runs even for one domain, as in C)
    mosaic_seed = cr.mosaic_seed
    seeds["mosaic_seed"] = mosaic_seed
    umats = crng.mosaic_umats(sampling.mosaic_spread, sampling.mosaic_domains, generator,
                              crng.SeedCell(-mosaic_seed))
    if sampling.mosaic_spread <= 0.0:
        umats = np.broadcast_to(np.eye(3), (sampling.mosaic_domains, 3, 3)).copy()

    # cell matrices per (phi, domain)
    phis = sampling.phi_values
    A0 = torch.stack((crystal.a, crystal.b, crystal.c))  # rows a, b, c
    U = torch.as_tensor(umats, dtype=torch.float64)
    cell = _cell_matrices(A0, det.spindle, phis, U)
    fresh = None
    if config.run.phi_mode == "c-parity" and any(p == 0.0 for p in phis):
        nonzero = [p for p in phis if p != 0.0]
        last = nonzero[-1] if nonzero else 0.0
        cell = _cell_matrices(A0, det.spindle, _phi_carried(phis, last), U)
        fresh = _cell_matrices(A0, det.spindle, _phi_carried(phis, 0.0), U)

    # scaling
    beam_cfg = config.beam
    fluence = fluence_from_beam(beam_cfg.fluence_photons_per_m2, beam_cfg.flux_photons_per_s,
                                beam_cfg.exposure_s, beam_cfg.beam_size_mm / 1000.0)
    I_bg = water_background(config.background.water_um * 1e-6, fluence)

    S, F = det.spixels, det.fpixels
    roi = config.sampling.roi
    if roi is None:
        roi = (0, F, 0, S)
    else:
        roi = tuple(int(x) for x in roi)
        roi = (roi[0] if roi[0] >= 0 else 0, roi[1] if roi[1] >= 0 else F,
               roi[2] if roi[2] >= 0 else 0, roi[3] if roi[3] >= 0 else S)
    mask = _read_mask(files, config.detector.mask_file, (S, F)) if config.detector.mask_file else None
    if config.noise.seed is not None:
        seeds["seed"] = config.noise.seed

    return Experiment(
        config=config, detector=det, crystal=crystal, sampling=sampling, sources=sources,
        oversample=oversample, recommended_oversample=rec, cell_matrices=cell,
        cell_matrices_fresh=fresh, phi_values_rad=phis, mosaic_umats=np.asarray(umats),
        structure_factors=sf, interpolate=interpolate, fluence=fluence, water_I_bg=I_bg, roi=roi,
        mask=mask, seeds=seeds, rng=generator, hkl_grid=grid, notes=notes)


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
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from .errors import DeviceError
        raise DeviceError("device 'cuda' was requested but no CUDA device is available here")
    return torch.device(device)


__all__ = ["Experiment", "build_experiment", "local_files", "FileResolver", "GRAD_PARAMETERS",
           "check_device", "choose_seed", "ConfigError"]
