"""Structure factors from a model or an MTZ file, for one experiment.

``open_structure_input`` reads the file named by ``structure_factors.model_file`` or ``mtz_file``
(parsed files are kept by path, mtime and size). The experiment then takes its unit cell from the file
unless the config gives one (``crystal.cell`` or ``crystal.matrix_file``); a given cell that differs
from the file's by more than 0.5 % in any length or angle is an error naming both (``check_cell``).

``resolution_needed`` says which reflections the render can reach: every one with
``1/d <= q_cut``, where ``q_cut`` is the largest |q| of any pixel corner for any source
(:mod:`sim_core.reach`), plus 1 % and half a reciprocal cell in each direction (the nearest node),
or two cells when the render may interpolate (the tricubic neighbourhood), rounded up to a 1 % step
so that renders of similar geometry share a table; or exactly ``1 / dmin_F_A`` when the config
gives it.

``structure_table`` computes the P1 table (:mod:`sim_core.fcalc`) once per (file sha256, column,
cell, q_cut, default_F) and keeps the most recent tables in a cache bounded in bytes, so a warm
process (a job worker, ``nanobragg-server``) computes a series' table once.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .cache import ByteLRU
from .config import Crystal, SimulationConfig, UnitCell
from .errors import ConfigError, InputFileError
from .io.hkl import HklGrid
from .io.structure import Cell, ModelFile, MtzFile, read_model, read_mtz
from .io.textfile import sha256_file

#: the largest relative difference between a given cell and the file's
CELL_TOLERANCE = 0.005
#: computed tables kept per process, and their total size
CACHE_ENTRIES = 8
CACHE_BYTES = 512 << 20


@dataclass(eq=False)
class StructureInput:
    kind: str  # "model" or "mtz"
    field: str  # config field that names the file
    ref: str  # the file reference in the config
    sha256: str
    data: ModelFile | MtzFile

    @property
    def cell(self) -> Cell:
        return self.data.cell

    @property
    def name(self) -> str:
        """The file as the reader saw it (the service maps its store paths to upload names)."""
        return self.data.path

    def describe(self) -> str:
        what = (f"{self.data.atoms} atoms" if self.kind == "model"
                else f"column {self.data.column}, {self.data.reflections} reflections")
        return f"{self.name} ({self.data.spacegroup}, {what})"


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int, kind: str, column: str | None):
    data = read_model(path) if kind == "model" else read_mtz(path, column)
    return data, sha256_file(path)


def open_structure_input(config: SimulationConfig, files: Callable[[str], Path]
                         ) -> StructureInput | None:
    """The model or MTZ file of the config, read; None when the config names neither."""
    sf = config.structure_factors
    if sf.model_file:
        kind, field, ref = "model", "structure_factors.model_file", sf.model_file
    elif sf.mtz_file:
        kind, field, ref = "mtz", "structure_factors.mtz_file", sf.mtz_file
    else:
        return None
    path = str(files(ref))
    try:
        st = os.stat(path)
    except OSError:
        what = "model file" if kind == "model" else "MTZ file"
        raise InputFileError(f"{path}: {what} not found", path=path, field=field) from None
    try:
        data, digest = _read(path, st.st_mtime_ns, st.st_size, kind,
                             sf.mtz_column if kind == "mtz" else None)
    except InputFileError as exc:
        exc.field = "structure_factors.mtz_column" if exc.column else field
        raise
    return StructureInput(kind=kind, field=field, ref=ref, sha256=digest, data=data)


# -- the unit cell ------------------------------------------------------------------------------------
def _fmt_cell(cell) -> str:
    return " ".join(f"{x:g}" for x in cell)


def crystal_with_cell(inp: StructureInput, crystal: Crystal) -> tuple[Crystal, list[str]]:
    """``crystal``, with the file's cell when the config gives neither a cell nor a matrix."""
    if crystal.cell is not None or crystal.matrix_file is not None:
        return crystal, []
    a, b, c, al, be, ga = inp.cell
    cell = UnitCell(a_A=a, b_A=b, c_A=c, alpha_deg=al, beta_deg=be, gamma_deg=ga)
    note = f"unit cell from {inp.name}: {_fmt_cell(inp.cell)} ({inp.data.spacegroup})"
    return crystal.model_copy(update={"cell": cell}), [note]


