"""Images as the image viewer reads them: regions at any step (each output pixel the maximum of
its step x step block, so a one-pixel spot survives at every zoom level), the image's statistics
and histogram for automatic contrast, and the values along a line (a profile).

A float image is an artifact ``floatimage.bin`` (of a series' image n: ``floatimage_<n>.bin`` of
the child job that rendered it, app.image_sources), raw little-endian float32 in (slow, fast) order. Reads
go through a memory map of the stored file, so a tile of a 6-megapixel image touches only its rows.
The job's SMV and CBF images, and those a user uploads to compare, are read by
:mod:`sim_core.io.imagefile` (SMV memory-mapped too); every answer is float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_core.io.png import reduce_max

#: the percentiles of the positive pixels that the statistics report (the viewer's contrast slider)
PERCENTILES = (50.0, 90.0, 99.0, 99.5, 99.9, 99.99)
#: percentiles of larger images come from every k-th finite pixel, at most this many
PERCENTILE_SAMPLE = 1 << 20
#: bins of the histogram
HISTOGRAM_BINS = 256
#: the most points one profile may have
MAX_PROFILE_POINTS = 16384


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


def histogram(vals: np.ndarray, lo: float, hi: float) -> dict:
    """Counts of ``vals`` (finite, within lo..hi) in ``HISTOGRAM_BINS`` bins even in
    x = log1p(v - lo) / log1p(hi - lo): fine bins for the many faint pixels and still a few for the
    bright spots, whether the image spans 0..2 or 0..10^6. Bin i holds x in [i, i+1) / bins; the
    maximum falls in the last."""
    span = np.log1p(hi - lo) if hi > lo else 1.0
    x = np.log1p(vals.astype(np.float64) - lo) * (HISTOGRAM_BINS / span)
    idx = np.minimum(x.astype(np.int64), HISTOGRAM_BINS - 1)
    counts = np.bincount(idx, minlength=HISTOGRAM_BINS)
    return {"scale": "log1p", "lo": lo, "hi": hi, "counts": [int(c) for c in counts]}


def image_stats(img: np.ndarray, saturation: float | None = None) -> dict:
    """Minimum, maximum, mean and counts over the finite pixels, their histogram, the pixels at or
    above ``saturation`` (overloads); percentiles of the positive ones (of every k-th finite pixel
    where there are more than ``PERCENTILE_SAMPLE``: ``sampled_every``).
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
           "sampled_every": k, "percentiles": {}, "saturation": saturation,
           "overloads": (int(np.count_nonzero(vals >= saturation))
                         if saturation is not None else None),
           "histogram": histogram(vals, float(vals.min()), float(vals.max())) if vals.size else None}
    if pos.size:
        qs = np.percentile(pos, PERCENTILES)
        out["percentiles"] = {f"{p:g}": float(q) for p, q in zip(PERCENTILES, qs)}
    return out


def profile(img: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> dict:
    """The pixels on the line from pixel ``a`` to pixel ``b`` (slow, fast), both included: one a
    step along the longer axis (the nearest pixel on the other), their values and their distance
    from ``a`` in pixels."""
    (s0, f0), (s1, f1) = a, b
    n = max(abs(s1 - s0), abs(f1 - f0)) + 1
    t = np.linspace(0.0, 1.0, n)
    ss = np.rint(s0 + t * (s1 - s0)).astype(np.int64)
    ff = np.rint(f0 + t * (f1 - f0)).astype(np.int64)
    values = np.asarray(img[ss, ff], dtype=np.float32)
    dist = np.hypot(ss - s0, ff - f0)
    return {"from": [s0, f0], "to": [s1, f1],
            "pixels": [[int(s), int(f)] for s, f in zip(ss, ff)],
            "values": [float(v) if np.isfinite(v) else None for v in values],
            "distance_px": [round(float(d), 4) for d in dist]}


__all__ = ["Region", "read_region", "image_stats", "histogram", "profile", "PERCENTILES",
           "MAX_PROFILE_POINTS"]
