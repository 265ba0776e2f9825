"""Detector images read for viewing: SMV (nanoBragg's ``intimage.img`` and ``noiseimage.img``, an
ADSC frame) and CBF (``image.cbf``, a Pilatus frame), through fabio, with bounded memory
(torch-free, so the API can serve them).

An SMV file is a text header and raw pixels, so its pixels are a memory map of the file at
``HEADER_BYTES`` (a tile of a 6-megapixel image reads only its rows); a CBF file's pixels are
compressed and are decoded whole by fabio (4 bytes a pixel). :func:`open_image` gives both as a
(slow, fast) array and the header values the viewer uses (the overload value, the format).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]

#: SMV ``TYPE`` -> numpy dtype (before the byte order)
_SMV_TYPES = {"unsigned_short": "u2", "unsigned_int": "u4", "signed_short": "i2",
              "signed_int": "i4", "unsigned_char": "u1", "float": "f4", "double": "f8"}
#: a miniCBF header's overload line: ``# Count_cutoff 65535 counts``
_CUTOFF = re.compile(r"#\s*Count_cutoff\s+([0-9.eE+-]+)")
#: the most pixels an image may have to be viewed (a 16-megapixel Eiger is 18 M)
MAX_PIXELS = 64 << 20


@dataclass(frozen=True)
class DetectorImage:
    """A detector image: its (slow, fast) pixels (a read-only memory map for SMV), its format
    (``smv`` or ``cbf``) and the value from which a pixel is an overload (None: not stated)."""

    pixels: np.ndarray
    format: str
    saturation: Optional[float]

    def summary(self) -> dict:
        """What an upload's record keeps of it."""
        return {"format": self.format, "shape": [int(n) for n in self.pixels.shape],
                "dtype": self.pixels.dtype.name, "saturation": self.saturation}


def image_format(path: PathLike) -> Optional[str]:
    """``smv``, ``cbf``, or None, from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"{") and b"HEADER_BYTES" in head[:64]:
        return "smv"
    if head.startswith(b"###CBF") or b"_array_data.data" in head or b"data_" in head[:256]:
        return "cbf"
    return None


def _number(header, key: str) -> Optional[float]:
    try:
        return float(str(header[key]).strip().rstrip(";"))
    except (KeyError, ValueError):
        return None


def _smv(path: PathLike, name: str) -> DetectorImage:
    import fabio

    try:
        header = fabio.openheader(os.fspath(path)).header
    except Exception as exc:  # noqa: BLE001 - fabio raises many types for a bad header
        raise InputFileError(f"{name}: not a readable SMV header ({exc})", path=name) from None
    nhead, fast, slow = (_number(header, k) for k in ("HEADER_BYTES", "SIZE1", "SIZE2"))
    if not (nhead and fast and slow) or min(nhead, fast, slow) < 1:
        raise InputFileError(f"{name}: the SMV header gives no HEADER_BYTES, SIZE1 and SIZE2",
                             path=name)
    kind = str(header.get("TYPE", "unsigned_short")).strip()
    if kind not in _SMV_TYPES:
        raise InputFileError(f"{name}: TYPE={kind} is not an SMV pixel type "
                             f"({', '.join(_SMV_TYPES)})", path=name)
    order = "<" if "little" in str(header.get("BYTE_ORDER", "little_endian")) else ">"
    dtype = np.dtype(order + _SMV_TYPES[kind])
    shape = (int(slow), int(fast))
    need = int(nhead) + dtype.itemsize * shape[0] * shape[1]
    if shape[0] * shape[1] > MAX_PIXELS:
        raise InputFileError(f"{name}: {shape[1]} x {shape[0]} pixels; at most {MAX_PIXELS:,} "
                             "can be viewed", path=name)
    size = os.path.getsize(path)
    if size < need:
        raise InputFileError(f"{name}: truncated SMV image ({size} bytes, {need} expected for "
                             f"{shape[1]} x {shape[0]} {kind} pixels)", path=name)
    pixels = np.memmap(path, dtype=dtype, mode="r", offset=int(nhead), shape=shape)
    saturation = _number(header, "SATURATED_VALUE")
    if saturation is None and dtype.kind == "u":
        saturation = float(np.iinfo(dtype).max)  # nanoBragg clips its integer images there
    return DetectorImage(pixels, "smv", saturation)


def _cbf(path: PathLike, name: str) -> DetectorImage:
    import fabio

    try:
        head = fabio.openheader(os.fspath(path))
        shape = tuple(int(n) for n in head.shape)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"{name}: not a readable CBF file ({exc})", path=name) from None
    if len(shape) != 2 or shape[0] * shape[1] > MAX_PIXELS:
        raise InputFileError(f"{name}: a CBF image of shape {shape}; one 2-D array of at most "
                             f"{MAX_PIXELS:,} pixels can be viewed", path=name)
    try:
        pixels = fabio.open(os.fspath(path)).data
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"{name}: the CBF pixels cannot be decoded ({exc})",
                             path=name) from None
    m = _CUTOFF.search(str(head.header.get("_array_data.header_contents", "")))
    saturation = float(m.group(1)) if m else None
    pixels = np.asarray(pixels)
    pixels.flags.writeable = False
    return DetectorImage(pixels, "cbf", saturation)


def open_image(path: PathLike, name: Optional[str] = None) -> DetectorImage:
    """The image in the SMV or CBF file ``path`` (``name``: how errors call it).

    Raises:
        InputFileError: the file is neither, or its header or pixels cannot be read.
    """
    name = name or os.fspath(path)
    try:
        fmt = image_format(path)
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read the image ({exc.strerror or exc})",
                             path=name) from exc
    if fmt == "smv":
        return _smv(path, name)
    if fmt == "cbf":
        return _cbf(path, name)
    raise InputFileError(f"{name}: neither an SMV image (a '{{ HEADER_BYTES=' header) nor a CBF "
                         "file", path=name)


def summary(path: PathLike) -> dict:
    """The upload summary of an image file: format, shape, dtype, overload value."""
    return open_image(path).summary()


__all__ = ["DetectorImage", "open_image", "image_format", "summary", "MAX_PIXELS"]
