"""SMV (ADSC) images as nanoBragg writes and reads them.

nanoBragg writes its ``-intfile`` and ``-noisefile`` as a 512-byte text header followed by
``unsigned short`` pixels, fast index fastest. :func:`smv_header` reproduces that header byte for byte:
the same keys in the same order, C ``%g`` formatting, the missing ``;`` after ``DIALS_ORIGIN``, and the
closing ``}`` plus form feed padded with spaces to 512 bytes.

Units: :class:`SmvGeometry` holds SI values (metres, radians) as nanoBragg does internally; the header
gets millimetres, Angstrom and degrees, converted with the same arithmetic as the C program. The only
exceptions are ``dials_origin_mm`` (nanoBragg already keeps it in mm) and ``orgx``/``orgy`` (pixels).

:func:`int_image` and :func:`auto_int_scale` reproduce the conversion of the float image into the
integer image, :func:`read_smv` reads such files back (any ``HEADER_BYTES``, either byte order), and
:func:`header_value` looks a number up with the C ``ValueOf`` rules.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import numpy as np

from ..errors import InputFileError

#: bytes of the header nanoBragg writes
HEADER_BYTES = 512
from ..units import RTD

PathLike = Union[str, "os.PathLike[str]"]
#: (xmin, xmax, ymin, ymax): inclusive fast (x) and slow (y) pixel bounds
Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class SmvGeometry:
    """The experiment values nanoBragg prints into an SMV header.

    Lengths are metres and angles radians (as in nanoBragg), except where the name says otherwise.
    """

    #: pixels along the fast axis (``SIZE1``)
    fpixels: int
    #: pixels along the slow axis (``SIZE2``)
    spixels: int
    pixel_size_m: float
    distance_m: float
    wavelength_m: float
    #: beam centre in the convention's X/Y (``BEAM_CENTER_X/Y``)
    xbeam_m: float
    ybeam_m: float
    #: beam centre along the fast and slow axes (ADXV, MOSFLM and DENZO centres derive from these)
    fbeam_m: float
    sbeam_m: float
    #: detector extent along the slow axis (``spixels * pixel_size`` unless set otherwise)
    detsize_s_m: float
    #: the DIALS origin vector, millimetres
    dials_origin_mm: tuple[float, float, float]
    #: XDS ORGX/ORGY, pixels
    orgx: float
    orgy: float
    close_distance_m: float
    phi0_rad: float = 0.0
    osc_rad: float = 0.0
    twotheta_rad: float = 0.0
    #: ``little_endian`` or ``big_endian``: the byte order of the pixels that follow the header
    byte_order: str = "little_endian" if sys.byteorder == "little" else "big_endian"


def _g(x: float) -> str:
    return "%g" % x


def smv_header(geom: SmvGeometry) -> bytes:
    """The 512-byte header nanoBragg writes for ``geom``.

    When the text does not fit in 512 bytes (long numbers in a custom geometry) the C program writes
    it anyway, longer than the ``HEADER_BYTES=512`` it announces, which shifts the pixels; we announce
    and pad to the next multiple of 512 instead.
    """
    px = geom.pixel_size_m
    ox, oy, oz = geom.dials_origin_mm
    lines = [
        "{",
        "HEADER_BYTES={size};",
        "DIM=2;",
        f"BYTE_ORDER={geom.byte_order};",
        "TYPE=unsigned_short;",
        f"SIZE1={int(geom.fpixels)};",
        f"SIZE2={int(geom.spixels)};",
        f"PIXEL_SIZE={_g(px * 1000.0)};",
        f"DISTANCE={_g(geom.distance_m * 1000.0)};",
        f"WAVELENGTH={_g(geom.wavelength_m * 1e10)};",
        f"BEAM_CENTER_X={_g(geom.xbeam_m * 1000.0)};",
        f"BEAM_CENTER_Y={_g(geom.ybeam_m * 1000)};",
        f"ADXV_CENTER_X={_g(geom.fbeam_m * 1000.0)};",
        f"ADXV_CENTER_Y={_g((geom.detsize_s_m - geom.sbeam_m) * 1000)};",
        f"MOSFLM_CENTER_X={_g((geom.sbeam_m - 0.5 * px) * 1000.0)};",
        f"MOSFLM_CENTER_Y={_g((geom.fbeam_m - 0.5 * px) * 1000)};",
        f"DENZO_X_BEAM={_g((geom.sbeam_m - 0.0 * px) * 1000.0)};",
        f"DENZO_Y_BEAM={_g((geom.fbeam_m - 0.0 * px) * 1000)};",
        f"DIALS_ORIGIN={_g(ox)},{_g(oy)},{_g(oz)}",  # no ';' here, as in nanoBragg
        f"XDS_ORGX={_g(geom.orgx)};",
        f"XDS_ORGY={_g(geom.orgy)};",
        f"CLOSE_DISTANCE={_g(geom.close_distance_m * 1000.0)};",
        f"PHI={_g(geom.phi0_rad * RTD)};",
        f"OSC_START={_g(geom.phi0_rad * RTD)};",
        f"OSC_RANGE={_g(geom.osc_rad * RTD)};",
        f"TWOTHETA={_g(geom.twotheta_rad * RTD)};",
        "DETECTOR_SN=000;",
        "BEAMLINE=fake;",
    ]
    size = HEADER_BYTES
    while True:
        text = ("\n".join(lines).replace("{size}", str(size)) + "\n}\f").encode("ascii")
        if len(text) <= size:
            return text.ljust(size, b" ")
        # nanoBragg writes a header longer than the 512 bytes it announces (a corrupt file); we
        # announce and pad to the next multiple of 512 instead, which SMV readers honour
        size += HEADER_BYTES


def write_smv(path: PathLike, image: np.ndarray, geom: SmvGeometry) -> None:
    """Write a uint16 (slow, fast) image with nanoBragg's header."""
    img = np.asarray(image)
    if img.dtype != np.uint16:
        raise ValueError(f"SMV images are unsigned 16-bit, got {img.dtype}")
    if img.shape != (geom.spixels, geom.fpixels):
        raise ValueError(f"image shape {img.shape} does not match the header's "
                         f"{(geom.spixels, geom.fpixels)} (slow, fast)")
    order = "<" if geom.byte_order == "little_endian" else ">"
    with open(path, "wb") as fh:
        fh.write(smv_header(geom))
        fh.write(np.ascontiguousarray(img, dtype=order + "u2").tobytes())


