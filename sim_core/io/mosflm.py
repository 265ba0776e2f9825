"""MOSFLM orientation matrices (``-mat``), read as nanoBragg reads them.

nanoBragg takes the first nine numbers of the file (normally its first three lines; line breaks do
not matter) as a 3x3 matrix whose rows are the x, y, z components and whose columns are a*, b*, c*
multiplied by the wavelength (the MOSFLM "A matrix", dimensionless). The rest of the file (missetting
angles, U matrix, cell) is ignored. Unlike nanoBragg, which keeps zeros where ``fscanf`` fails, a
missing or non-numeric value is an error.
"""

from __future__ import annotations

import math
import os
import re
from typing import Union

import numpy as np

from ..errors import InputFileError
from .textfile import read_text

PathLike = Union[str, "os.PathLike[str]"]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")


def read_mosflm_matrix(path: PathLike) -> np.ndarray:
    """The 3x3 float64 A matrix: ``A[i, j]`` is component i (x, y, z) of a*, b*, c* (j) times
    the wavelength.

    Raises:
        InputFileError: missing file, a non-numeric value among the first nine (line named), or
            fewer than nine numbers.
    """
    name = os.fspath(path)
    text = read_text(path, "matrix file")
    values: list[float] = []
    for number, line in enumerate(text.split("\n"), start=1):
        for token in line.split():
            if not _NUMBER.match(token):
                raise InputFileError(f"{name} line {number}: expected a number of the 3x3 A "
                                     f"matrix, got '{token[:40]}'", path=name, line=number)
            values.append(float(token))
            if len(values) == 9:
                return _checked(name, np.array(values, dtype=np.float64).reshape(3, 3))
    raise InputFileError(f"{name}: expected 9 numbers (a 3x3 A matrix on three lines), found "
                         f"{len(values)}", path=name)


def _checked(name: str, m: np.ndarray) -> np.ndarray:
    """A matrix nanoBragg could use: finite, and with three independent reciprocal vectors (an
    all-zero or flat matrix gives a cell of infinite volume, and an image of NaN)."""
    if not np.isfinite(m).all():
        raise InputFileError(f"{name}: the A matrix holds a value that is not finite", path=name)
    det = float(np.linalg.det(m))
    scale = float(np.prod(np.linalg.norm(m, axis=0)))
    if scale == 0.0 or not math.isfinite(det) or abs(det) <= 1e-12 * scale:
        raise InputFileError(f"{name}: the A matrix is singular (its columns a*, b*, c* do not "
                             "span a cell)", path=name)
    return m


__all__ = ["read_mosflm_matrix"]
