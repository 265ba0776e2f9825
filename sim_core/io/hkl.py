"""Structure factor files: the ``-hkl`` text list and nanoBragg's binary ``Fdump.bin`` cache.

An HKL file holds one reflection per line, ``h k l F`` separated by blanks; further columns (sigmas,
phases, ...) are ignored, and blank lines and lines starting with ``#`` are skipped. Indices must be
integers (``1.0`` is taken as 1; ``1.5`` is an error). Where nanoBragg silently stops reading at the
first line ``fscanf`` cannot parse, or re-reads extra columns as the next reflection, every malformed
line here raises :class:`~sim_core.errors.InputFileError` naming the file and the 1-based line.

The grid spans the smallest box holding every index; points absent from the file keep ``default_F``.
A reflection listed twice keeps its last value, as in C.

``Fdump.bin`` is what nanoBragg writes after reading an HKL file: the text line
``"h_min h_max k_min k_max l_min l_max\\n\\f"`` then ``(h_range+1) * (k_range+1)`` slabs of
``l_range+1`` doubles (little-endian, l fastest). The extra last slab on each axis is all zero.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..errors import InputFileError
from .textfile import read_text

PathLike = Union[str, "os.PathLike[str]"]

#: refuse grids larger than this many points (8 bytes each): a typo such as ``1000000 0 0 1``
#: would otherwise ask for terabytes
MAX_GRID_POINTS = 200_000_000

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RECORD = re.compile(rf"\s*({_NUM})\s+({_NUM})\s+({_NUM})\s+({_NUM})(?:\s.*)?\Z", re.DOTALL)


@dataclass(eq=False)
class HklGrid:
    """Structure factors on the integer box ``[h_min, h_max] x [k_min, k_max] x [l_min, l_max]``."""

    h_min: int
    h_max: int
    k_min: int
    k_max: int
    l_min: int
    l_max: int
    #: float64, shape (h_range, k_range, l_range); ``F[h - h_min, k - k_min, l - l_min]``
    F: np.ndarray
    #: reflections read (records in an HKL file; grid points for an Fdump)
    count: int

    @property
    def h_range(self) -> int:
        return self.h_max - self.h_min + 1

    @property
    def k_range(self) -> int:
        return self.k_max - self.k_min + 1

    @property
    def l_range(self) -> int:
        return self.l_max - self.l_min + 1

    @property
    def bounds(self) -> tuple[int, int, int, int, int, int]:
        return (self.h_min, self.h_max, self.k_min, self.k_max, self.l_min, self.l_max)


def _snippet(line: str, limit: int = 60) -> str:
    text = line.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _grid_shape(name: str, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in (hi - lo + 1))
    points = shape[0] * shape[1] * shape[2]
    if points > MAX_GRID_POINTS:
        raise InputFileError(f"{name}: the index ranges h {lo[0]}..{hi[0]}, k {lo[1]}..{hi[1]}, "
                             f"l {lo[2]}..{hi[2]} make a grid of {points} points, more than "
                             f"{MAX_GRID_POINTS}", path=name)
    return shape  # type: ignore[return-value]


def read_hkl(path: PathLike, default_F: float = 0.0) -> HklGrid:
    """Read an ``h k l F`` text file into a grid prefilled with ``default_F``.

    Raises:
        InputFileError: missing or unreadable file, a malformed line (file and line named), a
            non-integer index, or a file without any reflection.
    """
    name = os.fspath(path)
    text = read_text(path, "HKL file")
    fields: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _RECORD.match(line)
        if match is None:
            raise InputFileError(f"{name} line {number}: expected 'h k l F', got "
                                 f"'{_snippet(line)}'", path=name, line=number)
        fields.extend(match.groups())
        lines.append(number)
    if not lines:
        raise InputFileError(f"{name}: no 'h k l F' records found", path=name)

    values = np.array(fields, dtype=np.float64).reshape(-1, 4)
    hkl = values[:, :3]
    bad = (hkl != np.round(hkl)) | (np.abs(hkl) > 2**31 - 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        number = lines[row]
        raise InputFileError(f"{name} line {number}: {'hkl'[col]} index "
                             f"{fields[4 * row + col]} is not an integer", path=name, line=number)
    idx = hkl.astype(np.int64)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    shape = _grid_shape(name, lo, hi)
    grid = np.full(shape, float(default_F), dtype=np.float64)
    flat = np.ravel_multi_index(tuple((idx - lo).T), shape)
    # keep the last value of a repeated reflection
    _, first_from_end = np.unique(flat[::-1], return_index=True)
    keep = len(flat) - 1 - first_from_end
    grid.flat[flat[keep]] = values[keep, 3]
    return HklGrid(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]),
                   grid, count=len(lines))


def write_hkl(path: PathLike, grid: HklGrid) -> None:
    """Write every node of ``grid`` as an ``h k l F`` line (F to full double precision).

    Nodes holding ``default_F`` are written too, so that nanoBragg (or :func:`read_hkl`) rebuilds
    the same box and the same values.
    """
    idx = np.indices(grid.F.shape).reshape(3, -1).T + np.array([grid.h_min, grid.k_min,
                                                                grid.l_min])
    rows = zip(idx.tolist(), grid.F.reshape(-1).tolist())
    with open(path, "w") as fh:
        fh.writelines(f"{h} {k} {l} {f!r}\n" for (h, k, l), f in rows)


def write_fdump(path: PathLike, grid: HklGrid) -> None:
    """Write ``grid`` in nanoBragg's ``Fdump.bin`` layout."""
    hr, kr, lr = grid.h_range, grid.k_range, grid.l_range
    if grid.F.shape != (hr, kr, lr):
        raise ValueError(f"F has shape {grid.F.shape}, the bounds say {(hr, kr, lr)}")
    full = np.zeros((hr + 1, kr + 1, lr + 1), dtype="<f8")
    full[:hr, :kr, :lr] = grid.F
    header = "%d %d %d %d %d %d\n\f" % grid.bounds
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(full.tobytes())


