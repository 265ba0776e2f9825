"""Crystal geometry: unit cell or MOSFLM matrix -> real and reciprocal vectors, misset, size.

A port of nanoBragg's cell construction. With a unit cell the reciprocal vectors start in the standard
orientation (a* along x, b* in the x-y plane); a MOSFLM matrix gives them directly (divided by the
wavelength). The misset rotates the reciprocal vectors about x, then y, then z. The real-space vectors
come from cross products of the reciprocal ones and the reciprocal ones are rebuilt from them, exactly
as the C program does, so that both sets are mutually consistent to rounding.

Lengths: real-space vectors in metres (``a``, ``b``, ``c``) and in Angstrom (``a_A`` ...), reciprocal
vectors in inverse Angstrom. Cell lengths, angles, misset angles and the wavelength may be tensors that
require grad (``params``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Crystal
from ..units import deg2rad
from .rotations import rotate_xyz


@dataclass
class CrystalGeometry:
    a: torch.Tensor  # m, phi = 0, no mosaic
    b: torch.Tensor
    c: torch.Tensor
    a_star: torch.Tensor  # 1/Angstrom, as used by the round/gauss/tophat spot shapes
    b_star: torch.Tensor
    c_star: torch.Tensor
    V_cell_A3: torch.Tensor
    Na: int
    Nb: int
    Nc: int
    #: Na, Nb, Nc as the flags set them, before a crystal size replaces them (nanoBragg decides
    #: automatic interpolation on these)
    N_flags: tuple[int, int, int]
    misset_rad: tuple[float, float, float] | None
    cell_report: dict
    notes: list[str] = field(default_factory=list)

    @property
    def xtal_size_max_m(self) -> float:
        sizes = [float(torch.linalg.vector_norm(v.detach())) * n
                 for v, n in ((self.a, self.Na), (self.b, self.Nb), (self.c, self.Nc))]
        return max(sizes)


def _f64(x) -> torch.Tensor:
    return x.to(torch.float64) if isinstance(x, torch.Tensor) else torch.tensor(float(x),
                                                                              dtype=torch.float64)


def _rescale(v: torch.Tensor, magnitude) -> torch.Tensor:
    old = torch.linalg.vector_norm(v)
    old = torch.where(old <= 0, torch.ones_like(old), old)
    return v * (magnitude / old)


def reciprocal_from_cell(a, b, c, alpha, beta, gamma):
    """Reciprocal vectors (1/Angstrom) in nanoBragg's default orientation and the cell volume."""
    s = (alpha + beta + gamma) / 2
    skew = torch.abs(torch.sin(s) * torch.sin(s - alpha) * torch.sin(s - beta) * torch.sin(s - gamma))
    V_cell = 2.0 * a * b * c * torch.sqrt(skew)
    V_star = 1.0 / V_cell
    a_star_len = b * c * torch.sin(alpha) * V_star
    b_star_len = c * a * torch.sin(beta) * V_star
    c_star_len = a * b * torch.sin(gamma) * V_star
    cos_a, cos_b, cos_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_a, sin_b, sin_g = torch.sin(alpha), torch.sin(beta), torch.sin(gamma)
    sin_gamma_star = torch.clamp(c * V_star / a_star_len / b_star_len, -1.0, 1.0)
    cos_alpha_star = (cos_b * cos_g - cos_a) / (sin_b * sin_g)
    cos_beta_star = (cos_g * cos_a - cos_b) / (sin_g * sin_a)
    cos_gamma_star = (cos_a * cos_b - cos_g) / (sin_a * sin_b)
    zero = torch.zeros_like(a)
    a_star = torch.stack((a_star_len, zero, zero))
    b_star = torch.stack((b_star_len * cos_gamma_star, b_star_len * sin_gamma_star, zero))
    c_star = torch.stack((
        c_star_len * cos_beta_star,
        c_star_len * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star,
        c_star_len * V_cell / (a * b * c * sin_gamma_star)))
    return a_star, b_star, c_star, V_cell


