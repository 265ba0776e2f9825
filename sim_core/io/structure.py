"""Coordinate models (PDB, mmCIF) and MTZ reflection files, read with gemmi, with located errors.

A model file is recognised by its content: mmCIF starts with a ``data_`` block, anything else is read
as PDB. A model must give a unit cell (PDB ``CRYST1``, mmCIF ``_cell``), a space group that gemmi knows
and at least one atom; its first model is used, with non-crystallographic copies expanded where the
file lists them (``MTRIX`` / ``_struct_ncs_oper`` not marked as given). Every malformed input is an
:class:`~sim_core.errors.InputFileError` naming the file and, where there is one, the line (models)
or the column (MTZ).

An MTZ file gives amplitudes from one column: the one named, or the first column of type F. A named
intensity column (type J, or K for I(+)/I(-)) is converted with sqrt(max(I, 0)) and a warning; missing
values (NaN) are left out, so that those reflections take ``default_F``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from ..errors import InputFileError
from .model_scan import check_atom_numbers, check_truncated
from .textfile import read_text

PathLike = Union[str, "os.PathLike[str]"]

#: MTZ column types that hold amplitudes and intensities
AMPLITUDE_TYPES = {"F": "amplitude", "G": "anomalous amplitude F(+)/F(-)"}
INTENSITY_TYPES = {"J": "intensity", "K": "anomalous intensity I(+)/I(-)"}
_TYPE_NAMES = {"H": "Miller index", "Q": "standard deviation", "P": "phase", "W": "weight",
               "I": "integer", "R": "real", "A": "Hendrickson-Lattman", "D": "anomalous difference",
               "L": "standard deviation of an anomalous amplitude", "M": "M/ISYM", "B": "batch",
               "Y": "M/ISYM", "E": "normalised amplitude", **AMPLITUDE_TYPES, **INTENSITY_TYPES}

Cell = tuple[float, float, float, float, float, float]


@dataclass(eq=False)
class ModelFile:
    """An atomic model: its structure (gemmi), cell and space group."""

    path: str
    format: str  # "pdb" or "mmcif"
    structure: object  # gemmi.Structure, first model only, NCS copies expanded
    cell: Cell
    spacegroup: str  # Hermann-Mauguin symbol as gemmi spells it
    atoms: int
    anisotropic: int
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"format": self.format, "cell": list(self.cell), "space_group": self.spacegroup,
                "atoms": self.atoms, "anisotropic_atoms": self.anisotropic}


@dataclass(eq=False)
class MtzFile:
    """Amplitudes of one MTZ column for the file's reflections (asymmetric unit as stored)."""

    path: str
    cell: Cell
    spacegroup: str
    operations: object  # gemmi.GroupOps
    column: str
    column_type: str
    hkl: np.ndarray  # (n, 3) int64
    F: np.ndarray  # (n,) float64, amplitudes
    reflections: int  # rows of the file (missing values included)
    resolution_A: tuple[float, float]
    columns: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"cell": list(self.cell), "space_group": self.spacegroup,
                "reflections": self.reflections, "column": self.column,
                "resolution_A": list(self.resolution_A),
                "columns": [{"label": lab, "type": t} for lab, t in self.columns]}


def _gemmi():
    import gemmi
    return gemmi


def _cell_tuple(cell) -> Cell:
    return (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)


def _line_of(text: str, pattern: str) -> int | None:
    m = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None


def is_mmcif(text: str) -> bool:
    """True when the first line that is not blank or a comment opens a CIF data block."""
    for line in text.split("\n", 2000):
        s = line.strip()
        if s and not s.startswith("#"):
            return s.lower().startswith("data_")
    return False


