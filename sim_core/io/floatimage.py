"""Raw float images (nanoBragg's ``-floatfile``).

The file is the bare pixel array: float32, little-endian, slow index major, no header; the shape must
be known from elsewhere. (The statistics nanoBragg prints about an image are in ``sim_core.image``.)
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]

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


__all__ = ["write_float_image", "read_float_image"]
