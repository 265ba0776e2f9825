"""The input files a simulation reads: one row per file, for every place that handles them.

Each row ties a config field to the nanoBragg flag that names the file, the kind under which the job
service takes an upload of it, and the reader that checks it. The command line, the flag parser and
writer, the API (uploads, submissions), the client and the worker all read this table; a new kind of
input file is one more row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def is_fdump(path: Path | str) -> bool:
    """True for a file that starts like nanoBragg's Fdump.bin (six integers, newline, form feed)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    end = head.find(b"\n\f")
    if end < 0:
        return False
    parts = head[:end].split()
    return len(parts) == 6 and all(p.lstrip(b"-").isdigit() for p in parts)


def _read_hkl(path):
    from .io.hkl import read_fdump, read_hkl
    return read_fdump(path) if is_fdump(path) else read_hkl(path)


def _read_matrix(path):
    from .io.mosflm import read_mosflm_matrix
    return read_mosflm_matrix(path)


def _read_sources(path):
    from .io.sources import read_source_file
    return read_source_file(path)


def _read_smv(path):
    from .io.smv import read_smv
    return read_smv(path)


def _read_model(path):
    from .io.structure import read_model
    return read_model(path)


def _read_mtz(path):
    # an intensity column is taken too (converted to amplitudes with a warning when used)
    from .io.structure import read_mtz
    return read_mtz(path, intensities_too=True)


@dataclass(frozen=True)
class InputFile:
    #: the config field that holds the file's reference
    field: str
    #: the nanoBragg flag that names it
    flag: str
    #: the upload kind of the job service (POST /v1/files)
    kind: str
    #: reads the file, raising InputFileError naming the line
    read: Callable
    #: what the file holds, for the API's documentation
    about: str
    #: one of our own flags, not the C program's
    ours: bool = False
    #: the upload's answer carries the read file's ``summary()`` (cell, space group, counts)
    summarized: bool = False


INPUT_FILES: tuple[InputFile, ...] = (
    InputFile("crystal.matrix_file", "-mat", "matrix", _read_matrix, "MOSFLM A matrix"),
    InputFile("structure_factors.hkl_file", "-hkl", "hkl", _read_hkl,
              "'h k l F' lines (or an Fdump.bin)"),
    InputFile("beam.source_file", "-sourcefile", "sources", _read_sources,
              "'X Y Z weight lambda' lines"),
    InputFile("detector.mask_file", "-mask", "mask", _read_smv, "SMV image"),
    InputFile("structure_factors.model_file", "-model", "model", _read_model,
              "PDB or mmCIF coordinates", ours=True, summarized=True),
    InputFile("structure_factors.mtz_file", "-mtz", "mtz", _read_mtz, "MTZ reflections",
              ours=True, summarized=True),
)
#: -img names an SMV image whose header presets the detector, like -mask, but is kept nowhere
HEADER_FLAGS = {"-img": "mask", "-mask": "mask"}

BY_FIELD = {f.field: f for f in INPUT_FILES}
BY_FLAG = {f.flag: f for f in INPUT_FILES}
#: upload kind -> what a file of it holds
KINDS = {f.kind: f.about for f in INPUT_FILES}
#: every flag that names a file to upload -> its upload kind
FLAG_KINDS = {**{f.flag: f.kind for f in INPUT_FILES}, **HEADER_FLAGS}


#: the config fields of the files that give structure factors (one of them at most)
STRUCTURE_FACTOR_FIELDS = tuple(f.field for f in INPUT_FILES
                                if f.field.startswith("structure_factors."))


def check_input(path: Path | str, kind: str) -> dict | None:
    """Read the file as the simulator will; raises InputFileError naming the line (or the MTZ
    column). Models and MTZ files return a summary for the upload's answer."""
    for f in INPUT_FILES:
        if f.kind == kind:
            data = f.read(path)
            return data.summary() if f.summarized else None
    raise ValueError(f"unknown input kind {kind!r}")


__all__ = ["InputFile", "INPUT_FILES", "HEADER_FLAGS", "BY_FIELD", "BY_FLAG", "KINDS",
           "FLAG_KINDS", "STRUCTURE_FACTOR_FIELDS", "check_input", "is_fdump"]
