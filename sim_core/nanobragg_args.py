"""nanoBragg command lines <-> :class:`~sim_core.config.SimulationConfig`.

``parse_nanobragg_args`` reads the flags of the C program in order, with its defaults and implicit
rules: a detector or beam vector switches to the CUSTOM convention; ``-xds``, ``-Xclose``, ``-Yclose``,
``-ORGX``, ``-ORGY``, ``-close_distance``, ``-twotheta`` and ``-pivot sample`` select the sample pivot while
``-distance``, ``-Xbeam``, ``-Ybeam`` and the other conventions select the beam pivot (the named
conventions then impose their own pivot); ``-img`` and ``-mask`` headers preset the detector before the
other flags; later flags override earlier ones.

Unlike the C program, flags are matched by their exact names (the C program matches substrings and
silently ignores what it does not know): an unknown flag, a missing or malformed value is an
:class:`~sim_core.errors.ArgumentError` naming the flag. Two substring side effects of the C program
change images and are reproduced, with a warning: ``-misset_seed`` also reads the three following
tokens as misset angles (unless the next contains "rand"), and ``-twotheta_axis`` also sets the
2-theta angle to the axis' first component.

``config_to_args`` is the inverse: a command line that reproduces a config (used for commands.txt).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from .config import SimulationConfig, validation_errors
from .errors import ArgumentError, ConfigError, InputFileError

#: our own flags, in addition to the C program's
EXTENSION_FLAGS = ("-dtype", "-device", "-phi_mode", "-trace_pixel", "-trace_file",
                   "-memory_mb", "-compile", "-model", "-mtz", "-mtz_column", "-dmin_F")


@dataclass
class ParsedArgs:
    config: SimulationConfig
    warnings: list[str] = field(default_factory=list)
    trace_file: str | None = None
    progress: bool = True
    #: files the command line names, by field path (for uploads and checksums)
    input_files: dict[str, str] = field(default_factory=dict)


#: flags that set config fields from one number: flag -> (section, field or fields, kind); kind
#: "num" is a float, "int" an integer (atoi truncates "5.7"), "count" an integer where a negative
#: means 0
_VALUE_FLAGS = {
    "-N": ("crystal", ("Na", "Nb", "Nc"), "int"),
    "-divergence": ("beam", ("hdiv_range_mrad", "vdiv_range_mrad"), "num"),
    "-divsteps": ("beam", ("hdiv_steps", "vdiv_steps"), "count"),
    "-detpixels": ("detector", ("fast_pixels", "slow_pixels"), "int"),
    "-detsize": ("detector", ("size_fast_mm", "size_slow_mm"), "num"),
    "-Na": ("crystal", "Na", "int"), "-Nb": ("crystal", "Nb", "int"),
    "-Nc": ("crystal", "Nc", "int"),
    "-fudge": ("crystal", "fudge", "num"),
    "-mosaic_domains": ("crystal", "mosaic_domains", "count"),
    "-mosaic_dom": ("crystal", "mosaic_domains", "count"),
    "-mosaic_seed": ("crystal", "mosaic_seed", "int"),
    "-phi": ("crystal", "phi_start_deg", "num"), "-osc": ("crystal", "osc_range_deg", "num"),
    "-phistep": ("crystal", "phi_step_deg", "num"), "-phisteps": ("crystal", "phi_steps", "count"),
    "-default_F": ("structure_factors", "default_F", "num"),
    "-dmin_F": ("structure_factors", "dmin_F_A", "num"),
    "-dispersion": ("beam", "dispersion_pct", "num"),
    "-dispsteps": ("beam", "dispersion_steps", "count"),
    "-hdivrange": ("beam", "hdiv_range_mrad", "num"), "-vdivrange": ("beam", "vdiv_range_mrad", "num"),
    "-hdivstep": ("beam", "hdiv_step_mrad", "num"), "-vdivstep": ("beam", "vdiv_step_mrad", "num"),
    "-hdivsteps": ("beam", "hdiv_steps", "count"), "-vdivsteps": ("beam", "vdiv_steps", "count"),
    "-fluence": ("beam", "fluence_photons_per_m2", "num"),
    "-flux": ("beam", "flux_photons_per_s", "num"), "-exposure": ("beam", "exposure_s", "num"),
    "-beamsize": ("beam", "beam_size_mm", "num"),
    "-pixel": ("detector", "pixel_size_mm", "num"),
    "-detpixels_x": ("detector", "fast_pixels", "int"),
    "-detpixels_f": ("detector", "fast_pixels", "int"),
    "-detpixels_y": ("detector", "slow_pixels", "int"),
    "-detpixels_s": ("detector", "slow_pixels", "int"),
    "-detsize_f": ("detector", "size_fast_mm", "num"),
    "-detsize_s": ("detector", "size_slow_mm", "num"),
    "-detector_rotx": ("detector", "rotx_deg", "num"),
    "-detector_roty": ("detector", "roty_deg", "num"),
    "-detector_rotz": ("detector", "rotz_deg", "num"),
    "-detector_thick": ("detector", "thickness_um", "num"),
    "-detector_thicksteps": ("detector", "thickness_steps", "count"),
    "-thicksteps": ("detector", "thickness_steps", "count"),
    "-dmin": ("sampling", "dmin_A", "num"), "-water": ("background", "water_um", "num"),
    "-seed": ("noise", "seed", "int"), "-adc": ("outputs", "adc_offset", "num"),
    "-memory_mb": ("run", "memory_budget_mb", "int"),
}
for _alias in ("-mosaic", "-mosaicity", "-mosaici", "-mosaic_spread", "-mosaic_spr"):
    _VALUE_FLAGS[_alias] = ("crystal", "mosaic_spread_deg", "num")
for _alias in ("-lambda", "-wave", "-wavelength"):
    _VALUE_FLAGS[_alias] = ("beam", "wavelength_A", "num")

#: flags that set a detector length and select a pivot: flag -> (field, pivot)
_PIVOT_FLAGS = {
    "-distance": ("distance_mm", "beam"), "-close_distance": ("close_distance_mm", "sample"),
    "-Xbeam": ("beam_x_mm", "beam"), "-Ybeam": ("beam_y_mm", "beam"),
    "-Xclose": ("close_x_mm", "sample"), "-Yclose": ("close_y_mm", "sample"),
    "-ORGX": ("org_x_px", "sample"), "-ORGY": ("org_y_px", "sample"),
}

#: flags that give a vector and so select the custom convention: flag -> (section, field)
_VECTOR_FLAGS = {
    "-fdet_vector": ("detector", "fdet_vector"), "-sdet_vector": ("detector", "sdet_vector"),
    "-odet_vector": ("detector", "odet_vector"), "-pix0_vector": ("detector", "pix0_vector_m"),
    "-pix0_vector_mm": ("detector", "pix0_vector_m"), "-beam_vector": ("beam", "beam_vector"),
    "-polar_vector": ("beam", "polar_vector"), "-spindle_axis": ("crystal", "spindle_axis"),
}

#: our own flags with a choice of words: flag -> (field of run, choices)
_CHOICE_FLAGS = {
    "-dtype": ("dtype", ("float64", "float32")), "-device": ("device", ("auto", "cpu", "cuda")),
    "-phi_mode": ("phi_mode", ("default", "c-parity")), "-compile": ("compile", ("auto", "on", "off")),
}


class _Tokens:
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


def _num(flag: str, text: str) -> float:
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise ArgumentError(f"{flag}: expected a number, got {text!r}", flag=flag) from None
    if not math.isfinite(x):
        raise ArgumentError(f"{flag}: expected a finite number, got {text!r}", flag=flag)
    return x


def _int(flag: str, text: str) -> int:
    x = _num(flag, text)
    return int(x)  # truncation toward zero, as atoi reads "5.7"


class _Draft:
    """The C program's variables, in the config's units, with None for "not given"."""

    def __init__(self):
        self.cfg: dict = {k: {} for k in ("crystal", "structure_factors", "beam", "detector",
                                          "sampling", "background", "noise", "outputs", "run")}
        self.cell: list[float] | None = None
        self.pivot: str | None = None  # "beam" or "sample", as the flags last set it
        self.convention = "mosflm"
        self.misset: str | tuple | None = None
        self.calculate_noise = True
        self.write_pgm = True
        self.trace_pixels: list[tuple[int, int]] = []
        self.warnings: list[str] = []

    def set(self, section: str, key: str, value):
        self.cfg[section][key] = value


def _apply_smv_header(d: _Draft, path: Path, kind: str):
    """Preset detector values from an SMV header (``-img``/``-mask``), as nanoBragg does."""
    from .io.smv import header_value, read_smv
    try:
        header, img = read_smv(path)
    except FileNotFoundError:
        raise InputFileError(f"-{kind} file {path} not found", path=str(path)) from None
    S, F = img.shape
    det = d.cfg["detector"]
    det["fast_pixels"], det["slow_pixels"] = F, S
    pixel = header_value(header, "PIXEL_SIZE")
    if pixel is not None:
        det["pixel_size_mm"] = pixel
    pixel_mm = det.get("pixel_size_mm", 0.1)
    for key, name in (("DISTANCE", "distance_mm"), ("CLOSE_DISTANCE", "close_distance_mm"),
                      ("ORGX", "org_x_px"), ("ORGY", "org_y_px")):
        v = header_value(header, key)
        if v is not None:
            det[name] = v
    v = header_value(header, "WAVELENGTH")
    if v is not None:
        d.set("beam", "wavelength_A", v)
    v = header_value(header, "BEAM_CENTER_X")
    if v is not None:
        det["beam_x_mm"] = v
    v = header_value(header, "BEAM_CENTER_Y")
    if v is not None:
        det["beam_y_mm"] = (pixel_mm * S - v) if kind == "mask" else v
    v = header_value(header, "PHI")
    if v is not None:
        d.set("crystal", "phi_start_deg", v)
    v = header_value(header, "OSC_RANGE")
    if v is not None:
        d.set("crystal", "osc_range_deg", v)


def _size(d: _Draft, axes: str, value: float):
    for ax in axes:
        d.set("crystal", f"size_{ax}_mm", value)


def parse_nanobragg_args(argv: list[str], *, base_dir: Path | str | None = None,
                         allow_fdump: bool = False) -> ParsedArgs:
    """Build a config from nanoBragg flags. ``base_dir`` resolves -img/-mask/Fdump.bin reads."""
    base = Path(base_dir) if base_dir is not None else Path(".")
    d = _Draft()
    tok = _Tokens(argv)
    trace_file = None
    progress = True
    hkl_given = False
    dump_name = "Fdump.bin"

    # -img and -mask headers preset the detector before every other flag (mask first, then img)
    for kind in ("mask", "img"):
        for j, a in enumerate(argv[:-1]):
            if a == f"-{kind}":
                if kind == "mask":
                    d.set("detector", "mask_file", argv[j + 1])
                _apply_smv_header(d, base / argv[j + 1], kind)

    def vec3(flag):
        return tuple(_num(flag, tok.value(flag, "three numbers")) for _ in range(3))

    handlers: dict[str, Callable[[str], None]] = {}

    def flag(*names):
        def deco(fn):
            for n in names:
                handlers[n] = fn
            return fn
        return deco

    # ---- crystal --------------------------------------------------------------------------------
    @flag("-cell")
    def _(f):
        vals = []
        while len(vals) < 6:
            nxt = tok.peek()
            if nxt is None or nxt.startswith("-"):
                break
            vals.append(_num(f, tok.value(f)))
        if not vals:
            raise ArgumentError("-cell needs the cell: a b c alpha beta gamma", flag=f)
        # like nanoBragg, a later -cell replaces only the values it gives
        old = d.cell or []
        d.cell = vals + old[len(vals):]

    @flag("-misset")
    def _(f):
        nxt = tok.peek()
        if nxt is not None and "rand" in nxt:
            tok.value(f)
            d.misset = "random"
            return
        if tok.remaining() < 3:
            raise ArgumentError("-misset needs three angles (degrees) or 'random'", flag=f)
        d.misset = vec3(f)

    @flag("-misset_seed")
    def _(f):
        nxt = tok.peek()
        # tokens the C program would see: ours (appended after its flags) are not among them
        seen = 0
        while seen < tok.remaining() and tok.peek(seen + 1) not in EXTENSION_FLAGS:
            seen += 1
        if seen >= 3 and not (nxt is not None and "rand" in nxt):
            # nanoBragg matches "-misset" inside "-misset_seed": the next three tokens also
            # become misset angles (atof of a flag is 0)
            angles = []
            for k in (1, 2, 3):
                t = tok.peek(k)
                try:
                    angles.append(float(t))
                except ValueError:
                    angles.append(_atof(t))
            d.misset = tuple(angles)
            d.warnings.append(
                "-misset_seed: as in nanoBragg, the three tokens after -misset_seed are also read as "
                f"misset angles ({angles[0]:g} {angles[1]:g} {angles[2]:g}); put -misset_seed before "
                "-misset to avoid this")
        d.set("crystal", "misset_seed", _int(f, tok.value(f)))

    @flag("-samplesize", "-sample_size", "-xtalsize", "-xtal_size")
    def _(f):
        _size(d, "abc", _num(f, tok.value(f)))

    @flag("-sample_thick", "-sample_x", "-xtal_thick", "-xtal_x")
    def _(f):
        _size(d, "a", _num(f, tok.value(f)))

    @flag("-sample_width", "-sample_y", "-width", "-xtal_width", "-xtal_y")
    def _(f):
        _size(d, "b", _num(f, tok.value(f)))

    @flag("-sample_height", "-sample_heigh", "-sample_z", "-height", "-heigh", "-xtal_height",
          "-xtal_heigh", "-xtal_z")
    def _(f):
        _size(d, "c", _num(f, tok.value(f)))

    @flag("-density", "-sample_density", "-sample_den", "-MW", "-molecular_weight", "-molec")
    def _(f):
        _num(f, tok.value(f))
        d.warnings.append(f"{f} has no effect on the image (nanoBragg only reports it)")

    @flag("-square_xtal", "-round_xtal", "-gauss_xtal", "-tophat_spots", "-binary_spots")
    def _(f):
        shape = {"-square_xtal": "square", "-round_xtal": "round", "-gauss_xtal": "gauss"}.get(
            f, "tophat")
        d.set("crystal", "shape", shape)

    @flag("-hkl")
    def _(f):
        nonlocal hkl_given
        d.set("structure_factors", "hkl_file", tok.value(f, "a file name"))
        hkl_given = True

    # ---- structure factors from a model (PDB / mmCIF) or an MTZ file ----------------------------
    @flag("-model", "-mtz", "-mtz_column")
    def _(f):
        nonlocal hkl_given  # a model or an MTZ file replaces Fdump.bin as -hkl does
        key = {"-model": "model_file", "-mtz": "mtz_file", "-mtz_column": "mtz_column"}[f]
        d.set("structure_factors", key,
              tok.value(f, "a column label" if f == "-mtz_column" else "a file name"))
        hkl_given = hkl_given or f != "-mtz_column"

    @flag("-interpolate")
    def _(f):
        d.set("structure_factors", "interpolate", "on")

    @flag("-nointerpolate")
    def _(f):
        d.set("structure_factors", "interpolate", "off")

    @flag("-mat")
    def _(f):
        d.set("crystal", "matrix_file", tok.value(f, "a file name"))

    @flag("-dump")
    def _(f):
        nonlocal dump_name
        dump_name = tok.value(f, "a file name")

    # ---- beam -----------------------------------------------------------------------------------
    @flag("-energy")
    def _(f):
        e = _num(f, tok.value(f))
        if e <= 0:
            raise ArgumentError(f"-energy must be positive, got {e:g}", flag=f)
        # nanoBragg: lambda0 = (12398.42 / E) / 1e10 metres
        d.set("beam", "wavelength_A", 12398.42 / e)

    @flag("-round_div")
    def _(f):
        d.set("beam", "round_div", True)

    @flag("-square_div")
    def _(f):
        d.set("beam", "round_div", False)

    @flag("-sourcefile")
    def _(f):
        d.set("beam", "source_file", tok.value(f, "a file name"))

    @flag("-source_dist", "-source_distance")
    def _(f):
        _num(f, tok.value(f))
        d.warnings.append(f"{f} is ignored, as nanoBragg ignores it (sources sit 10 m away)")

    @flag("-polar")
    def _(f):
        d.set("beam", "polarization", _num(f, tok.value(f)))
        d.set("beam", "polarization_off", False)

    @flag("-nopolar")
    def _(f):
        d.set("beam", "polarization_off", True)

    @flag("-pivot")
    def _(f):
        v = tok.value(f, "'beam' or 'sample'")
        if "sample" in v:
            d.pivot = "sample"
        elif "beam" in v:
            d.pivot = "beam"
        else:
            d.warnings.append(f"-pivot {v}: neither 'beam' nor 'sample' (lower case), so ignored, "
                              "as nanoBragg ignores it")

    @flag("-mosflm", "-xds", "-adxv", "-denzo", "-dials")
    def _(f):
        d.convention = f[1:]
        d.pivot = "sample" if f == "-xds" else "beam"

    @flag("-twotheta")
    def _(f):
        d.set("detector", "twotheta_deg", _num(f, tok.value(f)))
        d.pivot = "sample"

    @flag("-twotheta_axis")
    def _(f):
        axis = vec3(f)
        # nanoBragg matches "-twotheta" inside "-twotheta_axis": the axis' first component also
        # becomes the 2-theta angle and the pivot becomes the sample
        d.set("detector", "twotheta_deg", axis[0])
        d.pivot = "sample"
        d.set("detector", "twotheta_axis", axis)
        d.convention = "custom"
        d.warnings.append("-twotheta_axis: as in nanoBragg, its first component also sets -twotheta "
                          f"({axis[0]:g} deg) and the sample pivot; give -twotheta after it")

    @flag("-curved_det", "-curved_detector")
    def _(f):
        if tok.remaining() == 0:
            # nanoBragg only honours it when another argument follows
            d.warnings.append(f"{f} is ignored as the last argument, as nanoBragg ignores it; "
                              "put it before another flag for a curved detector")
            return
        d.set("detector", "curved", True)

    @flag("-point_pixel")
    def _(f):
        d.set("detector", "point_pixel", True)

    @flag("-detector_abs", "-detector_absorb", "-detector_absorption")
    def _(f):
        v = tok.value(f, "an attenuation length (um) or 'inf'")
        if "inf" in v or _num(f, v) == 0.0:
            d.set("detector", "thickness_um", 0.0)
            d.set("detector", "absorption_length_um", 0.0)
        else:
            d.set("detector", "absorption_length_um", _num(f, v))

    @flag("-mask")
    def _(f):
        d.set("detector", "mask_file", tok.value(f, "a file name"))

    @flag("-img")
    def _(f):
        tok.value(f, "a file name")

    # ---- sampling, background ---------------------------------------------------------------------
    @flag("-oversample")
    def _(f):
        n = _int(f, tok.value(f))
        d.set("sampling", "oversample", n if n > 0 else None)

    @flag("-oversample_thick", "-oversample_polar", "-oversample_omega")
    def _(f):
        d.set("sampling", f[1:], True)

    @flag("-roi")
    def _(f):
        d.set("sampling", "roi", tuple(_int(f, tok.value(f, "xmin xmax ymin ymax"))
                                       for _ in range(4)))

    for _name, _key in (("-floatfile", "float_file"), ("-floatimage", "float_file"),
                        ("-intfile", "int_file"), ("-intimage", "int_file"),
                        ("-noisefile", "noise_file"), ("-noiseimage", "noise_file"),
                        ("-pgmfile", "pgm_file"), ("-pgmimage", "pgm_file")):
        def _mk6(key):
            def h(f):
                d.set("outputs", key, tok.value(f, "a file name"))
                if key == "noise_file":
                    d.calculate_noise = True
                if key == "pgm_file":
                    d.write_pgm = True
            return h
        handlers[_name] = _mk6(_key)

    @flag("-nonoise")
    def _(f):
        d.calculate_noise = False

    @flag("-nopgm")
    def _(f):
        d.write_pgm = False

    @flag("-scale")
    def _(f):
        v = _num(f, tok.value(f))
        d.set("outputs", "int_scale", v if v > 0 else None)

    @flag("-pgmscale")
    def _(f):
        v = _num(f, tok.value(f))
        d.set("outputs", "pgm_scale", v if v > 0 else None)
        d.write_pgm = True

    @flag("-printout", "-coherent")
    def _(f):
        pass

    @flag("-printout_pixel")
    def _(f):
        tok.value(f, "fast and slow pixel")
        tok.value(f, "fast and slow pixel")

    @flag("-stol", "-4stol", "-Q", "-stolout")
    def _(f):
        tok.value(f, "a file name")
        d.warnings.append(f"{f} has no effect on the image and is ignored")

    @flag("-noprogress", "-progress")
    def _(f):
        nonlocal progress
        progress = f == "-progress"

    # ---- our extensions ---------------------------------------------------------------------------
    @flag("-trace_pixel")
    def _(f):
        s = _int(f, tok.value(f, "slow and fast pixel"))
        fast = _int(f, tok.value(f, "slow and fast pixel"))
        if s < 0 or fast < 0:
            raise ArgumentError(f"-trace_pixel: pixel indices must be >= 0, got {s} {fast}", flag=f)
        d.trace_pixels.append((s, fast))

    @flag("-trace_file")
    def _(f):
        nonlocal trace_file
        trace_file = tok.value(f, "a file name")

    # ---- table-driven flags ------------------------------------------------------------------
    def _value_flag(f):
        section, keys, kind = _VALUE_FLAGS[f]
        text = tok.value(f)
        v = _num(f, text) if kind == "num" else _int(f, text)
        for key in (keys,) if isinstance(keys, str) else keys:
            d.set(section, key, max(0, v) if kind == "count" else v)

    def _pivot_flag(f):
        key, pivot = _PIVOT_FLAGS[f]
        d.set("detector", key, _num(f, tok.value(f)))
        d.pivot = pivot

    def _vector_flag(f):
        section, key = _VECTOR_FLAGS[f]
        d.set(section, key, vec3(f))
        d.convention = "custom"

    def _choice_flag(f):
        key, choices = _CHOICE_FLAGS[f]
        v = tok.value(f, " or ".join(choices))
        if v not in choices:
            raise ArgumentError(f"{f}: expected {', '.join(choices[:-1])} or {choices[-1]}, "
                                f"got {v!r}", flag=f)
        d.set("run", key, v)

    for table, fn in ((_VALUE_FLAGS, _value_flag), (_PIVOT_FLAGS, _pivot_flag),
                      (_VECTOR_FLAGS, _vector_flag), (_CHOICE_FLAGS, _choice_flag)):
        for name in table:
            handlers[name] = fn

    while tok.i < len(tok.argv):
        a = tok.argv[tok.i]
        if a.startswith("-") and a in handlers:
            handlers[a](a)
        elif a.startswith("-") and len(a) > 1 and not _is_number(a):
            raise ArgumentError(f"unknown flag {a}" + _suggest(a, handlers), flag=a)
        else:
            raise ArgumentError(f"unexpected argument {a!r} (not a value of any flag)", flag=a)
        tok.i += 1

    warnings = d.warnings
    if not hkl_given and allow_fdump and (base / dump_name).is_file():
        d.set("structure_factors", "hkl_file", dump_name)
        warnings.append(f"no -hkl given: reading structure factors from {dump_name}, nanoBragg's "
                        "cache of the last -hkl file")
    return ParsedArgs(config=_finish(d), warnings=warnings, trace_file=trace_file,
                      progress=progress, input_files=_inputs(d))


def _atof(text: str | None) -> float:
    """C's atof: the longest numeric prefix, 0 when there is none."""
    if not text:
        return 0.0
    best = 0.0
    for end in range(len(text), 0, -1):
        try:
            return float(text[:end])
        except ValueError:
            continue
    return best