def build_crystal(crystal: Crystal, wavelength_A, *, matrix: np.ndarray | None,
                  misset_rad: tuple[float, float, float] | None, beam_size_mm: float,
                  params: dict | None = None) -> CrystalGeometry:
    """Resolve the crystal of a config.

    ``matrix`` is the MOSFLM matrix read from ``crystal.matrix_file`` (rows x, y, z; columns a*, b*,
    c* times the wavelength); ``misset_rad`` is the misset to apply (the random one already drawn).
    """
    params = params or {}
    notes: list[str] = []

    def p(name, value):
        return params[name].to(torch.float64) if name in params else _f64(value)

    cell = crystal.cell
    user_cell = cell is not None
    if user_cell:
        ca, cb, cc = p("cell_a_A", cell.a_A), p("cell_b_A", cell.b_A), p("cell_c_A", cell.c_A)
        al = deg2rad(p("cell_alpha_deg", cell.alpha_deg))
        be = deg2rad(p("cell_beta_deg", cell.beta_deg))
        ga = deg2rad(p("cell_gamma_deg", cell.gamma_deg))
        a_star, b_star, c_star, V_cell_user = reciprocal_from_cell(ca, cb, cc, al, be, ga)
    if matrix is not None:
        lam = p("wavelength_A", wavelength_A)
        m = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
        scale = 1.0 / lam
        a_star, b_star, c_star = m[:, 0] * scale, m[:, 1] * scale, m[:, 2] * scale

    if misset_rad is not None:
        if "misset_x_deg" in params or "misset_y_deg" in params or "misset_z_deg" in params:
            rx = deg2rad(p("misset_x_deg", crystal.misset_deg[0]))
            ry = deg2rad(p("misset_y_deg", crystal.misset_deg[1]))
            rz = deg2rad(p("misset_z_deg", crystal.misset_deg[2]))
        else:
            rx, ry, rz = misset_rad
        a_star = rotate_xyz(a_star, rx, ry, rz)
        b_star = rotate_xyz(b_star, rx, ry, rz)
        c_star = rotate_xyz(c_star, rx, ry, rz)

    axb = torch.linalg.cross(a_star, b_star)
    bxc = torch.linalg.cross(b_star, c_star)
    cxa = torch.linalg.cross(c_star, a_star)
    V_star = torch.dot(a_star, bxc)
    if user_cell:
        bxc = _rescale(bxc, ca / V_cell_user)
        cxa = _rescale(cxa, cb / V_cell_user)
        axb = _rescale(axb, cc / V_cell_user)
        V_star = 1.0 / V_cell_user
    V_cell = 1.0 / V_star
    a_A = bxc * V_cell
    b_A = cxa * V_cell
    c_A = axb * V_cell
    a_star = torch.linalg.cross(b_A, c_A) * V_star
    b_star = torch.linalg.cross(c_A, a_A) * V_star
    c_star = torch.linalg.cross(a_A, b_A) * V_star

    # crystal size: counts from the flags, or from a size (clipped by the beam) when one is given
    n_flags = (crystal.Na, crystal.Nb, crystal.Nc)
    sizes = [None if s is None else s / 1000.0 for s in
             (crystal.size_a_mm, crystal.size_b_mm, crystal.size_c_mm)]
    beamsize = beam_size_mm / 1000.0
    if beamsize >= 0:
        for i, label in ((1, "high"), (2, "wide")):
            if sizes[i] is not None and beamsize < sizes[i]:
                notes.append(f"clipping sample ({sizes[i]:g} m {label}) with beam ({beamsize:g} m)")
                sizes[i] = beamsize
    counts = []
    for n, size, vec in zip(n_flags, sizes, (a_A, b_A, c_A)):
        length_m = float(torch.linalg.vector_norm(vec.detach())) * 1e-10
        if size is not None and size > 0:
            n = math.ceil(size / length_m)
        counts.append(max(int(n), 1))

    report = _cell_report(*(x.detach() for x in (a_A, b_A, c_A, a_star, b_star, c_star, V_cell)))
    return CrystalGeometry(
        a=a_A * 1e-10, b=b_A * 1e-10, c=c_A * 1e-10, a_star=a_star, b_star=b_star, c_star=c_star,
        V_cell_A3=V_cell, Na=counts[0], Nb=counts[1], Nc=counts[2], N_flags=n_flags,
        misset_rad=misset_rad, cell_report=report, notes=notes)


def _cell_report(a, b, c, a_star, b_star, c_star, V_cell) -> dict:
    def length(v):
        return float(torch.linalg.vector_norm(v))

    def angle(u, v):
        cosv = float(torch.dot(u, v)) / length(u) / length(v)
        return math.degrees(math.acos(max(-1.0, min(1.0, cosv))))

    return {
        "cell_A_deg": [length(a), length(b), length(c), angle(b, c), angle(a, c), angle(a, b)],
        "reciprocal_cell": [length(a_star), length(b_star), length(c_star), angle(b_star, c_star),
                            angle(a_star, c_star), angle(a_star, b_star)],
        "volume_A3": float(V_cell),
        "a_A": [float(x) for x in a], "b_A": [float(x) for x in b], "c_A": [float(x) for x in c],
        "a_star": [float(x) for x in a_star], "b_star": [float(x) for x in b_star],
        "c_star": [float(x) for x in c_star],
    }
