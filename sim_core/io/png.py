"""A quick-look PNG of a float image: 8-bit greyscale on a logarithmic scale.

Written with ``zlib`` and ``struct`` only. Pixel value ``255 * log1p(I) / log1p(max I)``, rounded;
negative, NaN and infinite pixels are black. Meant for people, not for analysis.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def preview_pixels(float_image: np.ndarray) -> np.ndarray:
    """The uint8 greyscale pixels of the preview, shape (slow, fast)."""
    img = np.asarray(float_image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D (slow, fast) image, got shape {img.shape}")
    img = np.where(np.isfinite(img) & (img > 0), img, 0.0)
    top = float(img.max()) if img.size else 0.0
    if top <= 0.0:
        return np.zeros(img.shape, dtype=np.uint8)
    scaled = np.log1p(img) * (255.0 / np.log1p(top))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


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
    """Write the log-scaled greyscale preview of ``float_image`` to ``path``."""
    data = png_bytes(preview_pixels(float_image))
    with open(path, "wb") as fh:
        fh.write(data)


__all__ = ["preview_pixels", "png_bytes", "write_png_preview"]
