"""The lab frame: which way the beam, the detector axes, the polarization and the spindle point, and
which point the detector pivots about.

This is the one home of nanoBragg's convention rules. A named convention (mosflm, xds, adxv, denzo,
dials) fixes every vector and the pivot; the custom convention starts from nanoBragg's initial vectors,
takes the ones the config gives, and pivots as the config says (the beam when it does not say).
No torch: the config model checks its sections with :func:`frame_errors`, the flag parser asks
:func:`fixed_pivot`, and the detector and the experiment take their vectors from :func:`resolve_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Vector3 = tuple[float, float, float]
Convention = Literal["mosflm", "xds", "adxv", "denzo", "dials", "custom"]
Pivot = Literal["beam", "sample"]

#: the vectors of each named convention, and the point its detector pivots about
_NAMED: dict[str, dict] = {
    "adxv": {"beam": (0, 0, 1), "fdet": (1, 0, 0), "sdet": (0, -1, 0), "odet": (0, 0, 1),
             "twotheta_axis": (-1, 0, 0), "polar": (1, 0, 0), "spindle": (1, 0, 0),
             "pivot": "beam"},
    "mosflm": {"beam": (1, 0, 0), "fdet": (0, 0, 1), "sdet": (0, -1, 0), "odet": (1, 0, 0),
               "twotheta_axis": (0, 0, -1), "polar": (0, 0, 1), "spindle": (0, 0, 1),
               "pivot": "beam"},
    "denzo": {"beam": (1, 0, 0), "fdet": (0, 0, 1), "sdet": (0, -1, 0), "odet": (1, 0, 0),
              "twotheta_axis": (0, 0, -1), "polar": (0, 0, 1), "spindle": (0, 0, 1),
              "pivot": "beam"},
    "xds": {"beam": (0, 0, 1), "fdet": (1, 0, 0), "sdet": (0, 1, 0), "odet": (0, 0, 1),
            "twotheta_axis": (1, 0, 0), "polar": (1, 0, 0), "spindle": (1, 0, 0),
            "pivot": "sample"},
    "dials": {"beam": (0, 0, 1), "fdet": (1, 0, 0), "sdet": (0, 1, 0), "odet": (0, 0, 1),
              "twotheta_axis": (0, 1, 0), "polar": (0, 1, 0), "spindle": (0, 1, 0),
              "pivot": "sample"},
}
#: nanoBragg's initial vectors, which the custom convention keeps unless the config replaces them
CUSTOM_DEFAULTS = {"beam": (1, 0, 0), "fdet": (0, 0, 1), "sdet": (0, -1, 0), "odet": (1, 0, 0),
                   "twotheta_axis": (0, 1, 0), "polar": (0, 0, 1), "spindle": (0, 0, 1)}
#: config fields that give a lab vector (only the custom convention takes them), by frame name
VECTOR_FIELDS = {"fdet": "detector.fdet_vector", "sdet": "detector.sdet_vector",
                 "odet": "detector.odet_vector", "twotheta_axis": "detector.twotheta_axis",
                 "pix0": "detector.pix0_vector_m", "beam": "beam.beam_vector",
                 "polar": "beam.polar_vector", "spindle": "goniometer.spindle_axis"}


def fixed_pivot(convention: str) -> Optional[str]:
    """The pivot a named convention imposes; None for the custom convention (the config decides)."""
    named = _NAMED.get(convention)
    return named["pivot"] if named else None


@dataclass(frozen=True)
class LabFrame:
    """The resolved frame: raw (not yet unit) vectors as the config or the convention gives them."""

    convention: str
    pivot: str
    beam: Vector3
    polar: Vector3
    spindle: Vector3
    fdet: Vector3
    sdet: Vector3
    odet: Vector3
    twotheta_axis: Vector3


def _get(config, path: str):
    section, key = path.split(".")
    return getattr(getattr(config, section), key)


def given_vectors(config) -> dict[str, Vector3]:
    """Frame name -> vector, for each lab vector the config gives."""
    out = {}
    for name, path in VECTOR_FIELDS.items():
        v = _get(config, path)
        if v is not None:
            out[name] = tuple(float(x) for x in v)
    return out


def frame_errors(config) -> list[tuple[str, str]]:
    """(field path, message) for each way the config contradicts its convention."""
    conv = config.detector.convention
    errors = []
    if conv != "custom":
        for name in given_vectors(config):
            path = VECTOR_FIELDS[name]
            errors.append((path, f"{path} needs detector.convention='custom' (the {conv} "
                                 "convention sets its own axes)"))
        want, pivot = fixed_pivot(conv), config.detector.pivot
        if pivot is not None and pivot != want:
            errors.append(("detector.pivot", f"the {conv} convention always pivots about the "
                                             f"{want}; pivot={pivot!r} needs convention='custom'"))
    return errors


def resolve_frame(config) -> LabFrame:
    """The lab frame of a (valid) config."""
    conv = config.detector.convention
    if conv == "custom":
        vecs = dict(CUSTOM_DEFAULTS)
        vecs.update({k: v for k, v in given_vectors(config).items() if k != "pix0"})
        pivot = config.detector.pivot or "beam"
    else:
        vecs = {k: v for k, v in _NAMED[conv].items() if k != "pivot"}
        pivot = _NAMED[conv]["pivot"]
    as_float = {k: tuple(float(x) for x in v) for k, v in vecs.items()}
    return LabFrame(convention=conv, pivot=pivot, **as_float)


__all__ = ["LabFrame", "resolve_frame", "fixed_pivot", "frame_errors", "given_vectors",
           "CUSTOM_DEFAULTS", "VECTOR_FIELDS", "Convention", "Pivot"]
