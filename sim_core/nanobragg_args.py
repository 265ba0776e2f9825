"""nanoBragg command lines <-> :class:`~sim_core.config.SimulationConfig`, by walking the flag table
of ``sim_core.flag_table``.

``parse_nanobragg_args`` reads the flags of the C program in order, with its defaults and implicit
rules: a detector or beam vector switches to the CUSTOM convention; ``-xds``, ``-Xclose``, ``-Yclose``,
``-ORGX``, ``-ORGY``, ``-close_distance``, ``-twotheta`` and ``-pivot sample`` select the sample pivot while
``-distance``, ``-Xbeam``, ``-Ybeam`` and the other conventions select the beam pivot (the named
conventions then impose their own pivot); ``-img`` and ``-mask`` headers preset the detector before the
other flags; later flags override earlier ones.

Unlike the C program, flags are matched by their exact names (the C program matches substrings and
silently ignores what it does not know): an unknown flag, a missing or malformed value is an
:class:`~sim_core.errors.ArgumentError` naming the flag, and a value the config refuses is a
:class:`~sim_core.errors.ConfigError` naming the flag and the field. The parser reads on past an
error (from the next flag) and reports every error of the command line at once. Two substring side
effects of the C program change images and are reproduced, with a warning
(``flag_table.read_misset_seed``, ``flag_table.read_twotheta_axis``), and so is its completion of a
short ``-cell`` (with a warning giving the cell used).

``config_to_args`` is the inverse: a command line that reproduces a config (used for commands.txt).
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .config import SimulationConfig, get_field, validation_errors
from .errors import ArgumentError, ConfigError, InputFileError
from .flag_table import (FLAGS, FLAGS_BY_NAME, OUR_FLAGS, Flag, declared_default, format_value,
                         read_value, rows_setting, what)
from .inputs import INPUT_FILES, STRUCTURE_FACTOR_FIELDS
from .lab_frame import VECTOR_FIELDS, fixed_pivot

#: our own flags, in addition to the C program's
EXTENSION_FLAGS = OUR_FLAGS


@dataclass
class ParsedArgs:
    config: SimulationConfig
    warnings: list[str] = field(default_factory=list)
    trace_file: str | None = None
    progress: bool = True
    #: -force: render even what the local price check refuses (sim_core.preflight)
    force: bool = False
    #: files the command line names, by field path (for uploads and checksums)
    input_files: dict[str, str] = field(default_factory=dict)


class Tokens:
    def __init__(self, argv: list[str]):
        self.argv = list(argv)
        self.i = 0

    def value(self, flag: str, what: str = "a value") -> str:
        if self.i + 1 >= len(self.argv):
            raise ArgumentError(f"{flag} needs {what}", flag=flag)
        self.i += 1
        return self.argv[self.i]

    def peek(self, k: int = 1) -> str | None:
        j = self.i + k
        return self.argv[j] if j < len(self.argv) else None

    def remaining(self) -> int:
        return len(self.argv) - self.i - 1


class Draft:
    """The C program's variables, in the config's units, with "absent" for "not given"."""

    def __init__(self):
        self.cfg: dict = {k: {} for k in SimulationConfig.model_fields}
        self.cell: list[float] | None = None
        #: the values of the last -cell and whether it kept values of an earlier one
        self.cell_given: tuple[list[float], bool] | None = None
        self.pivot: str | None = None  # "beam" or "sample", as the flags last set it
        #: the flag that last asked for the pivot (None: a convention flag's own)
        self.pivot_flag: str | None = None
        self.convention = "mosflm"
        self.misset: str | tuple | None = None
        #: output paths switched on or off (-nonoise, -nopgm, and the file flags after them)
        self.switches: dict[str, bool] = {}
        self.trace_pixels: list[tuple[int, int]] = []
        self.warnings: list[str] = []
        self.trace_file: str | None = None
        self.dump_name = "Fdump.bin"
        self.progress = True
        self.force = False

    def set(self, path: str, value) -> None:
        section, key = path.split(".")
        self.cfg[section][key] = value

    def get(self, path: str):
        section, key = path.split(".")
        return self.cfg[section].get(key)


# ------------------------------------------------------------------------------------------------
# command line -> config
# ------------------------------------------------------------------------------------------------

def read_flag(d: Draft, tok: Tokens, flag: str, row: Flag) -> None:
    """Read one flag: its own reader, or the table's rule (values to every field)."""
    if row.read is not None:
        row.read(d, tok, flag)
    elif row.kind == "switch":
        for path in row.fields:
            d.set(path, row.value)
    else:
        values = [read_value(row, flag, tok.value(flag, what(row))) for _ in range(row.nargs)]
        value = values[0] if row.nargs == 1 else tuple(values)
        for path in row.fields:
            d.set(path, value)
    if row.pivot is not None:
        d.pivot, d.pivot_flag = row.pivot, flag
    if row.custom:
        d.convention = "custom"
    if row.note:
        d.warnings.append(row.note.format(flag=flag))


