"""Small summaries of input files, made once when a file is uploaded (torch-free).

A summary holds what checking and pricing a job needs about a file, so that a submission never
reads the file again: ``sim_core.inputs.summarize(path, kind)`` reads the file with bounded memory (HKL files a
block at a time) and raises :class:`~sim_core.errors.InputFileError` naming the line of a malformed
file. Each function here is the ``summarize`` of one row of the input-file table
(:mod:`sim_core.inputs`), which ``summarize(path, kind)`` looks up.
"""

from __future__ import annotations

import math
import os
from typing import Union

import numpy as np

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]


def is_fdump(path: PathLike) -> bool:
    """True for a file that starts like nanoBragg's Fdump.bin (six integers, newline, form feed)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    end = head.find(b"\n\f")
    parts = head[:end].split() if end >= 0 else []
    return len(parts) == 6 and all(p.lstrip(b"-").isdigit() for p in parts)


def hkl(path: PathLike) -> dict:
    from .hkl import grid_points, iter_hkl, read_fdump_header
    name = os.fspath(path)
    if is_fdump(path):
        bounds, offset = read_fdump_header(path)
        lo, hi = bounds[0::2], bounds[1::2]
        f_min, f_max, finite = math.inf, -math.inf, True
        with open(path, "rb") as fh:
            fh.seek(offset)
            while True:
                block = np.frombuffer(fh.read(8 << 20), dtype="<f8")
                if not block.size:
                    break
                finite = finite and bool(np.isfinite(block).all())
                f_min, f_max = min(f_min, float(block.min())), max(f_max, float(block.max()))
        if not finite:
            raise InputFileError(f"{name}: the Fdump holds values that are not finite (NaN or "
                                 "infinity)", path=name)
        count = grid_points(lo, hi)
        fmt = "fdump"
    else:
        lo = np.full(3, np.iinfo(np.int64).max)
        hi = np.full(3, np.iinfo(np.int64).min)
        count, f_min, f_max = 0, math.inf, -math.inf
        for idx, F in iter_hkl(path):
            lo = np.minimum(lo, idx.min(axis=0))
            hi = np.maximum(hi, idx.max(axis=0))
            count += len(F)
            f_min, f_max = min(f_min, float(F.min())), max(f_max, float(F.max()))
        if count == 0:
            raise InputFileError(f"{name}: no 'h k l F' records found", path=name)
        lo, hi = [int(x) for x in lo], [int(x) for x in hi]
        fmt = "hkl"
    return {"format": fmt, "count": count, "h": [lo[0], hi[0]], "k": [lo[1], hi[1]],
            "l": [lo[2], hi[2]], "grid_points": grid_points(lo, hi), "F_min": f_min,
            "F_max": f_max, "finite": True}


def matrix(path: PathLike) -> dict:
    from .mosflm import read_mosflm_matrix
    m = read_mosflm_matrix(path)
    # the real-space cell vectors are the rows of inv(A / lambda): their lengths per Angstrom of
    # wavelength give the crystal's size without the matrix
    real = np.linalg.inv(m)
    return {"matrix": m.tolist(), "cell_lengths_per_A": np.linalg.norm(real, axis=1).tolist()}


def sources(path: PathLike) -> dict:
    from .sources import read_source_file
    rows = read_source_file(path)
    finite = all(v is None or math.isfinite(v) for row in rows for v in row)
    if not finite:
        raise InputFileError(f"{os.fspath(path)}: a source has an infinite value", path=str(path))
    return {"count": len(rows)}


def mask(path: PathLike) -> dict:
    from .smv import read_smv
    _, img = read_smv(path)
    return {"shape": [int(img.shape[0]), int(img.shape[1])],
            "rendered": int(np.count_nonzero(img))}


def check_cell(name: str, cell) -> None:
    """A file's unit cell must be one a simulation can take (the config's rules for a cell)."""
    from pydantic import ValidationError

    from ..config import UnitCell
    try:
        UnitCell(**dict(zip(("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg"), cell)))
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'cell'}: {e['msg']}"
                        for e in exc.errors())
        shown = " ".join(f"{x:g}" for x in cell)
        raise InputFileError(f"{name}: the unit cell {shown} is not a physical one ({why})",
                             path=name) from None


def model(path: PathLike) -> dict:
    # a line at a time: a model is never held whole for its summary
    from .model_scan import scan_model
    summary = scan_model(path)
    check_cell(os.fspath(path), summary["cell"])
    return summary


def mtz(path: PathLike) -> dict:
    # an intensity column is taken too (a submission must name it: sim_core.cost)
    from .structure import read_mtz
    summary = read_mtz(path, intensities_too=True).summary()
    check_cell(os.fspath(path), summary["cell"])
    return summary


#: most bytes a file of a kind may have, where its reader would hold it whole (a matrix takes nine
#: numbers; a source list is a few thousand lines)
MAX_BYTES = {"matrix": 1 << 20, "sources": 16 << 20}


__all__ = ["hkl", "matrix", "sources", "mask", "model", "mtz", "check_cell", "MAX_BYTES",
           "is_fdump"]