def check_cell(inp: StructureInput, crystal: Crystal, cell_used: Cell) -> None:
    """A config cell (or matrix) more than 0.5 % away from the file's cell is an error."""
    if crystal.cell is None and crystal.matrix_file is None:
        return
    diffs = [abs(u - f) / f for u, f in zip(cell_used, inp.cell)]
    worst = max(range(6), key=lambda i: diffs[i])
    if diffs[worst] > CELL_TOLERANCE:
        given = "crystal.cell" if crystal.cell is not None else "crystal.matrix_file"
        names = ("a", "b", "c", "alpha", "beta", "gamma")
        raise ConfigError(
            f"the unit cell of {given} ({_fmt_cell(round(x, 4) for x in cell_used)}) differs from "
            f"the cell of {inp.name} ({_fmt_cell(inp.cell)}) by {100 * diffs[worst]:.2g} % in "
            f"{names[worst]}, more than {100 * CELL_TOLERANCE:g} %: give the file's cell, or leave "
            "the cell out to take it from the file", field=given)


# -- which reflections ---------------------------------------------------------------------------------
def reciprocal_lengths(cell: Cell) -> np.ndarray:
    from .fcalc import reciprocal_metric
    return np.sqrt(np.diag(reciprocal_metric(cell)))


def resolution_needed(config: SimulationConfig, cell: Cell, detector, beam, sampling,
                      interpolating: bool = True) -> tuple[float, str]:
    """``q_cut`` (1/Angstrom) and how it was chosen (for the notes).

    The margin beyond the detector's reach is half a reciprocal cell in each direction for the
    nearest-node lookup, two for the tricubic interpolation's neighbourhood.
    """
    dmin_F = config.structure_factors.dmin_F_A
    if dmin_F:
        return 1.0 / dmin_F, f"dmin_F {dmin_F:g} A"
    from .reach import max_q_inv_A

    thick = sampling.thickness
    depth = max(thick.range, thick.step * max(thick.steps - 1, 0))
    q = max_q_inv_A(detector, beam.direction, beam.sources, depth, config.sampling.dmin_A)
    q_cut = q * 1.01 + (2.0 if interpolating else 0.5) * float(reciprocal_lengths(cell).sum())
    q_cut = 1.01 ** math.ceil(math.log(q_cut) / math.log(1.01))
    return q_cut, f"the detector reaches {1 / q:.3g} A" if q > 0 else "the detector"


# -- the table, cached -----------------------------------------------------------------------------------
#: the most recent tables, at most CACHE_ENTRIES of them and CACHE_BYTES in all
TABLES = ByteLRU(CACHE_BYTES, CACHE_ENTRIES)


def structure_table(inp: StructureInput, cell: Cell, q_cut: float, default_F: float
                    ) -> tuple[HklGrid, str]:
    """The P1 table of ``inp`` for ``cell`` to ``q_cut``, from the cache or computed; and a note."""
    from .fcalc import model_table, mtz_table

    column = inp.data.column if inp.kind == "mtz" else None
    key = (inp.sha256, inp.kind, column, tuple(round(x, 6) for x in cell), round(q_cut, 9),
           float(default_F))
    grid = TABLES.get(key)
    if grid is not None:
        how = "reused from this process's cache"
    else:
        t0 = time.perf_counter()
        make = model_table if inp.kind == "model" else mtz_table
        grid = make(inp.data, cell, q_cut, default_F)
        TABLES.put(key, grid, grid.F.nbytes)
        how = f"computed in {time.perf_counter() - t0:.2f} s"
    return grid, f"structure factors: {grid.count} P1 reflections to {1 / q_cut:.3g} A from " \
                 f"{inp.describe()}, {how}"


def experiment_table(inp: StructureInput, config: SimulationConfig, crystal, detector, beam,
                     sampling, compute: bool = True) -> tuple[HklGrid | None, list[str]]:
    """The P1 table an experiment needs (None when ``compute`` is False: only the size is checked)."""
    from .fcalc import check_box

    cell = tuple(float(x) for x in crystal.cell_report["cell_A_deg"])
    mode = config.structure_factors.interpolate
    interpolating = mode == "on" or (mode == "auto" and any(n <= 2 for n in crystal.N_flags))
    q_cut, why = resolution_needed(config, cell, detector, beam, sampling, interpolating)
    try:
        if not compute:
            check_box(cell, q_cut, inp.data.path)
            return None, [f"structure factors from {inp.describe()} to {1 / q_cut:.3g} A ({why})"]
        grid, note = structure_table(inp, cell, q_cut, config.structure_factors.default_F)
    except InputFileError as exc:
        exc.field = exc.field or inp.field
        raise
    return grid, [f"{note} ({why})"]


__all__ = ["StructureInput", "experiment_table", "open_structure_input", "crystal_with_cell", "check_cell",
           "resolution_needed", "structure_table", "TABLES", "CELL_TOLERANCE"]
