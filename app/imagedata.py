"""A job's float images as the image viewer reads them: regions at any step (each output pixel the
maximum of its step x step block, so a one-pixel spot survives at every zoom level), and the
image's statistics for automatic contrast.

A float image is an artifact ``floatimage.bin`` (of a series' image n: ``floatimage_<n>.bin`` of
the child job that rendered it, app.image_sources), raw little-endian float32 in (slow, fast) order. Reads go through a
memory map of the stored file, so a tile of a 6-megapixel image touches only its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_core.io.png import reduce_max

#: the percentiles of the positive pixels that the statistics report (the viewer's contrast slider)
PERCENTILES = (50.0, 90.0, 99.0, 99.5, 99.9, 99.99)
#: percentiles of larger images come from every k-th finite pixel, at most this many
PERCENTILE_SAMPLE = 1 << 20


@dataclass(frozen=True)
class Region:
    """Rows ``s0:s1`` and columns ``f0:f1`` of an image, read in blocks of ``step`` x ``step``."""

    s0: int
    s1: int
    f0: int
    f1: int
    step: int

    @property
    def out_shape(self) -> tuple[int, int]:
        return -(-(self.s1 - self.s0) // self.step), -(-(self.f1 - self.f0) // self.step)


def read_region(img: np.ndarray, r: Region) -> np.ndarray:
    """The float32 pixels of ``r``: the maximum of each block (NaN only where a block is all NaN)."""
    return np.ascontiguousarray(reduce_max(img[r.s0:r.s1, r.f0:r.f1], r.step), dtype="<f4")


def image_stats(img: np.ndarray) -> dict:
    """Minimum, maximum, mean and counts over the finite pixels; percentiles of the positive ones
    (of every k-th finite pixel where there are more than ``PERCENTILE_SAMPLE``: ``sampled_every``).
    """
    flat = np.asarray(img, dtype=np.float32).reshape(-1)
    vals = flat[np.isfinite(flat)]
    k = max(1, -(-vals.size // PERCENTILE_SAMPLE))
    sample = vals[::k]
    pos = sample[sample > 0]
    out = {"pixels": int(flat.size), "finite": int(vals.size),
           "positive": int(np.count_nonzero(vals > 0)),
           "min": float(vals.min()) if vals.size else None,
           "max": float(vals.max()) if vals.size else None,
           "mean": float(vals.mean(dtype=np.float64)) if vals.size else None,
           "sampled_every": k, "percentiles": {}}
    if pos.size:
        qs = np.percentile(pos, PERCENTILES)
        out["percentiles"] = {f"{p:g}": float(q) for p, q in zip(PERCENTILES, qs)}
    return out


__all__ = ["Region", "read_region", "image_stats", "PERCENTILES"]
