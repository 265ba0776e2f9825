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

import io
import os
import re
import warnings
from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np

from ..errors import InputFileError

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


def grid_limit_message(name: str, lo, hi, points: int, limit: int) -> str:
    return (f"{name}: the index ranges h {lo[0]}..{hi[0]}, k {lo[1]}..{hi[1]}, l {lo[2]}..{hi[2]} "
            f"make a grid of {points:,} points, more than the limit of {limit:,}")


def _grid_shape(name: str, lo, hi, limit: int = MAX_GRID_POINTS) -> tuple[int, int, int]:
    shape = tuple(int(b) - int(a) + 1 for a, b in zip(lo, hi))
    points = shape[0] * shape[1] * shape[2]
    if points > limit:
        raise InputFileError(grid_limit_message(name, lo, hi, points, limit), path=name)
    return shape  # type: ignore[return-value]


#: bytes of text parsed at a time: memory stays bounded whatever the file's size, and numpy's parser
#: (which holds the GIL) never keeps a server's other threads waiting long
CHUNK_BYTES = 1 << 20


def _blocks(path: PathLike) -> Iterator[tuple[int, str]]:
    """(number of the first line, text of whole lines) blocks of about CHUNK_BYTES."""
    name = os.fspath(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise InputFileError(f"{name}: HKL file not found", path=name) from exc
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read HKL file ({exc.strerror or exc})",
                             path=name) from exc
    line = 1
    rest = b""
    with fh:
        while True:
            data = fh.read(CHUNK_BYTES)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            block, rest = data[:cut + 1], data[cut + 1:]
            yield line, block.decode("latin-1")
            line += block.count(b"\n")
    if rest:
        yield line, rest.decode("latin-1")


def _slow_block(name: str, first: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Line by line, naming the first malformed line."""
    fields: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=first):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _RECORD.match(line)
        if match is None:
            raise InputFileError(f"{name} line {number}: expected 'h k l F', got "
                                 f"'{_snippet(line)}'", path=name, line=number)
        fields.extend(match.groups())
        lines.append(number)
    values = np.array(fields, dtype=np.float64).reshape(-1, 4)
    return values, np.array(lines, dtype=np.int64)


def _check_values(name: str, values: np.ndarray, lines: np.ndarray, fields=None) -> None:
    hkl = values[:, :3]
    bad = (hkl != np.round(hkl)) | (np.abs(hkl) > 2**31 - 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputFileError(f"{name} line {lines[row]}: {'hkl'[col]} index {hkl[row, col]:g} "
                             "is not an integer", path=name, line=int(lines[row]))
    inf = ~np.isfinite(values[:, 3])
    if inf.any():
        row = int(np.argmax(inf))
        raise InputFileError(f"{name} line {lines[row]}: F {values[row, 3]:g} is not a finite "
                             "number", path=name, line=int(lines[row]))


def iter_hkl(path: PathLike) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The records of an HKL file, a block at a time: (indices int32 (n, 3), F float64 (n,)).

    A block of plain ``h k l F`` lines is read by numpy's text reader; any block it cannot read
    (or whose values fail a check) is read again line by line, so that the error names the line.
    """
    name = os.fspath(path)
    for first, text in _blocks(path):
        values = None
        if "_" not in text:  # float() would take 1_0; the record grammar does not
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = np.loadtxt(io.StringIO(text), dtype=np.float64, comments="#",
                                        usecols=(0, 1, 2, 3), ndmin=2)
            except ValueError:
                values = None
        if values is not None:
            hkl = values[:, :3]
            if not (np.isfinite(values).all() and (hkl == np.round(hkl)).all()
                    and (np.abs(hkl) <= 2**31 - 1).all()):
                values = None
        if values is None:
            values, lines = _slow_block(name, first, text)
            _check_values(name, values, lines)
        if len(values):
            yield values[:, :3].astype(np.int32), values[:, 3].copy()


def grid_points(lo, hi) -> int:
    """Points of the integer box lo..hi (inclusive), computed without building it."""
    n = 1
    for a, b in zip(lo, hi):
        n *= int(b) - int(a) + 1
    return n


def read_hkl(path: PathLike, default_F: float = 0.0, *,
             max_points: int = MAX_GRID_POINTS) -> HklGrid:
    """Read an ``h k l F`` text file into a grid prefilled with ``default_F``.

    The file is read a block at a time (memory grows with the reflections, 20 bytes each, not with
    the text); the grid is only built once its size is known to be within ``max_points``.

    Raises:
        InputFileError: missing or unreadable file, a malformed line (file and line named), a
            non-integer index, a non-finite F, a grid beyond ``max_points``, or a file without any
            reflection.
    """
    name = os.fspath(path)
    parts = list(iter_hkl(path))
    if not parts:
        raise InputFileError(f"{name}: no 'h k l F' records found", path=name)
    lo = np.min([p[0].min(axis=0) for p in parts], axis=0).astype(np.int64)
    hi = np.max([p[0].max(axis=0) for p in parts], axis=0).astype(np.int64)
    count = sum(len(p[1]) for p in parts)
    shape = _grid_shape(name, lo, hi, max_points)
    grid = np.full(shape, float(default_F), dtype=np.float64)
    # block by block, in file order, so that a reflection listed twice keeps its last value
    # (within a block, the last of equal indices is kept explicitly)
    parts.reverse()
    while parts:
        idx, F = parts.pop()
        flat = np.ravel_multi_index(tuple((idx.astype(np.int64) - lo).T), shape)
        _, first_from_end = np.unique(flat[::-1], return_index=True)
        keep = len(flat) - 1 - first_from_end
        grid.flat[flat[keep]] = F[keep]
    return HklGrid(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]),
                   grid, count=count)


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