class SmvHeader(dict):
    """The ``KEY=VALUE`` pairs of an SMV header (a later duplicate wins), with the raw text in ``raw``."""

    def __init__(self, pairs: Mapping[str, str], raw: str):
        super().__init__(pairs)
        self.raw = raw


_PAIR = re.compile(r"^\s*([^=;\s{}]+)\s*=(.*)$")


def _parse_header(raw: str) -> SmvHeader:
    body = raw.split("}", 1)[0]
    pairs: dict[str, str] = {}
    for line in body.splitlines():
        for item in line.split(";"):
            m = _PAIR.match(item)
            if m:
                pairs[m.group(1)] = m.group(2).strip()
    return SmvHeader(pairs, raw)


_NUMBER_PREFIX = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan))",
                            re.IGNORECASE)


def _atof(text: str) -> float:
    """C ``atof``: the longest number at the start of ``text`` (after blanks), 0.0 when none."""
    m = _NUMBER_PREFIX.match(text)
    return float(m.group(1)) if m else 0.0


def header_value(header: Union[Mapping[str, str], str], key: str) -> Optional[float]:
    """A number from an SMV header, found as nanoBragg's ``ValueOf`` finds it.

    The *last* occurrence of ``key`` anywhere in the header text wins, and ``key`` is matched as a
    substring: ``DISTANCE`` therefore picks up ``CLOSE_DISTANCE=`` when that comes later, and ``ORGX``
    finds ``XDS_ORGX=``. The value is C ``atof`` of the text after the next ``=`` (0.0 when it does
    not start with a number, or when no ``=`` follows). Returns None where C returns NaN: the key is
    absent.

    ``header`` is the raw header text, an :class:`SmvHeader` (its raw text is used), or a plain
    mapping (searched as if written ``KEY=VALUE;`` one per line, in its order). Use ``header[key]``
    for an exact-key lookup.
    """
    if isinstance(header, str):
        text = header
    elif isinstance(header, SmvHeader):
        text = header.raw
    else:
        text = "".join(f"{k}={v};\n" for k, v in header.items())
    if not key:
        return None
    # successive non-overlapping matches, as C's repeated strstr() walks them
    end = -1
    pos = text.find(key)
    while pos >= 0:
        end = pos + len(key)
        pos = text.find(key, end)
    if end < 0:
        return None
    eq = text.find("=", end)
    if eq < 0:
        return 0.0
    return _atof(text[eq + 1:])


def _pixel_count(text: str) -> int:
    """A SIZE1/SIZE2 value as a count; 0 (no size) for anything that is not a finite count."""
    v = _atof(text)
    return int(v) if math.isfinite(v) and 0 < v < 2**31 else 0


