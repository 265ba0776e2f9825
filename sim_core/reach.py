"""How far into reciprocal space a render reaches: the largest |q| = 2 sin(theta) / lambda.

Every subpixel of every sensor layer lies inside the box spanned by the pixel corners at the front
and the back of the sensor, so the largest |q| over all those corners (curved detectors included),
for every source, bounds what the render can index. The crystal's rotations (misset, phi, mosaic
domains) do not change |q|, only which reflection a point falls near. For many sources the bound
``(|d - b| + max_k |i_k - b|) / min_k lambda_k`` (b the beam, i_k the sources' incident directions)
is used, which exceeds the exact maximum by at most the beam divergence.
"""

from __future__ import annotations

import torch

from .geometry.detector import DetectorGeometry
from .geometry.rotations import rotate_axis
from .geometry.sources import Sources

#: corners handled at once (memory, not speed)
_CHUNK = 1 << 20


def _corner_directions(det: DetectorGeometry, beam: torch.Tensor, rows: torch.Tensor,
                       depth: float) -> torch.Tensor:
    """Unit vectors from the sample to the corners of the given rows of corners, at ``depth``."""
    px = det.pixel_size.detach().to(torch.float64)
    Fdet = px * torch.arange(det.fpixels + 1, dtype=torch.float64)
    Sdet = px * rows.to(torch.float64)
    f, s, o, p0 = (v.detach().to(torch.float64) for v in (det.fdet, det.sdet, det.odet, det.pix0))
    pos = (Fdet[None, :, None] * f + Sdet[:, None, None] * s + depth * o + p0).reshape(-1, 3)
    if det.curved:
        # as the render places curved-detector pixels: the flat y and z become angles
        dist = det.distance.detach().to(torch.float64)
        start = (dist * beam).expand_as(pos)
        turned = rotate_axis(start, s, pos[:, 1] / dist)
        pos = rotate_axis(turned, f, pos[:, 2] / dist)
    return pos / torch.linalg.vector_norm(pos, dim=-1, keepdim=True)


def max_q_inv_A(det: DetectorGeometry, beam_direction: torch.Tensor, sources: Sources,
                thickness_m: float = 0.0, dmin_A: float = 0.0) -> float:
    """The largest |q| (1/Angstrom) any subpixel of the render can have; ``dmin_A`` caps it."""
    beam = beam_direction.detach().to(torch.float64)
    incident = sources.incident.detach().to(torch.float64)
    lam = sources.wavelengths.detach().to(torch.float64)
    exact = incident.shape[0] <= 8
    spread = float(torch.linalg.vector_norm(incident - beam, dim=-1).max())
    lam_min = float(lam.min())
    rows_per_chunk = max(1, _CHUNK // (det.fpixels + 1))
    best = 0.0
    for depth in sorted({0.0, float(thickness_m)}):
        for start in range(0, det.spixels + 1, rows_per_chunk):
            rows = torch.arange(start, min(det.spixels + 1, start + rows_per_chunk))
            d = _corner_directions(det, beam, rows, depth)
            if exact:
                q = torch.linalg.vector_norm(d[:, None, :] - incident[None], dim=-1) / lam
                best = max(best, float(q.max()))
            else:
                q = (torch.linalg.vector_norm(d - beam, dim=-1) + spread) / lam_min
                best = max(best, float(q.max()))
    q_max = best * 1e-10
    if dmin_A > 0:
        q_max = min(q_max, 1.0 / dmin_A)
    return q_max


__all__ = ["max_q_inv_A"]
