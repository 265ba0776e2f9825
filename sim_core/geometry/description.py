"""d and 2θ of pixels from a detector description (``resolution.describe_detector``), with numpy
alone: what a process that never loads torch (the API) computes for the viewer, the same numbers
``resolution.pixel_resolution`` gives."""

from __future__ import annotations

import math

import numpy as np


def _rotate(v: np.ndarray, axis: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of the rows of ``v`` about the unit ``axis`` by ``phi`` (one per row)."""
    c, s = np.cos(phi)[:, None], np.sin(phi)[:, None]
    dot = (v @ axis)[:, None] * (1.0 - c)
    return axis * dot + v * c + np.cross(np.broadcast_to(axis, v.shape), v) * s


def described_pixel_centres(desc: dict, slow, fast) -> np.ndarray:
    """Lab positions (metres, (N, 3)) of the centres of pixels ``slow``, ``fast``."""
    s = np.asarray(slow, dtype=np.float64).reshape(-1)
    f = np.asarray(fast, dtype=np.float64).reshape(-1)
    px = float(desc["pixel_size_m"])
    fdet, sdet = np.asarray(desc["fdet"], float), np.asarray(desc["sdet"], float)
    pos = ((f + 0.5) * px)[:, None] * fdet + ((s + 0.5) * px)[:, None] * sdet \
        + np.asarray(desc["pix0_m"], float)
    if desc.get("curved"):
        dist = float(desc["distance_m"])
        start = np.broadcast_to(dist * np.asarray(desc["beam"], float), pos.shape).copy()
        turned = _rotate(start, sdet, pos[:, 1] / dist)
        pos = _rotate(turned, fdet, pos[:, 2] / dist)
    return pos


def described_resolution(desc: dict, slow, fast) -> tuple[np.ndarray, np.ndarray]:
    """(d in Å, 2θ in degrees) at the centres of pixels ``slow``, ``fast``; d is inf at 2θ = 0."""
    pos = described_pixel_centres(desc, slow, fast)
    diffracted = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
    cos2t = np.clip(diffracted @ np.asarray(desc["beam"], float), -1.0, 1.0)
    two_theta = np.arccos(cos2t)
    sin_t = np.sin(two_theta / 2.0)
    with np.errstate(divide="ignore"):
        d = np.where(sin_t > 0, float(desc["wavelength_A"]) / (2.0 * np.where(sin_t > 0, sin_t, 1.0)),
                     math.inf)
    return d, np.degrees(two_theta)


__all__ = ["described_pixel_centres", "described_resolution"]