def read_smv(path: PathLike) -> tuple[SmvHeader, np.ndarray]:
    """Read an SMV file: its header pairs and the uint16 image, shape (SIZE2, SIZE1).

    ``HEADER_BYTES`` gives where the pixels start; ``BYTE_ORDER`` (the last one) their byte order.
    Unlike nanoBragg, which ignores the byte order when it reads pixels, big-endian files are read
    correctly. Only ``TYPE=unsigned_short`` (or no TYPE) is accepted.

    Raises:
        InputFileError: the file is missing, is not an SMV file, or holds fewer pixels than announced.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read SMV image ({exc.strerror or exc})",
                             path=name) from exc
    if not data.startswith(b"{\nHEADER_BYT"):
        raise InputFileError(f"{name}: not an SMV image (no '{{ HEADER_BYTES=' at the start)",
                             path=name)
    first = _parse_header(data[:HEADER_BYTES].decode("latin-1"))
    header_bytes = header_value(first, "HEADER_BYTES")
    if (header_bytes is None or not math.isfinite(header_bytes) or header_bytes < 1
            or header_bytes != int(header_bytes) or header_bytes > len(data)):
        raise InputFileError(f"{name}: bad HEADER_BYTES in SMV header (a whole number of bytes "
                             f"within the file's {len(data)} expected)", path=name)
    nhead = int(header_bytes)
    header = _parse_header(data[:nhead].decode("latin-1"))
    width = _pixel_count(header.get("SIZE1", "0"))
    height = _pixel_count(header.get("SIZE2", "0"))
    if width <= 0 and "DETECTOR_DIMENSIONS" in header:
        width = height = _pixel_count(header["DETECTOR_DIMENSIONS"])
    if width <= 0 or height <= 0:
        raise InputFileError(f"{name}: SMV header gives no image size (SIZE1/SIZE2)", path=name)
    dtype_name = header.get("TYPE", "unsigned_short")
    if dtype_name != "unsigned_short":
        raise InputFileError(f"{name}: TYPE={dtype_name} is not supported (only unsigned_short)",
                             path=name)
    order = header.get("BYTE_ORDER", "little_endian")
    if order not in ("little_endian", "big_endian"):
        raise InputFileError(f"{name}: unknown BYTE_ORDER={order}", path=name)
    need = nhead + 2 * width * height
    if len(data) < need:
        raise InputFileError(f"{name}: truncated SMV image ({len(data)} bytes, {need} expected for "
                             f"{width}x{height} pixels after a {nhead}-byte header)", path=name)
    dt = np.dtype("<u2" if order == "little_endian" else ">u2")
    image = np.frombuffer(data, dtype=dt, count=width * height, offset=nhead).reshape(height, width)
    return header, image.astype(np.uint16)


def auto_int_scale(max_i: float) -> float:
    """nanoBragg's default ``-scale``: 55000 / the image maximum, or 1 when that is not positive."""
    return 55000.0 / max_i if max_i > 0.0 else 1.0


def _roi_mask(shape: tuple[int, int], roi: Optional[Roi]) -> Optional[np.ndarray]:
    if roi is None:
        return None
    xmin, xmax, ymin, ymax = roi
    s = np.arange(shape[0])[:, None]
    f = np.arange(shape[1])[None, :]
    return (f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)


def int_image(float_image: np.ndarray, scale: float, adc_offset: float = 40.0,
              roi: Optional[Roi] = None) -> np.ndarray:
    """The ``-intfile`` pixels: ``floorf(clamp(I*scale + adc, 0, 65535) + 0.5)`` as uint16.

    The product and sum are double precision; the C program then rounds ``test + 0.5`` to float
    before ``floorf``, which this reproduces. Pixels outside the inclusive ROI (fast x, slow y) are 0;
    NaN pixels become 0 as on x86.
    """
    img = np.asarray(float_image, dtype=np.float32)
    test = img.astype(np.float64) * float(scale) + float(adc_offset)
    test = np.where(test > 65535.0, 65535.0, test)
    test = np.where(test < 0.0, 0.0, test)
    rounded = np.floor((test + 0.5).astype(np.float32))
    rounded = np.where(np.isnan(rounded), 0.0, rounded)
    out = rounded.astype(np.uint16)
    mask = _roi_mask(img.shape, roi)
    if mask is not None:
        out[~mask] = 0
    return out


__all__ = ["HEADER_BYTES", "RTD", "SmvGeometry", "SmvHeader", "smv_header", "write_smv",
           "read_smv", "header_value", "auto_int_scale", "int_image"]