def _is_number(a: str) -> bool:
    try:
        float(a)
        return True
    except ValueError:
        return False


def _suggest(a: str, handlers) -> str:
    import difflib
    close = difflib.get_close_matches(a, list(handlers), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _inputs(d: _Draft) -> dict[str, str]:
    out = {}
    for section, key in (("crystal", "matrix_file"), ("structure_factors", "hkl_file"),
                         ("structure_factors", "model_file"), ("structure_factors", "mtz_file"),
                         ("beam", "source_file"), ("detector", "mask_file")):
        v = d.cfg[section].get(key)
        if v:
            out[f"{section}.{key}"] = v
    return out


def _finish(d: _Draft) -> SimulationConfig:
    cfg = d.cfg
    cr = cfg["crystal"]
    if d.cell is not None:
        vals = d.cell
        a = vals[0]
        b = vals[1] if len(vals) > 1 and vals[1] > 0 else a
        c = vals[2] if len(vals) > 2 and vals[2] > 0 else a
        ang = [vals[i] if len(vals) > i and vals[i] > 0 else 90.0 for i in (3, 4, 5)]
        cr["cell"] = {"a_A": a, "b_A": b, "c_A": c, "alpha_deg": ang[0], "beta_deg": ang[1],
                      "gamma_deg": ang[2]}
    if d.misset == "random":
        cr["misset_random"] = True
    elif d.misset is not None:
        cr["misset_deg"] = d.misset
    det = cfg["detector"]
    det["convention"] = d.convention
    if d.convention != "custom":
        # a named convention given after a vector flag: its axes replace every vector, as in C
        for section, key in (("detector", "fdet_vector"), ("detector", "sdet_vector"),
                             ("detector", "odet_vector"), ("detector", "pix0_vector_m"),
                             ("detector", "twotheta_axis"), ("beam", "beam_vector"),
                             ("beam", "polar_vector"), ("crystal", "spindle_axis")):
            if cfg[section].pop(key, None) is not None:
                d.warnings.append(f"{section}.{key} is ignored: the {d.convention} convention, "
                                  "selected after it, sets its own axes (as in nanoBragg)")
    if d.convention == "custom":
        det["pivot"] = d.pivot or "beam"
    else:
        fixed = "sample" if d.convention in ("xds", "dials") else "beam"
        if d.pivot is not None and d.pivot != fixed:
            d.warnings.append(f"the {d.convention} convention pivots about the {fixed}: the "
                              f"{d.pivot} pivot asked for by the flags is ignored, as in nanoBragg")
    out = cfg["outputs"]
    if not d.calculate_noise:
        out["noise_file"] = None
    if not d.write_pgm:
        out["pgm_file"] = None
    if d.trace_pixels:
        cfg["run"]["trace_pixels"] = d.trace_pixels
    try:
        return SimulationConfig.model_validate(cfg)
    except ValidationError as exc:
        errs = validation_errors(exc)
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errs)
        raise ConfigError(f"the command line gives an impossible simulation: {text}",
                          field=errs[0]["field"]) from exc