def read_fdump(path: PathLike) -> HklGrid:
    """Read nanoBragg's ``Fdump.bin``.

    The header must end in ``\\n\\f`` exactly as nanoBragg writes it. (nanoBragg's own ``fscanf``
    would also swallow any bytes of the first double that look like white space.)

    Raises:
        InputFileError: missing file, bad header, or a size that does not match the bounds.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise InputFileError(f"{name}: Fdump file not found", path=name) from exc
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read Fdump file ({exc.strerror or exc})",
                             path=name) from exc
    end = data.find(b"\n\f", 0, 256)
    try:
        bounds = [int(tok) for tok in data[:end].decode("ascii").split()] if end >= 0 else []
    except (UnicodeDecodeError, ValueError):
        bounds = []
    if len(bounds) != 6:
        raise InputFileError(f"{name}: not an Fdump file (no 'h_min h_max k_min k_max l_min l_max' "
                             "header line ending in newline + form feed)", path=name, line=1)
    lo = np.array(bounds[0::2])
    hi = np.array(bounds[1::2])
    if np.any(hi < lo):
        raise InputFileError(f"{name}: empty index range in Fdump header {bounds}", path=name,
                             line=1)
    hr, kr, lr = _grid_shape(name, lo, hi)
    payload = data[end + 2:]
    need = (hr + 1) * (kr + 1) * (lr + 1) * 8
    if len(payload) != need:
        raise InputFileError(f"{name}: {len(payload)} bytes of data, {need} expected for bounds "
                             f"{bounds}", path=name)
    full = np.frombuffer(payload, dtype="<f8").reshape(hr + 1, kr + 1, lr + 1)
    return HklGrid(*bounds, F=full[:hr, :kr, :lr].astype(np.float64), count=hr * kr * lr)


__all__ = ["HklGrid", "MAX_GRID_POINTS", "read_hkl", "write_hkl", "write_fdump", "read_fdump"]
