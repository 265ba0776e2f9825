"""8-bit PGM (P5) images as nanoBragg writes its ``-pgmfile``.

The header is ``P5\\n<fast> <slow>\\n# pixels scaled by <scale %g>\\n255\\n`` and each pixel is
``(unsigned char) min(I * scale, 255)``; pixels outside the region of interest are 0.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
#: (xmin, xmax, ymin, ymax): inclusive fast (x) and slow (y) pixel bounds
Roi = tuple[int, int, int, int]


def auto_pgm_scale(rmsd: float, int_scale: float) -> float:
    """nanoBragg's default ``-pgmscale``: ``250 / (5 rmsd)``, or the integer-image scale when
    ``rmsd`` is not positive."""
    return 250.0 / (5.0 * rmsd) if rmsd > 0.0 else int_scale


def pgm_pixels(float_image: np.ndarray, scale: float, roi: Optional[Roi] = None) -> np.ndarray:
    """The uint8 pixels: ``I * scale`` (double), capped at 255, truncated toward zero.

    A negative product wraps modulo 256 and NaN becomes 0, as a C cast does on x86.
    """
    img = np.asarray(float_image, dtype=np.float32)
    test = img.astype(np.float64) * float(scale)
    test = np.where(test > 255.0, 255.0, test)
    bad = ~np.isfinite(test) | (test <= -2147483649.0)
    as_int = np.trunc(np.where(bad, 0.0, test)).astype(np.int64)
    out = (as_int & 0xFF).astype(np.uint8)
    if roi is not None:
        xmin, xmax, ymin, ymax = roi
        s = np.arange(img.shape[0])[:, None]
        f = np.arange(img.shape[1])[None, :]
        out[~((f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax))] = 0
    return out


def pgm_bytes(float_image: np.ndarray, scale: float, roi: Optional[Roi] = None) -> bytes:
    """The whole PGM file as nanoBragg writes it."""
    pixels = pgm_pixels(float_image, scale, roi)
    nslow, nfast = pixels.shape
    header = f"P5\n{nfast} {nslow}\n# pixels scaled by {scale:g}\n255\n".encode("ascii")
    return header + pixels.tobytes()


def write_pgm(path: PathLike, float_image: np.ndarray, scale: float,
              roi: Optional[Roi] = None) -> None:
    """Write the PGM file for ``float_image`` (slow, fast) scaled by ``scale``."""
    with open(path, "wb") as fh:
        fh.write(pgm_bytes(float_image, scale, roi))


__all__ = ["auto_pgm_scale", "pgm_pixels", "pgm_bytes", "write_pgm"]
