"""Physics functions of the render loop, elementwise on tensors of any shape, dtype and device.

Lattice transforms (the four crystal shapes), Kahn polarization, solid angle, detector absorption and
the scaling constants, each written the way nanoBragg evaluates it.
"""

from __future__ import annotations

import math

import torch

#: Thomson cross section of the electron, m^2 (r_e^2)
R_E_SQR = 7.94079248018965e-30
AVOGADRO = 6.02214179e23
#: forward structure factor and molecular weight of water
WATER_F = 2.57
WATER_MW = 18.0
#: scale of the round-crystal transform: sqrt of the volume ratio of a cube and a sphere
ROUND_XTAL_SCALE = 0.723601254558268
GAUSS_WIDTH = 0.63
TOPHAT_RADIUS_SQR = 0.3969


def nearest_index(h: torch.Tensor) -> torch.Tensor:
    """nanoBragg's rounding to the nearest Miller index, ``ceil(h - 0.5)`` (halves round down)."""
    return torch.ceil(h - 0.5)


def sincg(x: torch.Tensor, N) -> torch.Tensor:
    """Fourier transform of a row of N unit cells: ``sin(N x) / sin(x)``, N at x = 0."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.full_like(x, float(N)), torch.sin(N * safe) / torch.sin(safe))


def sincg_fractional(delta: torch.Tensor, N: int) -> torch.Tensor:
    """``sincg(pi*h, N)`` up to its sign, from the offset ``delta = h - nearest_index(h)``.

    sin(N pi (n + d)) / sin(pi (n + d)) = (-1)^(n (N - 1)) sin(N pi d) / sin(pi d) for integer N, so
    the squared transform depends on the small offset only. Working with ``delta`` keeps the argument
    of the sines small, which makes float32 renders much more accurate near Bragg peaks.
    """
    x = math.pi * delta
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.full_like(x, float(N)), torch.sin(N * safe) / torch.sin(safe))


def sincg_offset_(delta: torch.Tensor, N: int) -> torch.Tensor:
    """``sincg_fractional(delta, N)`` computed in place (``delta`` is overwritten); no autograd.

    The autograd-safe form needs four more temporaries; renders without gradients use this one.
    """
    delta.mul_(math.pi)
    num = delta * float(N)
    num.sin_()
    delta.sin_()
    num.div_(delta)
    return num.nan_to_num_(nan=float(N))  # 0/0 where h is an exact node: the limit is N


def sincg_fractional_fast(h: torch.Tensor, N: int) -> torch.Tensor:
    """``sincg_fractional(h - round(h), N)`` without autograd; rounding halves to even instead of
    down changes only the sign, which the squared transform does not see."""
    d = torch.round(h)
    torch.sub(h, d, out=d)
    return sincg_offset_(d, N)


def sincg_sign(n: torch.Tensor, N: int) -> torch.Tensor:
    """The sign (-1)^(n (N - 1)) that turns ``sincg_fractional`` into ``sincg(pi*h, N)``."""
    if N % 2 == 1:
        return torch.ones_like(n)
    return 1.0 - 2.0 * torch.remainder(n, 2.0)


def sinc3(x: torch.Tensor) -> torch.Tensor:
    """Fourier transform of a sphere, ``3 (sin x / x - cos x) / x^2``, 1 at x = 0.

    Near x = 0 the two terms cancel (in float32 every digit is lost where the spot is brightest; in
    float64 torch's and libm's sines then round differently, giving different garbage), so below
    |x| = 0.5 the Taylor series ``1 - x^2/10 + x^4/280 - x^6/15120 + x^8/1330560`` is used
    (relative error below 1e-11).
    """
    safe = torch.where(x == 0, torch.ones_like(x), x)
    val = 3.0 * (torch.sin(safe) / safe - torch.cos(safe)) / (safe * safe)
    val = torch.where(x == 0, torch.ones_like(x), val)
    x2 = x * x
    x4 = x2 * x2
    series = 1.0 - x2 / 10.0 + x4 / 280.0 - x4 * x2 / 15120.0 + x4 * x4 / 1330560.0
    val = torch.where(torch.abs(x) < 0.5, series, val)
    return val


def lattice_round(dh, dk, dl, Na: int, Nb: int, Nc: int, fudge: float) -> torch.Tensor:
    """Ellipsoidal crystal: sinc3 of the scaled distance to the nearest node."""
    hrad_sqr = dh * dh * (Na * Na) + dk * dk * (Nb * Nb) + dl * dl * (Nc * Nc)
    return (Na * Nb * Nc * ROUND_XTAL_SCALE) * sinc3(math.pi * torch.sqrt(hrad_sqr * fudge))


def reciprocal_distance_sqr(dh, dk, dl, a_star, b_star, c_star, Na: int, Nb: int, Nc: int
                            ) -> torch.Tensor:
    """|dh a* + dk b* + dl c*|^2 scaled by (Na Nb Nc)^2 (reciprocal vectors in 1/Angstrom)."""
    dx = dh * a_star[0] + dk * b_star[0] + dl * c_star[0]
    dy = dh * a_star[1] + dk * b_star[1] + dl * c_star[1]
    dz = dh * a_star[2] + dk * b_star[2] + dl * c_star[2]
    return (dx * dx + dy * dy + dz * dz) * float((Na * Na) * (Nb * Nb) * (Nc * Nc))


def lattice_gauss(rad_star_sqr: torch.Tensor, Na: int, Nb: int, Nc: int, fudge: float):
    return (Na * Nb * Nc) * torch.exp(-(rad_star_sqr / GAUSS_WIDTH * fudge))


def lattice_tophat(rad_star_sqr: torch.Tensor, Na: int, Nb: int, Nc: int, fudge: float):
    return (Na * Nb * Nc) * (rad_star_sqr * fudge < TOPHAT_RADIUS_SQR).to(rad_star_sqr.dtype)


def _xyz(v):
    """(x, y, z) components of a vector given as a tensor (..., 3) or as a 3-sequence of tensors."""
    if isinstance(v, torch.Tensor):
        return v.unbind(-1)
    return tuple(v)


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _unit(a):
    n = torch.sqrt(_dot(a, a))
    safe = torch.where(n > 0, n, torch.ones_like(n))
    return tuple(torch.where(n > 0, c / safe, torch.zeros_like(c)) for c in a)


def polarization_factor(kahn: float, incident, diffracted, axis) -> torch.Tensor:
    """Kahn et al. polarization factor for unit ``incident`` and ``diffracted`` vectors.

    Vectors are tensors (..., 3) or (x, y, z) sequences of broadcastable tensors. ``axis`` is the
    E-vector of the beam; psi, the angle of the diffracted ray about the incident one, is measured
    from the plane of the E-vector as in nanoBragg.
    """
    inc, dif, ax = _xyz(incident), _xyz(diffracted), _xyz(axis)
    cos2theta = _dot(inc, dif)
    cos2theta_sqr = cos2theta * cos2theta
    sin2theta_sqr = 1.0 - cos2theta_sqr
    if kahn == 0.0:
        return 0.5 * (1.0 + cos2theta_sqr)
    b_in = _unit(_cross(ax, inc))
    e_in = _unit(_cross(inc, b_in))
    psi = -torch.atan2(_dot(dif, b_in), _dot(dif, e_in))
    return 0.5 * (1.0 + cos2theta_sqr - kahn * torch.cos(2.0 * psi) * sin2theta_sqr)


def solid_angle(pixel_size, airpath: torch.Tensor, close_distance, point_pixel: bool):
    """Solid angle of a pixel: (pixel/R)^2 * obliquity, or 1/R^2 for a point pixel."""
    if point_pixel:
        return 1.0 / (airpath * airpath)
    return pixel_size * pixel_size / (airpath * airpath) * close_distance / airpath


def capture_fraction(layer: torch.Tensor, step: float, mu: float, parallax: torch.Tensor):
    """Fraction of photons absorbed in sensor layer ``layer`` (thickness ``step``, attenuation mu)."""
    return (torch.exp(-layer * step * mu / parallax)
            - torch.exp(-(layer + 1.0) * step * mu / parallax))


def water_background(water_m: float, fluence: float) -> float:
    """nanoBragg's flat background of a water layer (added to every pixel before scaling)."""
    return (WATER_F * WATER_F * R_E_SQR * fluence * water_m ** 3 * 1e6 * AVOGADRO / WATER_MW)


def fluence_from_beam(fluence: float, flux: float, exposure: float, beam_size_m: float) -> float:
    """Fluence from flux, exposure and beam size when a flux is given (nanoBragg's rule)."""
    if flux != 0.0 and exposure > 0.0 and beam_size_m >= 0:
        return flux * exposure / beam_size_m / beam_size_m
    return fluence
