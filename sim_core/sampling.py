"""nanoBragg's rules that turn ranges, step sizes and step counts into concrete sampling grids.

Each quantity (phi, horizontal and vertical divergence, spectral dispersion, detector thickness,
mosaic domains) may be given as any combination of range, step size and number of steps; the
missing ones are chosen the way the C program chooses them, quirks included (for example a thickness
split into N steps uses a step of thickness/(N-1)). ``None`` in the config stands for the C
program's "not given" sentinel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SimulationConfig
from .units import RTD, deg2rad


@dataclass(frozen=True)
class Grid:
    """A range split into steps: ``steps`` values ``step`` apart spanning ``range``."""

    steps: int
    range: float
    step: float


def _ellipse_terms(g: Grid, x: np.ndarray) -> np.ndarray:
    num = x * x - g.step * g.step / 4.0 * (1 - g.steps % 2)
    if g.range == 0.0:
        # as 0/0 and x/0 in C: a NaN test keeps the point
        return np.where(num == 0.0, np.nan, np.copysign(np.inf, num))
    return num / g.range / g.range


def divergence_kept(h: Grid, v: Grid, round_div: bool) -> np.ndarray:
    """Which (hdiv i, vdiv j) grid points nanoBragg keeps: a (h.steps, v.steps) boolean array, all
    True without ``round_div``, else its elliptical trim."""
    if not round_div:
        return np.ones((h.steps, v.steps), dtype=bool)
    th = _ellipse_terms(h, h.step * np.arange(h.steps) - h.range / 2.0)
    tv = _ellipse_terms(v, v.step * np.arange(v.steps) - v.range / 2.0)
    with np.errstate(invalid="ignore"):
        return ~((th[:, None] + tv[None, :]) * 4.0 > 1.1)


@dataclass(frozen=True)
class ResolvedSampling:
    phi0: float  # rad
    phi_step: float  # rad
    phi_steps: int
    osc: float  # rad
    hdiv: Grid  # rad
    vdiv: Grid  # rad
    dispersion: Grid  # fraction of lambda
    thickness: Grid  # m
    detector_mu: float  # 1/m
    mosaic_spread: float  # rad
    mosaic_domains: int
    notes: tuple[str, ...] = ()


def _neg(x):
    return -1.0 if x is None else x


def _phi(phi0: float, osc, phistep, phisteps) -> tuple[float, float, int]:
    osc, phistep = _neg(osc), _neg(phistep)
    phisteps = -1 if phisteps is None else phisteps
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                return 0.0, 0.0, 1
            return phistep, phistep, 2
        if phistep <= 0.0:
            return osc, osc / 2.0, 2
        return osc, phistep, math.ceil(osc / phistep)
    if phisteps == 0:
        phisteps = 1
    if osc < 0.0:
        if phistep <= 0.0:
            osc = 1.0 / RTD
            return osc, osc / phisteps, phisteps
        return phistep, phistep, 2
    if phistep < 0.0:
        return osc, osc / phisteps, phisteps
    return osc, phistep, phisteps


def _grid(rng, step, steps, *, default_range: float, range_only_halves: bool = False) -> Grid:
    """nanoBragg's rule for a range, a step size and a count, any of them not given (None or <= 0).

    The sensor thickness differs from divergence and dispersion in one branch: a range given alone
    is split into two steps of half the range (``range_only_halves``) instead of one of the range.
    """
    rng, step = _neg(rng), _neg(step)
    steps = -1 if steps is None else steps
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                return Grid(1, 0.0, 0.0)
            return Grid(2, step, step)
        if step <= 0.0:
            return Grid(2, rng, rng / 2 if range_only_halves else rng)
        return Grid(math.ceil(rng / step), rng, step)
    if rng < 0.0:
        if step <= 0.0:
            return Grid(steps, default_range, default_range / steps)
        return Grid(2, step, step)
    if step <= 0.0:
        if steps <= 1:
            steps = 2
        return Grid(steps, rng, rng / (steps - 1))
    return Grid(steps, rng, step)


def _sane(g: Grid) -> Grid:
    if g.range <= 0.0 or g.step <= 0.0 or g.steps <= 0:
        return Grid(1, 0.0, 0.0)
    return g


def resolve_sampling(config: SimulationConfig) -> ResolvedSampling:
    notes: list[str] = []
    cr, bm, det, scan = config.crystal, config.beam, config.detector, config.scan
    osc = None if scan.osc_range_deg is None else deg2rad(scan.osc_range_deg)
    phistep = None if scan.phi_step_deg is None else deg2rad(scan.phi_step_deg)
    osc_r, phistep_r, phisteps = _phi(deg2rad(scan.phi_start_deg), osc, phistep, scan.phi_steps)

    def mrad(x):
        return None if x is None else x / 1000.0

    hdiv = _sane(_grid(mrad(bm.hdiv_range_mrad), mrad(bm.hdiv_step_mrad), bm.hdiv_steps,
                       default_range=1.0))
    vdiv = _sane(_grid(mrad(bm.vdiv_range_mrad), mrad(bm.vdiv_step_mrad), bm.vdiv_steps,
                       default_range=1.0))
    disp = _sane(_grid(bm.dispersion_pct / 100.0, None, bm.dispersion_steps, default_range=1.0))

    thick = det.thickness_um * 1e-6
    thickness = _grid(thick, None, det.thickness_steps, default_range=0.5e-6,
                      range_only_halves=True)
    mu = -1.0
    if det.absorption_length_um is not None:
        mu = 0.0 if det.absorption_length_um == 0 else 1.0 / (det.absorption_length_um * 1e-6)
    if thickness.range > 0.0 and mu < 0.0:
        mu = 1.0 / thickness.range
    thickness = _sane(thickness)

    spread = -1.0 if cr.mosaic_spread_deg is None else deg2rad(cr.mosaic_spread_deg)
    domains = -1 if cr.mosaic_domains is None else cr.mosaic_domains
    if domains <= 0:
        if spread < 0.0:
            domains, spread = 1, 0.0
        elif spread == 0.0:
            domains = 1
        else:
            notes.append("finite mosaicity with only one domain: using 10 mosaic domains")
            domains = 10
    else:
        if spread < 0.0:
            notes.append("no mosaic spread given: using 1 mosaic domain")
            spread, domains = 0.0, 1
        elif spread == 0.0:
            notes.append("zero mosaic spread: using 1 mosaic domain")
            domains = 1

    if phisteps <= 0:
        from .errors import ConfigError
        raise ConfigError("scan: an oscillation range of 0 with a phi step gives no phi steps "
                          "at all (nanoBragg would write an image of NaN); give a range, or "
                          "phi_steps", field="scan.osc_range_deg")
    return ResolvedSampling(
        phi0=deg2rad(scan.phi_start_deg), phi_step=phistep_r, phi_steps=phisteps, osc=osc_r,
        hdiv=hdiv, vdiv=vdiv, dispersion=disp, thickness=thickness, detector_mu=mu,
        mosaic_spread=spread, mosaic_domains=domains, notes=tuple(notes))


def recommended_oversample(xtal_size_max_m: float, wavelength_m: float, distance_m: float,
                           pixel_m: float) -> int:
    """nanoBragg's automatic oversampling: three subpixels per reciprocal-space fringe."""
    reciprocal_pixel = wavelength_m * distance_m / pixel_m
    n = math.ceil(3.0 * xtal_size_max_m / reciprocal_pixel)
    return n if n > 0 else 1
