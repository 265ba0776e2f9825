"""The rule of the config's structure-factor fields: one source, and options only with their file.

Kept apart from :mod:`sim_core.config` so that the config model states it in one line.
"""

from __future__ import annotations


def check_structure_sources(sf):
    """One source of structure factors; the MTZ and resolution options only with their files."""
    from .config import FieldError
    given = [n for n in ("hkl_file", "model_file", "mtz_file") if getattr(sf, n)]
    if len(given) > 1:
        raise FieldError(given[1], f"give one of hkl_file, model_file and mtz_file, not "
                                   f"{' and '.join(given)}")
    if sf.mtz_column is not None and not sf.mtz_file:
        raise FieldError("mtz_column", "mtz_column needs mtz_file")
    if sf.dmin_F_A is not None and not (sf.model_file or sf.mtz_file):
        raise FieldError("dmin_F_A", "dmin_F_A needs model_file or mtz_file (an HKL file gives "
                                     "its own reflections)")
    return sf
