"""Statistics of a rendered image, computed as nanoBragg reports them.

The maximum, mean and rms run over the rendered pixels (inside the ROI and not masked); the rms
deviation runs over the ROI (masked pixels included), as in the C program. They set the automatic
scales of the SMV and PGM files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageStats:
    max_I: float
    max_slow: int
    max_fast: int
    mean: float
    rms: float
    rmsd: float
    total: float
    pixels: int


def roi_mask(shape: tuple[int, int], roi: tuple[int, int, int, int]) -> np.ndarray:
    S, F = shape
    xmin, xmax, ymin, ymax = roi
    s = np.arange(S)[:, None]
    f = np.arange(F)[None, :]
    return (f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)


def image_stats(image: np.ndarray, roi: tuple[int, int, int, int], mask: np.ndarray | None
                ) -> ImageStats:
    in_roi = roi_mask(image.shape, roi)
    rendered = in_roi if mask is None else in_roi & mask
    vals = image[rendered].astype(np.float64)
    n = vals.size
    max_I, ms, mf = 0.0, 0, 0
    if n:
        i = int(np.argmax(vals))
        if vals[i] > 0:
            max_I = float(vals[i])
            flat = np.flatnonzero(rendered)[i]
            ms, mf = divmod(int(flat), image.shape[1])
    total = float(vals.sum())
    mean = total / max(n, 1)
    rms = float(np.sqrt((vals * vals).sum() / max(n - 1, 1))) if n else 0.0
    dev = image[in_roi].astype(np.float64) - mean
    rmsd = float(np.sqrt((dev * dev).sum() / max(dev.size - 1, 1))) if dev.size else 0.0
    return ImageStats(max_I=max_I, max_slow=ms, max_fast=mf, mean=mean, rms=rms, rmsd=rmsd,
                      total=total, pixels=n)
