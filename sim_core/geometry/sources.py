"""X-ray sources: a divergence x dispersion grid, or a list read from a source file.

Every source is a unit direction (pointing from the sample towards the source, as nanoBragg stores
it) and a wavelength. The weights of a source file are read but, as in nanoBragg, not used: every
source counts once and the image is divided by the number of sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling import ResolvedSampling, divergence_kept
from .rotations import rotate_axis


@dataclass
class Sources:
    directions: torch.Tensor  # (K, 3) unit vectors towards the sources
    wavelengths: torch.Tensor  # (K,) metres
    divergence_points: int
    from_file: bool

    @property
    def count(self) -> int:
        return int(self.directions.shape[0])

    @property
    def incident(self) -> torch.Tensor:
        """Unit vectors along the incident beam (from the source to the sample)."""
        return -self.directions


def divergence_points(s: ResolvedSampling, round_div: bool) -> list[tuple[float, float]]:
    """The (hdiv, vdiv) grid points nanoBragg keeps (``sampling.divergence_kept``), in its order."""
    h, v = s.hdiv, s.vdiv
    kept = divergence_kept(h, v, round_div)
    return [(h.step * i - h.range / 2.0, v.step * j - v.range / 2.0)
            for i in range(h.steps) for j in range(v.steps) if kept[i, j]]


#: nanoBragg places sources 10 m upstream (its -source_dist flag is disabled); only directions
#: matter, except where a source file gives some coordinates and leaves the others to this default
SOURCE_DISTANCE_M = 10.0


def generated_sources(s: ResolvedSampling, beam: torch.Tensor, polar: torch.Tensor,
                      vert: torch.Tensor, wavelength_m, *, round_div: bool) -> Sources:
    pts = divergence_points(s, round_div)
    dirs = []
    for hdiv, vdiv in pts:
        vec = -SOURCE_DISTANCE_M * beam
        vec = rotate_axis(vec, polar, vdiv)
        vec = rotate_axis(vec, vert, hdiv)
        dirs.append(vec)
    d = s.dispersion
    lam_factors = torch.tensor([1.0 + d.step * i - d.range / 2.0 for i in range(d.steps)],
                               dtype=torch.float64)
    lambdas = wavelength_m * lam_factors
    directions = []
    wavelengths = []
    for vec in dirs:
        unit = vec / torch.linalg.vector_norm(vec)
        for k in range(d.steps):
            directions.append(unit)
            wavelengths.append(lambdas[k])
    return Sources(directions=torch.stack(directions), wavelengths=torch.stack(wavelengths),
                   divergence_points=len(pts), from_file=False)


def file_sources(rows: list, beam: torch.Tensor, wavelength_m) -> Sources:
    """Sources from the rows of a source file (``X Y Z weight lambda``; missing values are None)."""
    directions, wavelengths = [], []
    for row in rows:
        row = list(row) + [None] * (5 - len(row))
        default = -SOURCE_DISTANCE_M * beam
        vec = torch.stack([torch.as_tensor(row[i], dtype=torch.float64) if row[i] is not None
                           else default[i] for i in range(3)])
        n = torch.linalg.vector_norm(vec)
        directions.append(vec / n if float(n) != 0 else vec)
        lam = row[4]
        wavelengths.append(torch.as_tensor(lam, dtype=torch.float64) if lam is not None
                           else torch.as_tensor(wavelength_m, dtype=torch.float64))
    return Sources(directions=torch.stack(directions), wavelengths=torch.stack(wavelengths),
                   divergence_points=0, from_file=True)
