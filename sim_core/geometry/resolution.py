"""Where a pixel lies and what it sees: its centre in the lab, its scattering angle 2θ and the
resolution d = λ / (2 sin θ) of the direct beam's wavelength there.

The pixel centre is the mean of the subpixel positions the render loop uses
(``sim_core.geometry.pixels.loop_geometry``), on the front face of the sensor, with the curved
detector's rotations. ``describe_detector`` gives the same geometry as plain numbers, so that a
client (the web page's image viewer) computes the same values for any pixel and draws resolution
rings and the beam centre without asking for each pixel.
"""

from __future__ import annotations

import math

import torch

from .detector import DetectorGeometry
from .rotations import rotate_axis


def pixel_centres(det: DetectorGeometry, slow, fast) -> torch.Tensor:
    """Lab positions (metres, shape (N, 3)) of the centres of pixels ``slow``, ``fast`` (N each)."""
    s = torch.as_tensor(slow, dtype=torch.float64).reshape(-1)
    f = torch.as_tensor(fast, dtype=torch.float64).reshape(-1)
    px = det.pixel_size.detach().to(torch.float64)
    F = (f + 0.5) * px
    S = (s + 0.5) * px
    pos = F[:, None] * det.fdet.detach() + S[:, None] * det.sdet.detach() + det.pix0.detach()
    if det.curved:
        # every pixel at the same distance: the flat y and z coordinates become angles
        dist = det.distance.detach()
        start = (dist * det.beam.detach()).expand(pos.shape[0], 3)
        turned = rotate_axis(start, det.sdet.detach(), pos[:, 1] / dist)
        pos = rotate_axis(turned, det.fdet.detach(), pos[:, 2] / dist)
    return pos


def pixel_resolution(det: DetectorGeometry, wavelength_A: float, slow, fast
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(d in Å, 2θ in degrees) at the centres of pixels ``slow``, ``fast``; d is inf at 2θ = 0."""
    pos = pixel_centres(det, slow, fast)
    diffracted = pos / torch.linalg.vector_norm(pos, dim=-1, keepdim=True)
    cos2t = (diffracted * det.beam.detach()).sum(-1).clamp(-1.0, 1.0)
    two_theta = torch.arccos(cos2t)
    sin_t = torch.sin(two_theta / 2.0)
    d = torch.where(sin_t > 0, wavelength_A / (2.0 * torch.where(sin_t > 0, sin_t, 1.0)),
                    torch.full_like(sin_t, math.inf))
    return d, torch.rad2deg(two_theta)


def describe_detector(det: DetectorGeometry, wavelength_A: float) -> dict:
    """The geometry a client needs for d, 2θ, rings and the beam centre, as JSON-ready numbers.

    A pixel (slow ``s``, fast ``f``) has its centre at
    ``pix0_m + (f + 0.5) * pixel_size_m * fdet + (s + 0.5) * pixel_size_m * sdet`` (then, on a
    curved detector, ``distance_m * beam`` rotated about ``sdet`` by ``y / distance_m`` and about
    ``fdet`` by ``z / distance_m``, y and z being the flat position's lab components). 2θ is the
    angle between that position and ``beam``; d = wavelength_A / (2 sin θ).
    """
    def vec(t: torch.Tensor) -> list[float]:
        return [float(x) for x in t.detach().reshape(-1)]

    px = float(det.pixel_size)
    return {
        "shape": [det.spixels, det.fpixels],
        "pixel_size_m": px,
        "pix0_m": vec(det.pix0),
        "fdet": vec(det.fdet), "sdet": vec(det.sdet), "odet": vec(det.odet),
        "beam": vec(det.beam),
        "wavelength_A": float(wavelength_A),
        "distance_m": float(det.distance),
        "close_distance_m": float(det.close_distance),
        "twotheta_deg": math.degrees(float(det.twotheta)),
        "curved": bool(det.curved),
        "convention": det.convention,
        # where the direct beam meets the detector plane, in pixel units from the first pixel's
        # outer corner (pixel (s, f) spans [s, s + 1) x [f, f + 1))
        "beam_center_px": {"slow": float(det.Sbeam) / px, "fast": float(det.Fbeam) / px},
    }


__all__ = ["pixel_centres", "pixel_resolution", "describe_detector"]
