"""Detector images read for viewing: SMV (nanoBragg's ``intimage.img`` and ``noiseimage.img``, an
ADSC frame) and CBF (``image.cbf``, a Pilatus frame), through fabio, and a frame of a NeXus/HDF5
file (``image.nxs``, an Eiger-style NXmx file), through h5py and hdf5plugin, with bounded memory
(torch-free, so the API can serve them).

An SMV file is a text header and raw pixels, so its pixels are a memory map of the file at
``HEADER_BYTES`` (a tile of a 6-megapixel image reads only its rows); a CBF file's pixels are
compressed and are decoded whole by fabio (4 bytes a pixel), and so is one frame of an HDF5 file
(its chunks are compressed; the other frames are not read). :func:`open_image` gives each as a
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
#: the first bytes of an HDF5 file (without a user block)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: where an NXmx file keeps its frames, and its saturation value
NX_DATA = "/entry/data/data"
NX_SATURATION = "/entry/instrument/detector/saturation_value"


@dataclass(frozen=True)
class DetectorImage:
    """A detector image: its (slow, fast) pixels (a read-only memory map for SMV), its format
    (``smv``, ``cbf`` or ``hdf5``) and the value from which a pixel is an overload (None: not
    stated)."""

    pixels: np.ndarray
    format: str
    saturation: Optional[float]

    def summary(self) -> dict:
        """What an upload's record keeps of it."""
        return {"format": self.format, "shape": [int(n) for n in self.pixels.shape],
                "dtype": self.pixels.dtype.name, "saturation": self.saturation}


def image_format(path: PathLike) -> Optional[str]:
    """``smv``, ``cbf``, ``hdf5`` or None, from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
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


def _frames_dataset(f):
    """The dataset of an HDF5 file's frames: NXmx's ``/entry/data/data``, else the signal its
    ``default`` attributes lead to, else the first 2- or 3-D numeric dataset; None: there is none."""
    import h5py

    if isinstance(f.get(NX_DATA), h5py.Dataset):
        return f[NX_DATA]
    try:  # NeXus' default plot: file -> entry -> NXdata -> its signal
        entry = f[_text(f.attrs["default"])]
        group = entry[_text(entry.attrs["default"])]
        ds = group[_text(group.attrs["signal"])]
        if isinstance(ds, h5py.Dataset):
            return ds
    except (KeyError, TypeError, ValueError, OSError):
        pass
    found = []

    def visit(_name, obj):
        if (isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3)
                and obj.dtype.kind in "uif" and not found):
            found.append(obj)
    f.visititems(visit)
    return found[0] if found else None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _hdf5(path: PathLike, name: str, frame: int) -> DetectorImage:
    import h5py
    import hdf5plugin  # noqa: F401 - registers the bitshuffle/LZ4 filter NXmx files use

    try:
        f = h5py.File(os.fspath(path), "r")
    except OSError as exc:
        raise InputFileError(f"{name}: not a readable HDF5 file ({exc})", path=name) from None
    with f:
        ds = _frames_dataset(f)
        if ds is None:
            raise InputFileError(f"{name}: no image in the HDF5 file (no {NX_DATA} and no 2- or "
                                 "3-D numeric dataset)", path=name)
        where = f"{name}:{ds.name}"
        if ds.is_virtual and any(s.file_name != "." for s in ds.virtual_sources()):
            others = sorted({s.file_name for s in ds.virtual_sources() if s.file_name != "."})
            raise InputFileError(f"{where}: the frames lie in other files ({', '.join(others)}), "
                                 "which a master file only links to: view a data file, or a "
                                 "NeXus file that holds its frames", path=name)
        if ds.ndim not in (2, 3) or ds.dtype.kind not in "uif":
            raise InputFileError(f"{where}: a {ds.ndim}-D {ds.dtype} dataset; frames are 2- or "
                                 "3-D numbers", path=name)
        frames = ds.shape[0] if ds.ndim == 3 else 1
        shape = tuple(ds.shape[-2:])
        if shape[0] * shape[1] > MAX_PIXELS:
            raise InputFileError(f"{where}: frames of {shape[1]} x {shape[0]} pixels; at most "
                                 f"{MAX_PIXELS:,} can be viewed", path=name)
        if not 0 <= frame < frames:
            raise InputFileError(f"{where}: no frame {frame}; the file has {frames}", path=name)
        try:
            pixels = np.asarray(ds[frame] if ds.ndim == 3 else ds[()])
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{where}: frame {frame} cannot be decoded ({exc})",
                                 path=name) from None
        saturation = None
        if isinstance(f.get(NX_SATURATION), h5py.Dataset):
            try:
                saturation = float(np.asarray(f[NX_SATURATION][()]).reshape(-1)[0])
            except (TypeError, ValueError, IndexError):
                saturation = None
    if saturation is None and pixels.dtype.kind == "u":
        saturation = float(np.iinfo(pixels.dtype).max)
    pixels.flags.writeable = False
    return DetectorImage(pixels, "hdf5", saturation)


def open_image(path: PathLike, name: Optional[str] = None, *, frame: int = 0) -> DetectorImage:
    """The image in the SMV, CBF or HDF5 file ``path`` (``name``: how errors call it); of an HDF5
    file with several frames, frame ``frame`` (0-based; the other formats hold one).

    Raises:
        InputFileError: the file is none of these, or its header or pixels cannot be read.
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
    if fmt == "hdf5":
        return _hdf5(path, name, frame)
    raise InputFileError(f"{name}: neither an SMV image (a '{{ HEADER_BYTES=' header), a CBF "
                         "file nor an HDF5 (NeXus) file", path=name)


def summary(path: PathLike) -> dict:
    """The upload summary of an image file: format, shape, dtype, overload value."""
    return open_image(path).summary()


__all__ = ["DetectorImage", "open_image", "image_format", "summary", "MAX_PIXELS",
           "HDF5_SIGNATURE"]