def read_fdump_header(path: PathLike) -> tuple[list[int], int]:
    """The bounds ``[h_min, h_max, k_min, k_max, l_min, l_max]`` of an ``Fdump.bin`` and the offset
    of its doubles, after checking the file's size against them (without reading the doubles).

    The header must end in ``\\n\\f`` exactly as nanoBragg writes it. (nanoBragg's own ``fscanf``
    would also swallow any bytes of the first double that look like white space.)
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError as exc:
        raise InputFileError(f"{name}: Fdump file not found", path=name) from exc
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read Fdump file ({exc.strerror or exc})",
                             path=name) from exc
    end = head.find(b"\n\f")
    try:
        bounds = [int(tok) for tok in head[:end].decode("ascii").split()] if end >= 0 else []
    except (UnicodeDecodeError, ValueError):
        bounds = []
    if len(bounds) != 6:
        raise InputFileError(f"{name}: not an Fdump file (no 'h_min h_max k_min k_max l_min l_max' "
                             "header line ending in newline + form feed)", path=name, line=1)
    lo, hi = bounds[0::2], bounds[1::2]
    if any(b < a for a, b in zip(lo, hi)):
        raise InputFileError(f"{name}: empty index range in Fdump header {bounds}", path=name,
                             line=1)
    need = grid_points([a - 1 for a in lo], hi) * 8  # one extra slab on each axis
    if size - (end + 2) != need:
        raise InputFileError(f"{name}: {size - (end + 2)} bytes of data, {need} expected for "
                             f"bounds {bounds}", path=name)
    return bounds, end + 2


def read_fdump(path: PathLike, *, max_points: int = MAX_GRID_POINTS) -> HklGrid:
    """Read nanoBragg's ``Fdump.bin``.

    Raises:
        InputFileError: missing file, bad header, a grid beyond ``max_points``, or a size that does
            not match the bounds.
    """
    name = os.fspath(path)
    bounds, offset = read_fdump_header(path)
    lo, hi = bounds[0::2], bounds[1::2]
    hr, kr, lr = _grid_shape(name, lo, hi, max_points)
    full = np.fromfile(path, dtype="<f8", offset=offset).reshape(hr + 1, kr + 1, lr + 1)
    return HklGrid(*bounds, F=np.ascontiguousarray(full[:hr, :kr, :lr], dtype=np.float64),
                   count=hr * kr * lr)


__all__ = ["HklGrid", "MAX_GRID_POINTS", "read_hkl", "iter_hkl", "grid_points", "write_hkl",
           "write_fdump", "read_fdump", "read_fdump_header"]