# -- models -------------------------------------------------------------------------------------------
def _check_pdb_atoms(name: str, text: str) -> list[str]:
    """gemmi reads unparsable coordinates as 0: check the number columns of every atom record.

    A file that stops inside an atom record is reported as truncated; one without an END record
    gets a warning. (The upload's summary makes the same checks a line at a time: model_scan.)
    """
    lines = text.split("\n")
    check_truncated(name, len(lines), lines[-1])
    warnings = []
    if not any(x.startswith("END") and x[3:].strip() == "" for x in lines[-3:]):
        warnings.append(f"{name} has no END record: check that it is complete")
    for number, line in enumerate(lines, start=1):
        if line.startswith(("ATOM  ", "HETATM")):
            check_atom_numbers(name, number, line)
    return warnings


def _gemmi_line_error(name: str, exc: Exception) -> InputFileError:
    """gemmi's parse errors as located errors ('Problem in line N: ...' / 'string:N:col(...): ...')."""
    text = str(exc)
    m = re.match(r"Problem in line (\d+):\s*(.*)", text, re.DOTALL) or \
        re.match(r"[^:\n]*:(\d+):\d+(?:\(\d+\))?:\s*(.*)", text, re.DOTALL)
    if m:
        line = int(m.group(1))
        detail = m.group(2).strip().split("\n")[0]
        return InputFileError(f"{name} line {line}: {detail}", path=name, line=line)
    return InputFileError(f"{name}: {text.strip()}", path=name)


def read_model(path: PathLike) -> ModelFile:
    """Read a PDB or mmCIF model (format recognised by content).

    Raises:
        InputFileError: missing file, a malformed record (file and line named), no unit cell, an
            unknown or missing space group, or no atoms.
    """
    gemmi = _gemmi()
    name = os.fspath(path)
    text = read_text(path, "model file")
    mmcif = is_mmcif(text)
    fmt = "mmcif" if mmcif else "pdb"
    warnings: list[str] = []
    try:
        if mmcif:
            doc = gemmi.cif.read_string(text)
            st = gemmi.make_structure_from_block(doc[0])
        else:
            warnings = _check_pdb_atoms(name, text)
            st = gemmi.read_pdb_string(text)
    except InputFileError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise _gemmi_line_error(name, exc) from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        what = "_atom_site loop" if mmcif else "ATOM or HETATM records"
        raise InputFileError(f"{name}: no atoms ({what} with coordinates)", path=name)
    if not st.cell.is_crystal():
        where = "_cell.length_a/b/c items" if mmcif else "CRYST1 record"
        raise InputFileError(f"{name}: no unit cell (no {where}); the cell and the space group "
                             "are needed to compute structure factors", path=name,
                             line=_line_of(text, r"^CRYST1|^_cell\."))
    sg = st.find_spacegroup()
    if sg is None:
        line = _line_of(text, r"^CRYST1|^_symmetry\.space_group_name_H-M|^_space_group\.name_H-M")
        if not st.spacegroup_hm.strip():
            where = "_symmetry.space_group_name_H-M" if mmcif else "CRYST1 columns 56-66"
            raise InputFileError(f"{name}: no space group ({where} empty)", path=name, line=line)
        raise InputFileError(f"{name}" + (f" line {line}" if line else "")
                             + f": unknown space group '{st.spacegroup_hm}'", path=name, line=line)
    if len(st) > 1:
        warnings.append(f"{name} holds {len(st)} models: the first is used")
        while len(st) > 1:
            del st[len(st) - 1]
    if any(not op.given for op in st.ncs):
        st.expand_ncs(gemmi.HowToNameCopiedChain.Short)
    st.setup_cell_images()
    model = st[0]
    atoms = 0
    aniso = 0
    for cra in model.all():
        atoms += 1
        if cra.atom.aniso.nonzero():
            aniso += 1
    return ModelFile(path=name, format=fmt, structure=st, cell=_cell_tuple(st.cell),
                     spacegroup=sg.hm, atoms=atoms, anisotropic=aniso, warnings=warnings)


# -- MTZ ----------------------------------------------------------------------------------------------
def _mtz_read_error(name: str, exc: Exception) -> InputFileError:
    text = str(exc).replace(name, "").rstrip(": ").strip()
    return InputFileError(f"{name}: not a readable MTZ file ({text})", path=name)


