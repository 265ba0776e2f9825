"""Upload checks of coordinate models (PDB, mmCIF) and MTZ files: each is read as the simulator
will read it, and summarised (cell, space group, atoms or reflections) for the upload's answer.

A malformed file raises :class:`~sim_core.errors.InputFileError` with the line (models) or the column
(MTZ) where that applies. An MTZ file is accepted when it has an amplitude or an intensity column.
"""

from __future__ import annotations

from sim_core.io.structure import read_model, read_mtz


def check_model(path) -> dict:
    """Summary of a PDB or mmCIF model: format, cell, space group, atoms."""
    return read_model(path).summary()


def check_mtz(path) -> dict:
    """Summary of an MTZ file: cell, space group, reflections, its columns, the default column."""
    return read_mtz(path, intensities_too=True).summary()
