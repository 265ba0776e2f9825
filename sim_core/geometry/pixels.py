"""Per-(pixel, loop) geometry of the render loop, in planar layout.

A *loop* is one (thickness layer, subpixel, source) of a pixel. For a block of P pixels and Lb loops
this computes the subpixel positions, the diffracted directions, the solid angle, the sensor
absorption, the polarization factor and the scattering vector q. Vectors are held as separate x, y,
z tensors of shape (P, Lb) so that every elementwise operation runs over contiguous memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import physics
from .rotations import rotate_axis


@dataclass
class LoopGeometry:
    pos: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # m, each (P, Lb)
    airpath: torch.Tensor  # m
    diffracted: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # unit vector
    omega: torch.Tensor  # sr
    capture: torch.Tensor  # fraction absorbed in the layer
    incident: torch.Tensor  # (Lb, 3) unit vectors of the loops' sources
    lam: torch.Tensor  # (Lb,) m
    q: torch.Tensor  # (3, P, Lb) scattering vectors, 1/m
    skip: torch.Tensor  # (P, Lb) bool: beyond dmin
    polar: torch.Tensor  # (P, Lb) polarization factor


@dataclass
class PixelFrame:
    """The detector and beam quantities the per-loop geometry needs, on the render device."""

    pix0: torch.Tensor
    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    beam: torch.Tensor
    polar_axis: torch.Tensor
    pixel_size: torch.Tensor
    distance: torch.Tensor
    close_distance: torch.Tensor
    incident: torch.Tensor  # (K, 3)
    lambdas: torch.Tensor  # (K,)
    oversample: int
    thick_step: float
    thick: float
    mu: float
    kahn: float
    nopolar: bool
    dmin: float
    curved: bool
    point_pixel: bool
    oversample_thick: bool
    # loop index -> subpixel fast/slow offset, layer index, source index
    sub_f: torch.Tensor
    sub_s: torch.Tensor
    layer: torch.Tensor
    source: torch.Tensor


def scattering_vector(d, inc, lam) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q = (diffracted - incident) / lambda, as x, y, z: unit vectors ``d`` (P, Lb) each,
    ``inc`` (3, Lb), wavelengths ``lam`` (Lb,)."""
    return tuple((d[i] - inc[i]) / lam for i in range(3))


def loop_geometry(fr: PixelFrame, fp: torch.Tensor, sp: torch.Tensor, loops: torch.Tensor
                  ) -> LoopGeometry:
    """Geometry of loops ``loops`` (Lb,) of the pixels at fast/slow indices ``fp``, ``sp`` (P,)."""
    sub = fr.pixel_size / fr.oversample
    Fdet = sub * (fp[:, None] * fr.oversample + fr.sub_f[loops][None, :]) + sub / 2.0
    Sdet = sub * (sp[:, None] * fr.oversample + fr.sub_s[loops][None, :]) + sub / 2.0
    layer = fr.layer[loops]
    Odet = (layer * fr.thick_step)[None, :]
    f, s, o, p0 = fr.fdet, fr.sdet, fr.odet, fr.pix0
    pos = tuple(Fdet * f[i] + Sdet * s[i] + Odet * o[i] + p0[i] for i in range(3))
    if fr.curved:
        # every pixel at the same distance: the flat y and z coordinates become angles
        start = (fr.distance * fr.beam).expand(*Fdet.shape, 3)
        turned = rotate_axis(start, fr.sdet, pos[1] / fr.distance)
        pos = tuple(rotate_axis(turned, fr.fdet, pos[2] / fr.distance).unbind(-1))
    x, y, z = pos
    airpath = torch.sqrt(x * x + y * y + z * z)
    d = (x / airpath, y / airpath, z / airpath)
    omega = physics.solid_angle(fr.pixel_size, airpath, fr.close_distance, fr.point_pixel)
    if fr.thick > 0 or fr.oversample_thick:
        parallax = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
        capture = physics.capture_fraction(layer[None, :], fr.thick_step, fr.mu, parallax)
    else:
        capture = torch.ones_like(airpath)
    k = fr.source[loops]
    incident = fr.incident[k]
    lam = fr.lambdas[k]
    inc = incident.T  # (3, Lb)
    q = torch.stack(scattering_vector(d, inc, lam))
    if fr.dmin > 0:
        stol = 0.5 * torch.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
        safe = torch.where(stol > 0, stol, torch.ones_like(stol))
        skip = (stol > 0) & (fr.dmin > 0.5 / safe)
    else:
        skip = torch.zeros(airpath.shape, dtype=torch.bool, device=airpath.device)
    if fr.nopolar:
        polar = torch.ones_like(airpath)
    else:
        polar = physics.polarization_factor(fr.kahn, tuple(inc), d, fr.polar_axis)
    return LoopGeometry(pos=pos, airpath=airpath, diffracted=d, omega=omega, capture=capture,
                        incident=incident, lam=lam, q=q, skip=skip, polar=polar)
