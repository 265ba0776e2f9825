"""Every file a render can write, each declared once, and the names of the bookkeeping files.

A row (:class:`OutputFormat`) says what an output is called in the service (``key``: a job's
``outputs``), which ``nanobragg`` flag and config field name its file, the artifact name the
service stores it under, its content type, and whether a series numbers it per image. The
``nanobragg`` command, the API's schema, the client's choices, the worker's writers, a series'
numbered names and the content types of downloads are all read from this table
(``docs/architecture.md``: "how to add an output format").

The mirror of :mod:`sim_core.inputs` (the input files). The bookkeeping files every job folder has
(``run_metadata.json``, ``commands.txt``, ``sha256.txt``, ``trace_<slow>_<fast>.log``) are named
here too, with the numbered forms a series gives them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class OutputFormat:
    #: the output's name in a job's ``outputs`` (the API, the client's ``--outputs``)
    key: str
    #: the nanobragg flag naming the file (None: not a file of the command line)
    flag: Optional[str]
    #: the config field holding its file name (``outputs.<...>``); None: the service names it
    config_field: Optional[str]
    #: the name the service stores it under
    artifact: str
    content_type: str
    description: str
    #: a job of the service may ask for it
    service: bool = True
    #: a series writes one per image (numbered); False: one file for every image
    per_image: bool = True
    #: written into every render of the service, asked for or not
    always: bool = False


#: an image's ground truth (sim_core.ground_truth), numbered like the image in a dataset: the
#: reflections predicted on the detector (an output of any render, written beside every still), the
#: crystal as a MOSFLM matrix (``-mat``) and the truth record (a still's)
REFLECTIONS = "reflections.csv"
CRYSTAL_MATRIX = "crystal.mat"
TRUTH = "truth.json"
#: the true crystal, beam and detector of every image of a stills dataset (dxtbx ExperimentList)
EXPERIMENTS = "experiments.expt"


OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("float", "-floatfile", "outputs.float_file", "floatimage.bin",
                 "application/octet-stream",
                 "the noiseless image as raw float32, nanoBragg's -floatfile layout", always=True),
    OutputFormat("smv", "-intfile", "outputs.int_file", "intimage.img", "application/octet-stream",
                 "the image scaled to 16-bit counts, SMV (ADSC) with nanoBragg's header"),
    OutputFormat("noise", "-noisefile", "outputs.noise_file", "noiseimage.img",
                 "application/octet-stream",
                 "the image with Poisson noise, SMV, as a detector would record it"),
    OutputFormat("pgm", "-pgmfile", "outputs.pgm_file", "image.pgm", "image/x-portable-graymap",
                 "an 8-bit PGM picture (the command line's; the service writes png)",
                 service=False),
    OutputFormat("cbf", "-cbf", "outputs.cbf_file", "image.cbf", "application/octet-stream",
                 "a Pilatus-style miniCBF of the int image"),
    OutputFormat("nexus", "-nexus", "outputs.nexus_file", "image.nxs", "application/x-hdf5",
                 "an NXmx NeXus/HDF5 file with the full geometry, of the float image or the "
                 "counts (outputs.nexus_image); a series: one master file over every image",
                 per_image=False),
    OutputFormat("png", None, None, "preview.png", "image/png", "a preview picture"),
    OutputFormat("hkl", None, None, "structure_factors.hkl", "text/plain; charset=utf-8",
                 "the P1 structure factors of a model or MTZ file, as an HKL file",
                 per_image=False),
    OutputFormat("reflections", None, None, REFLECTIONS, "text/csv; charset=utf-8",
                 "the reflections predicted on the detector (hkl, d, position, excitation error, "
                 "F, summed intensity): the image's ground truth (every still has it)"),
)

BY_KEY: dict[str, OutputFormat] = {f.key: f for f in OUTPUT_FORMATS}
BY_FLAG: dict[str, OutputFormat] = {f.flag: f for f in OUTPUT_FORMATS if f.flag}
#: the outputs a job of the service may ask for, in the table's order
SERVICE_OUTPUTS: tuple[str, ...] = tuple(f.key for f in OUTPUT_FORMATS if f.service)
#: the outputs a job gets without asking
DEFAULT_OUTPUTS: tuple[str, ...] = ("float", "smv", "png")
#: the nanoBragg flags that name output files (numbered per image in a series' shell loop, where
#: each command renders one image)
OUTPUT_FLAGS: tuple[str, ...] = tuple(f.flag for f in OUTPUT_FORMATS if f.flag)

# -- bookkeeping files ----------------------------------------------------------------------------
RUN_METADATA = "run_metadata.json"
COMMANDS = "commands.txt"
SHA256SUMS = "sha256.txt"
#: a verification job's report: machine-readable and for people (sim_core.verification)
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
#: the widest numbering :func:`numbered_name` pads to by default
NUMBER_WIDTH = 5

_CONTENT_BY_SUFFIX = {".json": "application/json", ".log": "text/plain; charset=utf-8",
                      ".md": "text/markdown; charset=utf-8",
                      ".txt": "text/plain; charset=utf-8",
                      ".mat": "text/plain; charset=utf-8", ".expt": "application/json"}


def trace_name(slow: int, fast: int) -> str:
    """The trace file of a pixel (``trace_10_20.log``)."""
    return f"trace_{slow}_{fast}.log"


def side_trace_name(side: str, slow: int, fast: int) -> str:
    """The trace of a pixel on one side of a verification (``trace_cpu-float64_10_20.log``);
    ``side`` is the side's name made safe for a file name (``cpu:float64`` → ``cpu-float64``)."""
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in side).strip("-.") or "side"
    return f"trace_{safe}_{slow}_{fast}.log"


