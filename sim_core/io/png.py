"""A quick-look PNG of a float image that keeps every spot: 8-bit greyscale, at most 1024 pixels on
its longer side.

Written with ``zlib`` and ``struct`` only. A detector larger than the preview is reduced by blocks of
k x k pixels, each taking its brightest pixel, so that a one-pixel Bragg spot survives. The contrast
comes from the image's statistics, as adxv's automatic contrast does: 0 is black and a high
percentile (99.5 %) of the positive pixels is white, on a square-root scale so that spots a few
percent of that level still stand out. Non-finite pixels are black. An image with no positive finite
pixel gives a placeholder (grey stripes saying NO SIGNAL or NOT FINITE) rather than a black square.
Meant for people, not for analysis.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

#: the longest side of a preview, in pixels
PREVIEW_MAX = 1024
#: the percentile of the positive pixels that maps to white
WHITE_PERCENTILE = 99.5


def reduce_max(img: np.ndarray, k: int) -> np.ndarray:
    """The maximum of each k x k block (the last row and column of blocks may be partial).

    NaN pixels are ignored where their block has a number (``np.fmax``); a block of NaN stays NaN.
    """
    a = np.asarray(img)
    if k <= 1:
        return a
    S, F = a.shape
    rs, rf = -(-S // k), -(-F // k)
    if (rs * k, rf * k) != (S, F):
        pad = np.full((rs * k, rf * k), np.nan, dtype=np.result_type(a.dtype, np.float32))
        pad[:S, :F] = a
        a = pad
    return np.fmax.reduce(np.fmax.reduce(a.reshape(rs, k, rf, k), axis=3), axis=1)


def preview_factor(shape: tuple[int, int], longest: int = PREVIEW_MAX) -> int:
    """The block size that brings ``shape`` to at most ``longest`` pixels on its longer side."""
    return max(1, math.ceil(max(shape) / longest))


def preview_pixels(float_image: np.ndarray, longest: int = PREVIEW_MAX) -> np.ndarray:
    """The uint8 greyscale pixels of the preview, shape (ceil(slow / k), ceil(fast / k))."""
    img = np.asarray(float_image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D (slow, fast) image, got shape {img.shape}")
    if img.size == 0:
        raise ValueError("a preview needs at least one pixel")
    img = img.astype(np.float32, copy=False)
    small = reduce_max(np.where(np.isfinite(img), img, np.nan), preview_factor(img.shape, longest))
    small = np.nan_to_num(small, nan=-np.inf)
    positive = small[small > 0]
    if positive.size == 0:
        return placeholder(small.shape, "NOT FINITE" if not np.isfinite(small).any()
                           else "NO SIGNAL")
    white = float(np.percentile(positive, WHITE_PERCENTILE))
    if white <= 0:
        white = float(positive.max())
    t = np.clip(small.astype(np.float64) / white, 0.0, 1.0)
    return np.rint(255.0 * np.sqrt(t)).astype(np.uint8)


# -- the placeholder ------------------------------------------------------------------------------
# a 5 x 7 pixel font, just the letters of the two messages
_GLYPHS = {
    "N": ("10001", "11001", "10101", "10011", "10001", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "G": ("01110", "10001", "10000", "10111", "10001", "10001", "01111"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    " ": ("00000",) * 7,
}


def placeholder(shape: tuple[int, int], message: str) -> np.ndarray:
    """Grey diagonal stripes with ``message`` written across the middle in white."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.where(((xx + yy) // max(2, min(h, w) // 16)) % 2 == 0, 70, 100).astype(np.uint8)
    bitmap = np.array([[c == "1" for c in "0".join(
        _GLYPHS[ch][row] for ch in message)] for row in range(7)])
    scale = max(1, min((w * 3 // 4) // bitmap.shape[1], (h // 3) // 7))
    text = np.kron(bitmap, np.ones((scale, scale), dtype=bool))
    th, tw = text.shape
    if th <= h and tw <= w:
        y0, x0 = (h - th) // 2, (w - tw) // 2
        px[y0:y0 + th, x0:x0 + tw][text] = 255
    return px


# -- PNG --------------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode uint8 greyscale pixels (slow, fast) as a PNG file."""
    px = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = px.shape
    if width == 0 or height == 0:
        raise ValueError("a PNG needs at least one pixel")
    # colour type 0 (greyscale), 8 bits, no interlace; filter byte 0 before every row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = np.hstack([np.zeros((height, 1), np.uint8), px]).tobytes()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def write_png_preview(path: PathLike, float_image: np.ndarray) -> None:
    """Write the greyscale preview of ``float_image`` to ``path``."""
    data = png_bytes(preview_pixels(float_image))
    with open(path, "wb") as fh:
        fh.write(data)


__all__ = ["preview_pixels", "preview_factor", "reduce_max", "placeholder", "png_bytes",
           "write_png_preview", "PREVIEW_MAX"]
