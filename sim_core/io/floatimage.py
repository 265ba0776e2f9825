"""Raw float images (nanoBragg's ``-floatfile``) and the statistics nanoBragg prints about them.

The file is the bare pixel array: float32, little-endian, slow index major, no header; the shape must
be known from elsewhere. :func:`image_stats` computes the numbers nanoBragg derives from the image
(``max_I``, ``mean``, ``rms``, ``rmsd``) that feed the default integer and PGM scales.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]
#: (xmin, xmax, ymin, ymax): inclusive fast (x) and slow (y) pixel bounds
Roi = tuple[int, int, int, int]

_DTYPE = np.dtype("<f4")


def write_float_image(path: PathLike, image: np.ndarray) -> None:
    """Write ``image`` (any real dtype, converted to float32) as raw little-endian float32."""
    with open(path, "wb") as fh:
        fh.write(np.ascontiguousarray(image, dtype=_DTYPE).tobytes())


def read_float_image(path: PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a raw little-endian float32 image of ``shape`` (slow, fast) as a native float32 array.

    Raises:
        InputFileError: the file is missing or its size is not ``4 * slow * fast`` bytes.
    """
    name = os.fspath(path)
    nslow, nfast = (int(n) for n in shape)
    try:
        data = np.fromfile(path, dtype=_DTYPE)
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read float image ({exc.strerror or exc})",
                             path=name) from exc
    if data.size != nslow * nfast:
        raise InputFileError(f"{name}: holds {data.size} float32 values, {nslow}x{nfast} = "
                             f"{nslow * nfast} expected", path=name)
    return data.reshape(nslow, nfast).astype(np.float32)


@dataclass(frozen=True)
class ImageStats:
    """What nanoBragg prints as ``max_I = ...`` and ``mean= ... rms= ... rmsd= ...``."""

    #: largest pixel in the ROI, but never below 0 (nanoBragg starts the search at 0)
    max_i: float
    mean: float
    #: sqrt(sum(I^2) / (n - 1))
    rms: float
    #: sqrt(sum((I - mean)^2) / (n - 1))
    rmsd: float


def image_stats(float_image: np.ndarray, roi: Optional[Roi] = None) -> ImageStats:
    """nanoBragg's image statistics over the inclusive ROI (the whole image when None).

    Sums are double precision; the C program's summation order (OpenMP reductions) is not
    reproduced, so the last bits may differ from it.
    """
    img = np.asarray(float_image, dtype=np.float32)
    if roi is not None:
        xmin, xmax, ymin, ymax = roi
        img = img[max(ymin, 0):ymax + 1, max(xmin, 0):xmax + 1]
    vals = img.astype(np.float64).ravel()
    n = vals.size
    max_i = max(0.0, float(vals.max())) if n else 0.0
    mean = float(vals.sum()) / (n if n > 0 else 1)
    denom = (n if n > 1 else 2) - 1
    rms = math.sqrt(float(np.dot(vals, vals)) / denom)
    dev = vals - mean
    rmsd = math.sqrt(float(np.dot(dev, dev)) / denom)
    return ImageStats(max_i=max_i, mean=mean, rms=rms, rmsd=rmsd)


__all__ = ["write_float_image", "read_float_image", "ImageStats", "image_stats"]
