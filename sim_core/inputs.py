"""The input files a simulation reads: one row per file, for every place that handles them.

Each row ties a config field to the nanoBragg flag that names the file, the kind under which the job
service takes an upload of it, and the reader that checks it. The command line, the flag parser and
writer, the API (uploads, submissions), the client and the worker all read this table; a new kind of
input file is one more row. ``VIEW_FILES`` holds the kinds kept for the web page's viewer only (a
detector image to compare with a simulation), which no simulation reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .io import summary as _summary
from .io.summary import is_fdump


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
    #: reads the file once, with bounded memory, into the small summary kept in the upload's record
    #: (what checking and pricing a job needs; sim_core.io.summary)
    summarize: Callable
    #: one of our own flags, not the C program's
    ours: bool = False
    #: the one-line description of its flag (``nanobragg -help``)
    help: str = ""


INPUT_FILES: tuple[InputFile, ...] = (
    InputFile("crystal.matrix_file", "-mat", "matrix", _read_matrix, "MOSFLM A matrix",
              _summary.matrix, help="crystal orientation and cell: a MOSFLM A matrix"),
    InputFile("structure_factors.hkl_file", "-hkl", "hkl", _read_hkl,
              "'h k l F' lines (or an Fdump.bin)", _summary.hkl,
              help="structure factors: 'h k l F' lines (or an Fdump.bin)"),
    InputFile("beam.source_file", "-sourcefile", "sources", _read_sources,
              "'X Y Z weight lambda' lines", _summary.sources,
              help="beam sources: 'X Y Z weight lambda' lines"),
    InputFile("detector.mask_file", "-mask", "mask", _read_smv, "SMV image", _summary.mask,
              help="SMV image whose zero pixels are not rendered (its header presets the detector)"),
    InputFile("structure_factors.model_file", "-model", "model", _read_model,
              "PDB or mmCIF coordinates", _summary.model, ours=True,
              help="structure factors computed from PDB or mmCIF coordinates"),
    InputFile("structure_factors.mtz_file", "-mtz", "mtz", _read_mtz, "MTZ reflections",
              _summary.mtz, ours=True, help="structure factors read from an MTZ file"),
)
#: -img names an SMV image whose header presets the detector, like -mask, but is kept nowhere
HEADER_FLAGS = {"-img": "mask", "-mask": "mask"}



@dataclass(frozen=True)
class ViewFile:
    """A file the service keeps for the viewer, not for a simulation: no config field, no flag."""

    #: the upload kind of the job service (POST /v1/files)
    kind: str
    #: what the file holds, for the API's documentation
    about: str
    #: reads the file (its header, not more than viewing it takes) into its upload summary
    summarize: Callable


def _summarize_image(path):
    from .io.imagefile import summary
    return summary(path)


def _summarize_float_image(path):
    """A raw float32 image (nanoBragg's -floatfile layout): its size in pixels; its shape is the
    detector's, checked where it is used."""
    import numpy as np

    from .errors import InputFileError

    size = Path(path).stat().st_size
    if size == 0 or size % 4:
        raise InputFileError(f"{Path(path).name}: {size} bytes is not a whole number of float32 "
                             "pixels (a raw -floatfile image has 4 bytes per pixel)")
    img = np.fromfile(path, dtype="<f4")
    finite = img[np.isfinite(img)]
    return {"format": "float32", "pixels": int(img.size),
            "max": float(finite.max()) if finite.size else None,
            "sum": float(finite.sum(dtype=np.float64))}


def _summarize_trace_log(path):
    """A per-pixel trace (TRACE_C / TRACE_PY lines): its pixels and line counts; a file without
    trace lines is refused."""
    from .errors import InputFileError
    from .trace_diff import parse_trace, pixels_of

    recs = parse_trace(Path(path).read_text(errors="replace"))
    if not recs:
        raise InputFileError(f"{Path(path).name}: no trace lines (TRACE_C:, TRACE_PY:, "
                             "TRACE_*_PHI); expected the C program's -trace_pixel output or ours")
    return {"format": recs[0].prefix, "records": len(recs),
            "pixels": [list(p) for p in pixels_of(recs) if p is not None],
            "phi_lines": len({r.line for r in recs if r.family == "phi"})}


VIEW_FILES: tuple[ViewFile, ...] = (
    ViewFile("image", "SMV, CBF or NeXus/HDF5 detector image, to view beside a "
             "simulated one",
             _summarize_image),
    ViewFile("float_image", "raw float32 image in nanoBragg's -floatfile layout (slow index "
             "major), the reference side of a verification", _summarize_float_image),
    ViewFile("trace_log", "a pixel's trace (the C program's TRACE_C lines or ours), the "
             "reference side of a verification", _summarize_trace_log),
)

BY_FIELD = {f.field: f for f in INPUT_FILES}
BY_FLAG = {f.flag: f for f in INPUT_FILES}
BY_KIND = {f.kind: f for f in INPUT_FILES}
#: upload kind -> what a file of it holds
KINDS = {f.kind: f.about for f in INPUT_FILES + VIEW_FILES}
#: every flag that names a file to upload -> its upload kind
FLAG_KINDS = {**{f.flag: f.kind for f in INPUT_FILES}, **HEADER_FLAGS}


#: the config fields of the files that give structure factors (one of them at most)
STRUCTURE_FACTOR_FIELDS = tuple(f.field for f in INPUT_FILES
                                if f.field.startswith("structure_factors."))


def summarize(path: Path | str, kind: str) -> dict:
    """Read the file as ``kind`` into its upload summary (format, counts, ranges, cell, space
    group, an image's shape...); raises InputFileError naming the line (or the MTZ column) of a malformed file."""
    try:
        row = BY_KIND.get(kind) or next(v for v in VIEW_FILES if v.kind == kind)
    except StopIteration:
        raise ValueError(f"unknown input kind {kind!r}") from None
    return row.summarize(path)


__all__ = ["InputFile", "INPUT_FILES", "ViewFile", "VIEW_FILES", "HEADER_FLAGS", "BY_FIELD", "BY_FLAG", "BY_KIND", "KINDS",
           "FLAG_KINDS", "STRUCTURE_FACTOR_FIELDS", "summarize", "is_fdump"]