def _apply_smv_header(d: Draft, path: Path, kind: str):
    """Preset detector values from an SMV header (``-img``/``-mask``), as nanoBragg does."""
    from .io.smv import header_value, read_smv
    try:
        header, img = read_smv(path)
    except FileNotFoundError:
        raise InputFileError(f"-{kind} file {path} not found", path=str(path)) from None
    S, F = img.shape
    d.set("detector.fast_pixels", F)
    d.set("detector.slow_pixels", S)
    pixel = header_value(header, "PIXEL_SIZE")
    if pixel is not None:
        d.set("detector.pixel_size_mm", pixel)
    pixel_mm = d.get("detector.pixel_size_mm") or 0.1
    for key, path in (("DISTANCE", "detector.distance_mm"),
                      ("CLOSE_DISTANCE", "detector.close_distance_mm"),
                      ("ORGX", "detector.org_x_px"), ("ORGY", "detector.org_y_px"),
                      ("WAVELENGTH", "beam.wavelength_A"), ("BEAM_CENTER_X", "detector.beam_x_mm"),
                      ("PHI", "scan.phi_start_deg"), ("OSC_RANGE", "scan.osc_range_deg")):
        v = header_value(header, key)
        if v is not None:
            d.set(path, v)
    v = header_value(header, "BEAM_CENTER_Y")
    if v is not None:
        d.set("detector.beam_y_mm", (pixel_mm * S - v) if kind == "mask" else v)


def _preset_headers(d: Draft, argv: list[str], base: Path) -> None:
    """-img and -mask headers preset the detector before every other flag (mask first, then img)."""
    for kind in ("mask", "img"):
        for j, a in enumerate(argv[:-1]):
            if a == f"-{kind}":
                if kind == "mask":
                    d.set("detector.mask_file", argv[j + 1])
                _apply_smv_header(d, base / argv[j + 1], kind)


def _is_number(a: str) -> bool:
    try:
        float(a)
        return True
    except ValueError:
        return False