def numbered_name(path, n: int, width: int = NUMBER_WIDTH):
    """``image.img`` → ``image_00001.img`` for ``n = 1``; a name without an extension gets the number
    at its end (``image`` → ``image_00001``). Folders in ``path`` are kept; numbers wider than
    ``width`` are written in full. Returns the type it was given (``str`` or a path)."""
    if n < 0:
        raise ValueError(f"image numbers are >= 0, got {n}")
    head, ext = _number_parts(os.fspath(path))
    name = f"{head}{n:0{width}d}{ext}"
    return name if isinstance(path, str) else type(path)(name)


def _number_parts(path: str) -> tuple[str, str]:
    root, ext = os.path.splitext(path)
    return root + "_", ext


def image_artifact(name: str, n: Optional[int]) -> str:
    """The stored name of a single job's artifact ``name`` for image ``n`` of a series
    (``floatimage_00003.bin``), or ``name`` itself for a single job (``n`` None) and for outputs
    that are one file for every image (the P1 table of a model)."""
    if n is None or name in _SHARED:
        return name
    return numbered_name(name, n)


def nexus_data_name(first: int) -> str:
    """The NeXus data file of a series child, named by its first image (``image_data_00003.nxs``):
    an NXmx file of the child's images, which the series' master file (the ``nexus`` artifact name,
    made when the dataset is downloaded) links frame by frame, as an Eiger's master file links its
    data files."""
    stem, ext = os.path.splitext(BY_KEY["nexus"].artifact)
    return numbered_name(f"{stem}_data{ext}", first)


def content_type(name: str) -> str:
    """The content type of a stored artifact (numbered or not)."""
    for f in OUTPUT_FORMATS:
        stem, ext = os.path.splitext(f.artifact)
        if name == f.artifact or (name.startswith(stem + "_") and name.endswith(ext)):
            return f.content_type
    return _CONTENT_BY_SUFFIX.get(os.path.splitext(name)[1], "application/octet-stream")


_SHARED = frozenset(f.artifact for f in OUTPUT_FORMATS if not f.per_image)

__all__ = ["OutputFormat", "OUTPUT_FORMATS", "BY_KEY", "BY_FLAG", "SERVICE_OUTPUTS",
           "DEFAULT_OUTPUTS", "OUTPUT_FLAGS", "RUN_METADATA", "COMMANDS", "SHA256SUMS",
           "NUMBER_WIDTH", "REPORT_JSON", "REPORT_MD", "REFLECTIONS", "CRYSTAL_MATRIX", "TRUTH",
           "EXPERIMENTS", "trace_name", "side_trace_name", "numbered_name", "image_artifact",
           "nexus_data_name", "content_type"]