#: bytes of an MTZ header record, and the header's records this reader looks at, at most (a real
#: header has a few dozen, plus one per column and symmetry operation)
_MTZ_RECORD = 80
_MTZ_MAX_RECORDS = 100_000
#: what a batch takes in the file at least: its BH, TITLE and BHCH records
_MTZ_BATCH_BYTES = 3 * _MTZ_RECORD
_LEADING_INT = re.compile(rb"\s*([-+]?\d+)")


def _leading_ints(text: bytes, count: int) -> list[int]:
    """The first ``count`` integers of ``text`` as gemmi's simple_atoi reads them (0 where none)."""
    out = []
    for word in text.split()[:count]:
        m = _LEADING_INT.match(word)
        out.append(int(m.group(1)) if m else 0)
    return out + [0] * (count - len(out))


def check_mtz_header(path: PathLike) -> None:
    """Check the sizes an MTZ file states against the file's own size, before gemmi allocates them.

    gemmi trusts the header pointer, NCOL's columns x reflections and batch count: a 4 KiB file can
    make it allocate gigabytes. Here the pointer must point inside the file, past the 80-byte
    preamble; the data (columns x reflections x 4 bytes) must fit between the preamble and the
    header; the batches must fit after it. The byte order is taken from the machine stamp as gemmi
    takes it. Reads the preamble and the header's records, at most ``_MTZ_MAX_RECORDS`` of them.

    Raises:
        InputFileError: naming the file and the size that does not fit.
    """
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        fh = open(name, "rb")
    except OSError:
        raise InputFileError(f"{name}: MTZ file not found", path=name) from None
    with fh:
        head = fh.read(20)
        if len(head) < 20 or head[:4] != b"MTZ ":
            raise InputFileError(f"{name}: not a readable MTZ file (it does not start with "
                                 "'MTZ ')", path=name)
        order = ">" if head[9] & 0xF0 == 0x10 else "<"
        pointer = int(np.frombuffer(head[4:8], order + "i4")[0])
        if pointer == -1:  # MTZ version 2: a 64-bit pointer
            pointer = int(np.frombuffer(head[12:20], order + "i8")[0])
        header_at = (pointer - 1) * 4
        if header_at < _MTZ_RECORD:
            raise InputFileError(f"{name}: not a readable MTZ file (its header pointer says the "
                                 f"header starts at byte {header_at:,}, inside the first 80)",
                                 path=name)
        if header_at + _MTZ_RECORD > size:
            raise InputFileError(f"{name}: truncated MTZ file: {size} bytes, but its header "
                                 f"should start at byte {header_at}", path=name)
        fh.seek(header_at)
        columns = None
        for _ in range(_MTZ_MAX_RECORDS):
            record = fh.read(_MTZ_RECORD)
            if len(record) < _MTZ_RECORD or record[:3].upper() == b"END":
                break
            if record[:4].upper() == b"NCOL":
                columns, reflections, batches = _leading_ints(record[4:], 3)
                data = columns * reflections * 4
                if columns < 0 or reflections < 0 or data > header_at - _MTZ_RECORD:
                    raise InputFileError(
                        f"{name}: corrupt MTZ file: its NCOL record states {columns:,} columns x "
                        f"{reflections:,} reflections ({data:,} bytes of data), but the data part "
                        f"of the file has {header_at - _MTZ_RECORD:,} bytes", path=name)
                if batches < 0 or batches * _MTZ_BATCH_BYTES > size - header_at:
                    raise InputFileError(
                        f"{name}: corrupt MTZ file: its NCOL record states {batches:,} batches, "
                        f"more than the {size - header_at:,} bytes after its header can hold",
                        path=name)
        else:
            raise InputFileError(f"{name}: corrupt MTZ file: no END record in its first "
                                 f"{_MTZ_MAX_RECORDS:,} header records", path=name)
        if columns is None:
            raise InputFileError(f"{name}: corrupt MTZ file: no NCOL record in its header",
                                 path=name)


def _type_name(t: str) -> str:
    return _TYPE_NAMES.get(t, f"type {t}")