def _unknown(a: str) -> ArgumentError:
    if a.startswith("-") and len(a) > 1 and not _is_number(a):
        close = difflib.get_close_matches(a, list(FLAGS_BY_NAME), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return ArgumentError(f"unknown flag {a}{hint}", flag=a)
    return ArgumentError(f"unexpected argument {a!r} (not a value of any flag)", flag=a)


def structure_file_given(d: Draft) -> bool:
    """A structure-factor file (-hkl, or our -model / -mtz, which replace it) is on the command line:
    then Fdump.bin, nanoBragg's cache of the last -hkl, is not read (and is written afterwards)."""
    return any(d.get(path) is not None for path in STRUCTURE_FACTOR_FIELDS)


def parse_nanobragg_args(argv: list[str], *, base_dir: Path | str | None = None,
                         allow_fdump: bool = False) -> ParsedArgs:
    """Build a config from nanoBragg flags. ``base_dir`` resolves -img/-mask/Fdump.bin reads."""
    base = Path(base_dir) if base_dir is not None else Path(".")
    d = Draft()
    _preset_headers(d, argv, base)
    tok = Tokens(argv)
    errors: list[ArgumentError] = []
    while tok.i < len(tok.argv):
        start = tok.i
        a = tok.argv[tok.i]
        row = FLAGS_BY_NAME.get(a) if a.startswith("-") else None
        try:
            if row is None:
                raise _unknown(a)
            read_flag(d, tok, a, row)
            tok.i += 1
        except ArgumentError as exc:
            if row is not None and row.fields and row.fields[0] not in str(exc):
                exc.message = f"{exc.message} ({', '.join(row.fields)})"
                exc.args = (exc.message,)
            errors.append(exc)
            tok.i = _next_flag(tok.argv, start)
    if errors:
        # the config's own checks too, where they name a flag that read without error
        try:
            _finish(d, argv)
        except ConfigError as exc:
            if exc.flag is not None and exc.flag not in {e.flag for e in errors}:
                errors.append(exc)
        raise ArgumentError.of(errors)
    if allow_fdump and not structure_file_given(d) and (base / d.dump_name).is_file():
        d.set("structure_factors.hkl_file", d.dump_name)
        d.warnings.append(f"no -hkl given: reading structure factors from {d.dump_name}, "
                          "nanoBragg's cache of the last -hkl file")
    config = _finish(d, argv)
    inputs = {f.field: d.get(f.field) for f in INPUT_FILES if d.get(f.field)}
    return ParsedArgs(config=config, warnings=d.warnings, trace_file=d.trace_file,
                      progress=d.progress, force=d.force, input_files=inputs)


def _next_flag(argv: list[str], start: int) -> int:
    """Where to read on after an error at ``argv[start]``: the next token that looks like a flag
    (a negative number does not); the tokens before it are most likely values of the flag at
    fault, and reporting them too would only repeat its error."""
    i = start + 1
    while i < len(argv) and not (argv[i].startswith("-") and not _is_number(argv[i])):
        i += 1
    return i


def _finish_cell_and_misset(d: Draft) -> None:
    cr = d.cfg["crystal"]
    if d.cell is not None:
        vals = d.cell
        a = vals[0]
        b = vals[1] if len(vals) > 1 and vals[1] > 0 else a
        c = vals[2] if len(vals) > 2 and vals[2] > 0 else a
        ang = [vals[i] if len(vals) > i and vals[i] > 0 else 90.0 for i in (3, 4, 5)]
        cr["cell"] = {"a_A": a, "b_A": b, "c_A": c, "alpha_deg": ang[0], "beta_deg": ang[1],
                      "gamma_deg": ang[2]}
        given, kept = d.cell_given
        full = [a, b, c, *ang]
        if kept or full[:len(given)] != given or len(given) < 6:
            rule = ("the values it leaves out are those of the earlier -cell" if kept else
                    "a missing or non-positive b or c is a, a missing or non-positive angle 90 deg")
            d.warnings.append(f"-cell {' '.join(format_value(x) for x in given)}: completed as "
                              f"nanoBragg does, to the cell {' '.join(format_value(x) for x in full)}"
                              f" (A, deg): {rule}")
    if d.misset == "random":
        cr["misset_random"] = True
    elif d.misset is not None:
        cr["misset_deg"] = d.misset


def _finish_frame(d: Draft) -> None:
    """The convention the flags selected last, and the pivot it keeps."""
    d.set("detector.convention", d.convention)
    if d.convention == "custom":
        d.set("detector.pivot", d.pivot or "beam")
        return
    # a named convention given after a vector flag: its axes replace every vector, as in C
    for path in VECTOR_FIELDS.values():
        section, key = path.split(".")
        if d.cfg[section].pop(key, None) is not None:
            d.warnings.append(f"{path} is ignored: the {d.convention} convention, selected after "
                              "it, sets its own axes (as in nanoBragg)")
    fixed = fixed_pivot(d.convention)
    # only a pivot some flag asked for is worth a word (-dials itself sets the beam pivot in C)
    if d.pivot_flag is not None and d.pivot != fixed:
        d.warnings.append(f"the {d.convention} convention pivots about the {fixed}: the "
                          f"{d.pivot} pivot asked for by {d.pivot_flag} is ignored, as in "
                          "nanoBragg")


def _finish(d: Draft, argv: list[str]) -> SimulationConfig:
    _finish_cell_and_misset(d)
    _finish_frame(d)
    for path, on in d.switches.items():
        if not on:
            d.set(path, None)
    if d.trace_pixels:
        d.set("run.trace_pixels", d.trace_pixels)
    try:
        return SimulationConfig.model_validate(d.cfg)
    except ValidationError as exc:
        errs = validation_errors(exc)
        flags = [flag_for_field(argv, e["field"]) for e in errs]
        each = "; ".join(f"{flag} ({e['field']}): {e['message']}" if flag else
                         f"{e['field']}: {e['message']}" for flag, e in zip(flags, errs))
        raise ConfigError(f"the command line gives an impossible simulation: {each}",
                          field=errs[0]["field"], flag=flags[0]) from exc


def flag_position(argv: list[str], path: str) -> int | None:
    """Index in ``argv`` of the last flag that sets the field ``path`` (None when none does)."""
    names = {n for row in rows_setting(path) for n in row.names}
    hits = [i for i, a in enumerate(argv) if a in names]
    return hits[-1] if hits else None


def flag_for_field(argv: list[str], path: str) -> str | None:
    i = flag_position(argv, path)
    return argv[i] if i is not None else None


# ------------------------------------------------------------------------------------------------
# config -> command line
# ------------------------------------------------------------------------------------------------

def write_flag(config: SimulationConfig, row: Flag, names: dict[str, str], *,
               explicit: bool = False) -> list[str]:
    """The tokens of one row: its own writer, or the table's rule (only a value that differs from
    the model's declared default is written, unless ``explicit``)."""
    if row.write is not None:
        return row.write(config, row, names)
    if not row.writes or len(row.fields) != 1:
        return []
    path = row.fields[0]
    value = get_field(config, path)
    if value == declared_default(path) and not explicit:
        return []
    if row.kind == "switch":
        return [row.name] if value == row.value else []
    if value is None:
        return []
    if row.kind == "file":
        return [row.name, names.get(value, value)]
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [row.name] + [format_value(v) for v in values]


def config_to_args(config: SimulationConfig, *, file_names: dict[str, str] | None = None,
                   outputs: bool | str = True) -> list[str]:
    """A nanoBragg command line (with our extension flags) that reproduces ``config``.

    ``file_names`` maps the config's file references to the names to print (e.g. uploaded ids to
    local file names); ``outputs=False`` leaves the output file names out; ``outputs="explicit"``
    writes every output file name, the default ones too (a series' loop numbers each of them).
    """
    names = file_names or {}
    args: list[str] = []
    for row in FLAGS:
        if row.output and not outputs:
            continue
        args += write_flag(config, row, names, explicit=row.output and outputs == "explicit")
    return args


def format_command(args: list[str], program: str = "nanobragg") -> str:
    return " ".join([program] + [shlex.quote(x) for x in args])


__all__ = ["parse_nanobragg_args", "config_to_args", "format_command", "ParsedArgs",
           "flag_position", "flag_for_field", "EXTENSION_FLAGS"]