# ------------------------------------------------------------------------------------------------
# config -> command line
# ------------------------------------------------------------------------------------------------

def _g(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e15 else repr(x)


def config_to_args(config: SimulationConfig, *, file_names: dict[str, str] | None = None,
                   outputs: bool = True) -> list[str]:
    """A nanoBragg command line (with our extension flags) that reproduces ``config``.

    ``file_names`` maps the config's file references to the names to print (e.g. uploaded ids to
    local file names).
    """
    names = file_names or {}
    cr, sf, bm, det = config.crystal, config.structure_factors, config.beam, config.detector
    smp, run = config.sampling, config.run
    a: list[str] = []

    def add(flag, *vals):
        a.append(flag)
        a.extend(v if isinstance(v, str) else _g(v) for v in vals)

    # convention first: vector flags later switch to custom, as in the C program
    if det.convention != "custom":
        add(f"-{det.convention}")
    if cr.cell is not None:
        c = cr.cell
        add("-cell", c.a_A, c.b_A, c.c_A, c.alpha_deg, c.beta_deg, c.gamma_deg)
    if cr.matrix_file:
        add("-mat", names.get(cr.matrix_file, cr.matrix_file))
    if cr.misset_random:
        if cr.misset_seed is not None:
            add("-misset_seed", cr.misset_seed)
        add("-misset", "random")
    elif cr.misset_deg is not None:
        add("-misset", *cr.misset_deg)
    add("-Na", cr.Na)
    add("-Nb", cr.Nb)
    add("-Nc", cr.Nc)
    for ax, flag in (("a", "-xtal_x"), ("b", "-xtal_y"), ("c", "-xtal_z")):
        v = getattr(cr, f"size_{ax}_mm")
        if v is not None:
            add(flag, v)
    if cr.shape != "square":
        add({"round": "-round_xtal", "gauss": "-gauss_xtal", "tophat": "-tophat_spots"}[cr.shape])
    if cr.fudge != 1.0:
        add("-fudge", cr.fudge)
    if cr.mosaic_spread_deg is not None:
        add("-mosaic", cr.mosaic_spread_deg)
    if cr.mosaic_domains is not None:
        add("-mosaic_domains", cr.mosaic_domains)
    if cr.mosaic_seed != 12345678:
        add("-mosaic_seed", cr.mosaic_seed)
    if cr.phi_start_deg != 0.0:
        add("-phi", cr.phi_start_deg)
    if cr.osc_range_deg is not None:
        add("-osc", cr.osc_range_deg)
    if cr.phi_step_deg is not None:
        add("-phistep", cr.phi_step_deg)
    if cr.phi_steps is not None:
        add("-phisteps", cr.phi_steps)
    if sf.hkl_file:
        add("-hkl", names.get(sf.hkl_file, sf.hkl_file))
    for key, flag in (("model_file", "-model"), ("mtz_file", "-mtz")):
        if getattr(sf, key):
            add(flag, names.get(getattr(sf, key), getattr(sf, key)))
    if sf.mtz_column:
        add("-mtz_column", sf.mtz_column)
    if sf.dmin_F_A is not None:
        add("-dmin_F", sf.dmin_F_A)
    if sf.default_F != 0.0:
        add("-default_F", sf.default_F)
    if sf.interpolate != "auto":
        add("-interpolate" if sf.interpolate == "on" else "-nointerpolate")
    add("-lambda", bm.wavelength_A)
    if bm.dispersion_pct != 0.0:
        add("-dispersion", bm.dispersion_pct)
    if bm.dispersion_steps is not None:
        add("-dispsteps", bm.dispersion_steps)
    for key, flag in (("hdiv_range_mrad", "-hdivrange"), ("vdiv_range_mrad", "-vdivrange"),
                      ("hdiv_step_mrad", "-hdivstep"), ("vdiv_step_mrad", "-vdivstep"),
                      ("hdiv_steps", "-hdivsteps"), ("vdiv_steps", "-vdivsteps")):
        v = getattr(bm, key)
        if v is not None:
            add(flag, v)
    if not bm.round_div:
        add("-square_div")
    if bm.source_file:
        add("-sourcefile", names.get(bm.source_file, bm.source_file))
    if bm.polarization_off:
        add("-nopolar")
    elif bm.polarization != 0.0:
        add("-polar", bm.polarization)
    add("-fluence", bm.fluence_photons_per_m2)
    if bm.flux_photons_per_s != 0.0:
        add("-flux", bm.flux_photons_per_s)
    if bm.exposure_s != 1.0:
        add("-exposure", bm.exposure_s)
    if bm.beam_size_mm != 0.1:
        add("-beamsize", bm.beam_size_mm)
    # detector
    add("-pixel", det.pixel_size_mm)
    if det.fast_pixels is not None:
        add("-detpixels_x", det.fast_pixels)
    if det.slow_pixels is not None:
        add("-detpixels_y", det.slow_pixels)
    if det.size_fast_mm != 102.4:
        add("-detsize_f", det.size_fast_mm)
    if det.size_slow_mm != 102.4:
        add("-detsize_s", det.size_slow_mm)
    for key, flag in (("fdet_vector", "-fdet_vector"), ("sdet_vector", "-sdet_vector"),
                      ("odet_vector", "-odet_vector"), ("pix0_vector_m", "-pix0_vector")):
        v = getattr(det, key)
        if v is not None:
            add(flag, *v)
    if det.twotheta_axis is not None:
        add("-twotheta_axis", *det.twotheta_axis)
    if bm.beam_vector is not None:
        add("-beam_vector", *bm.beam_vector)
    if bm.polar_vector is not None:
        add("-polar_vector", *bm.polar_vector)
    if cr.spindle_axis is not None:
        add("-spindle_axis", *cr.spindle_axis)
    if det.convention == "custom" and "-fdet_vector" not in a and not any(
            f in a for f in ("-sdet_vector", "-odet_vector", "-pix0_vector", "-twotheta_axis",
                             "-beam_vector", "-polar_vector", "-spindle_axis")):
        add("-fdet_vector", 0, 0, 1)  # nanoBragg's default: selects CUSTOM, changes nothing else
    for key, flag in (("rotx_deg", "-detector_rotx"), ("roty_deg", "-detector_roty"),
                      ("rotz_deg", "-detector_rotz")):
        v = getattr(det, key)
        if v != 0.0:
            add(flag, v)
    if det.twotheta_deg != 0.0 or det.twotheta_axis is not None:
        add("-twotheta", det.twotheta_deg)
    for key, flag in (("beam_x_mm", "-Xbeam"), ("beam_y_mm", "-Ybeam"), ("close_x_mm", "-Xclose"),
                      ("close_y_mm", "-Yclose"), ("org_x_px", "-ORGX"), ("org_y_px", "-ORGY")):
        v = getattr(det, key)
        if v is not None:
            add(flag, v)
    if det.distance_mm is not None:
        add("-distance", det.distance_mm)
    if det.close_distance_mm is not None:
        add("-close_distance", det.close_distance_mm)
    if det.convention == "custom":
        add("-pivot", det.pivot or "beam")
    if det.curved:
        add("-curved_det")
    if det.point_pixel:
        add("-point_pixel")
    if det.thickness_um:
        add("-detector_thick", det.thickness_um)
    if det.absorption_length_um is not None and det.absorption_length_um > 0:
        add("-detector_abs", det.absorption_length_um)
    if det.thickness_steps is not None:
        add("-thicksteps", det.thickness_steps)
    if det.mask_file:
        add("-mask", names.get(det.mask_file, det.mask_file))
    if smp.oversample is not None:
        add("-oversample", smp.oversample)
    for key in ("oversample_thick", "oversample_polar", "oversample_omega"):
        if getattr(smp, key):
            add(f"-{key}")
    if smp.roi is not None:
        add("-roi", *smp.roi)
    if smp.dmin_A:
        add("-dmin", smp.dmin_A)
    if config.background.water_um:
        add("-water", config.background.water_um)
    if config.noise.seed is not None:
        add("-seed", config.noise.seed)
    out = config.outputs
    if outputs:
        for key, flag in (("float_file", "-floatfile"), ("int_file", "-intfile"),
                          ("pgm_file", "-pgmfile"), ("noise_file", "-noisefile")):
            v = getattr(out, key)
            if v is not None:
                add(flag, v)
        if out.noise_file is None:
            add("-nonoise")
        if out.pgm_file is None:
            add("-nopgm")
    if out.int_scale is not None:
        add("-scale", out.int_scale)
    if out.pgm_scale is not None and out.pgm_file is not None:
        add("-pgmscale", out.pgm_scale)
    if out.adc_offset != 40.0:
        add("-adc", out.adc_offset)
    if run.dtype != "float64":
        add("-dtype", run.dtype)
    if run.phi_mode != "default":
        add("-phi_mode", run.phi_mode)
    if run.compile != "auto":
        add("-compile", run.compile)
    for s, f in run.trace_pixels:
        add("-trace_pixel", s, f)
    return a


def format_command(args: list[str], program: str = "nanobragg") -> str:
    return " ".join([program] + [shlex.quote(x) for x in args])