def _list_columns(columns) -> str:
    return ", ".join(f"{lab} ({t})" for lab, t in columns if t != "H")


def read_mtz(path: PathLike, column: str | None = None, *,
             intensities_too: bool = False) -> MtzFile:
    """Read the amplitudes of ``column`` (default: the first column of type F) from an MTZ file.

    ``intensities_too`` lets a file without amplitudes default to its first intensity column.

    Raises:
        InputFileError: missing, truncated or corrupt file; no cell; unknown space group; no such
            column or no amplitude column (the column named, with the file's columns).
    """
    gemmi = _gemmi()
    name = os.fspath(path)
    check_mtz_header(name)
    try:
        mtz = gemmi.read_mtz_file(name)
    except (RuntimeError, ValueError, OSError) as exc:
        raise _mtz_read_error(name, exc) from None
    columns = [(c.label, c.type) for c in mtz.columns]
    if mtz.spacegroup is None:
        raise InputFileError(f"{name}: unknown space group '{mtz.spacegroup_name}' (SYMINF record)",
                             path=name)
    warnings: list[str] = []
    if column is None:
        usable = ("F", "J", "K") if intensities_too else ("F",)
        picked = next((c for t in usable for c in mtz.columns if c.type == t), None)
        if picked is None:
            wanted = "amplitude or intensity column (type F or J)" if intensities_too \
                else "amplitude column (type F)"
            raise InputFileError(f"{name}: no {wanted}; the file has "
                                 f"{_list_columns(columns) or 'no data columns'}"
                                 + ("; name an intensity column to use it" if any(
                                     t in INTENSITY_TYPES for _, t in columns) else ""),
                                 path=name)
        which = "amplitude" if picked.type == "F" else "intensity"
        warnings.append(f"{name}: data from column {picked.label}, the first {which} column "
                        "(choose another with mtz_column / -mtz_column)")
    else:
        picked = next((c for c in mtz.columns if c.label == column), None)
        if picked is None:
            raise InputFileError(f"{name}: no column '{column}'; the file has "
                                 f"{_list_columns(columns)}", path=name, column=column)
        if picked.type not in AMPLITUDE_TYPES and picked.type not in INTENSITY_TYPES:
            raise InputFileError(f"{name}: column {column} holds {_type_name(picked.type)} "
                                 "values, not amplitudes (F) or intensities (J)", path=name,
                                 column=column)
    cell = picked.dataset.cell if picked.dataset.cell.is_crystal() else mtz.cell
    if not cell.is_crystal():
        raise InputFileError(f"{name}: no unit cell (CELL / DCELL records)", path=name)
    data = np.array(mtz, copy=False)
    hkl = data[:, :3].astype(np.int64)
    values = data[:, picked.idx].astype(np.float64)
    keep = np.isfinite(values)
    hkl, values = hkl[keep], values[keep]
    if picked.type in INTENSITY_TYPES:
        negative = int((values < 0).sum())
        values = np.sqrt(np.maximum(values, 0.0))
        warnings.append(f"{name}: column {picked.label} holds intensities: F = sqrt(max(I, 0))"
                        + (f" ({negative} negative intensities set to 0)" if negative else ""))
    if picked.type == "G":
        warnings.append(f"{name}: column {picked.label} is one hand of an anomalous pair; its "
                        "Friedel mates get the same amplitude")
    reso = (float(mtz.resolution_low()), float(mtz.resolution_high())) if len(data) else (0.0, 0.0)
    return MtzFile(path=name, cell=_cell_tuple(cell), spacegroup=mtz.spacegroup.hm,
                   operations=mtz.spacegroup.operations(), column=picked.label,
                   column_type=picked.type, hkl=hkl, F=values, reflections=int(len(data)),
                   resolution_A=reso, columns=columns, warnings=warnings)


__all__ = ["ModelFile", "MtzFile", "read_model", "read_mtz", "check_mtz_header", "is_mmcif",
           "AMPLITUDE_TYPES", "INTENSITY_TYPES"]
