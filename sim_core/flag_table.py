"""nanoBragg's command-line flags, each declared once.

A row (:class:`Flag`) says which config field(s) the flag sets, how its values read (``kind``) and how
many there are. ``parse_nanobragg_args`` and ``config_to_args`` (``sim_core.nanobragg_args``) both walk
this table: the parser looks flags up by name and alias, the writer goes through the rows in table
order and writes a row's flag only where the config's value differs from the model's declared
default. Behaviour that is not "set these fields to these values" is a named function (``read=``,
``write=``) below, each with the C program's reason.

Adding a flag is adding a row. Rows whose ``fields`` name several fields (``-N``) or that only read
(``write=False``) never write: another row writes those fields one by one. The input files of
``sim_core.inputs`` become rows of their own (``-hkl``, ``-mat``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .config import SimulationConfig, get_field
from .errors import ArgumentError
from .inputs import INPUT_FILES
from .lab_frame import given_vectors

#: the distributions of a shot-to-shot variation (config.ShotDistribution)
SHOT_KINDS = ("normal", "uniform", "lognormal")
#: value kinds: how one token reads (see read_value)
KINDS = ("num", "int", "count", "pos_or_none", "posint_or_none", "str", "file", "choice", "switch",
         "ignored")


@dataclass(frozen=True)
class Flag:
    name: str
    #: config field paths the value goes to (the same value to each)
    fields: tuple[str, ...] = ()
    #: how each value token reads: num (a finite float), int (atoi truncation), count (an int where
    #: a negative means 0), pos_or_none / posint_or_none (0 or less: not given), str, file (an
    #: input file name), choice (one of ``choices``), switch (no token: sets ``value``), ignored
    kind: str = "num"
    #: how many value tokens follow the flag
    nargs: int = 1
    aliases: tuple[str, ...] = ()
    #: the value a switch sets
    value: Any = None
    choices: tuple[str, ...] = ()
    #: the detector pivot the flag selects (nanoBragg's flags do; only the custom convention keeps it)
    pivot: Optional[str] = None
    #: giving the flag selects the custom convention (the lab vectors)
    custom: bool = False
    #: a warning for flags that change nothing
    note: str = ""
    #: the C program's own reading, when it is more than setting the fields: fn(draft, tokens, flag)
    read: Optional[Callable] = None
    #: the writer, when it is more than the default rule: fn(config, row, names) -> tokens
    write: Optional[Callable] = None
    #: False: the flag is only read (another row writes its fields)
    writes: bool = True
    #: an output file name (config_to_args(outputs=False) leaves these out)
    output: bool = False
    #: one of our own flags, not the C program's
    ours: bool = False
    what: str = field(default="", compare=False)
    #: the one-line description ``nanobragg -help`` prints
    help: str = field(default="", compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) + self.aliases


# -- values -----------------------------------------------------------------------------------------
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
    if abs(x) >= 2.0 ** 63:
        raise ArgumentError(f"{flag}: {text} is out of range of a C long", flag=flag)
    return int(x)  # truncation toward zero, as atoi reads "5.7"


def read_value(row: Flag, flag: str, text: str):
    """One value token of ``row`` as the config takes it."""
    kind = row.kind
    if kind in ("str", "file", "ignored"):
        return text
    if kind == "choice":
        if text not in row.choices:
            ch = row.choices
            raise ArgumentError(f"{flag}: expected {', '.join(ch[:-1])} or {ch[-1]}, got {text!r}",
                                flag=flag)
        return text
    if kind == "num":
        return _num(flag, text)
    if kind == "pos_or_none":
        v = _num(flag, text)
        return v if v > 0 else None
    v = _int(flag, text)
    if kind == "count":
        return max(0, v)
    if kind == "posint_or_none":
        return v if v > 0 else None
    return v


def format_value(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int):
        return str(x)
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def what(row: Flag) -> str:
    """The values a flag needs, for messages."""
    if row.what:
        return row.what
    if row.kind == "choice":
        return " or ".join(row.choices)
    if row.kind in ("file",):
        return "a file name"
    return "a value" if row.nargs == 1 else f"{row.nargs} values"


# -- the C program's quirks: readers ------------------------------------------------------------------
def read_cell(d, tok, flag):
    """Up to six numbers; like nanoBragg, a later -cell replaces only the values it gives."""
    vals = []
    while len(vals) < 6:
        nxt = tok.peek()
        if nxt is None or nxt.startswith("-"):
            break
        vals.append(_num(flag, tok.value(flag)))
    if not vals:
        raise ArgumentError("-cell needs the cell: a b c alpha beta gamma", flag=flag)
    old = d.cell or []
    d.cell = vals + old[len(vals):]
    # what the user typed, for the warning when nanoBragg's rules complete it (nanobragg_args)
    d.cell_given = (vals, len(old) > len(vals))


def read_misset(d, tok, flag):
    """Three angles in degrees, or ``random`` (any word containing "rand")."""
    nxt = tok.peek()
    if nxt is not None and "rand" in nxt:
        tok.value(flag)
        d.misset = "random"
        return
    if tok.remaining() < 3 or any(tok.peek(k) in FLAGS_BY_NAME for k in (1, 2, 3)):
        raise ArgumentError("-misset needs three angles (degrees) or 'random'", flag=flag)
    d.misset = tuple(_num(flag, tok.value(flag)) for _ in range(3))


def _atof(text: str | None) -> float:
    """C's atof: the longest numeric prefix, 0 when there is none."""
    for end in range(len(text or ""), 0, -1):
        try:
            return float(text[:end])
        except ValueError:
            continue
    return 0.0


def read_misset_seed(d, tok, flag):
    """nanoBragg matches "-misset" inside "-misset_seed": unless the next token contains "rand", the
    three tokens after the flag also become misset angles (atof of a flag is 0). Only the tokens the C
    program would see count: ours (written after its flags) are not among them."""
    nxt = tok.peek()
    seen = 0
    while seen < tok.remaining() and tok.peek(seen + 1) not in OUR_FLAGS:
        seen += 1
    if seen >= 3 and not (nxt is not None and "rand" in nxt):
        angles = tuple(_atof(tok.peek(k)) for k in (1, 2, 3))
        d.misset = angles
        d.warnings.append(
            "-misset_seed: as in nanoBragg, the three tokens after -misset_seed are also read as "
            f"misset angles ({angles[0]:g} {angles[1]:g} {angles[2]:g}); put -misset_seed before "
            "-misset to avoid this")
    d.set("crystal.misset_seed", _int(flag, tok.value(flag)))


def read_energy(d, tok, flag):
    """Photon energy in eV; nanoBragg: lambda0 = (12398.42 / E) / 1e10 metres."""
    e = _num(flag, tok.value(flag))
    if e <= 0:
        raise ArgumentError(f"-energy must be positive, got {e:g}", flag=flag)
    d.set("beam.wavelength_A", 12398.42 / e)


def read_polar(d, tok, flag):
    """-polar sets the Kahn factor and switches a -nopolar given before it off again."""
    d.set("beam.polarization", _num(flag, tok.value(flag)))
    d.set("beam.polarization_off", False)


def read_pivot(d, tok, flag):
    """nanoBragg looks for the lower-case words "sample" or "beam" in the value; else it ignores it."""
    v = tok.value(flag, "'beam' or 'sample'")
    if "sample" in v:
        d.pivot, d.pivot_flag = "sample", flag
    elif "beam" in v:
        d.pivot, d.pivot_flag = "beam", flag
    else:
        d.warnings.append(f"-pivot {v}: neither 'beam' nor 'sample' (lower case), so ignored, "
                          "as nanoBragg ignores it")


def read_convention(d, tok, flag):
    """A named convention; its flag also sets the pivot nanoBragg's parser sets with it."""
    d.convention = flag[1:]
    d.pivot = "sample" if flag == "-xds" else "beam"
    d.pivot_flag = None


def read_twotheta_axis(d, tok, flag):
    """nanoBragg matches "-twotheta" inside "-twotheta_axis": the axis' first component also becomes
    the 2-theta angle, and the pivot becomes the sample."""
    axis = tuple(_num(flag, tok.value(flag, "three numbers")) for _ in range(3))
    d.set("detector.twotheta_deg", axis[0])
    d.pivot, d.pivot_flag = "sample", flag
    d.set("detector.twotheta_axis", axis)
    d.convention = "custom"
    d.warnings.append("-twotheta_axis: as in nanoBragg, its first component also sets -twotheta "
                      f"({axis[0]:g} deg) and the sample pivot; give -twotheta after it")


def read_curved(d, tok, flag):
    """nanoBragg only honours -curved_det when another argument follows it."""
    if tok.remaining() == 0:
        d.warnings.append(f"{flag} is ignored as the last argument, as nanoBragg ignores it; "
                          "put it before another flag for a curved detector")
        return
    d.set("detector.curved", True)


def read_detector_abs(d, tok, flag):
    """An attenuation length in µm; "inf" or 0 switch absorption off (and zero the thickness)."""
    v = tok.value(flag, "an attenuation length (um) or 'inf'")
    if "inf" in v or _num(flag, v) == 0.0:
        d.set("detector.thickness_um", 0.0)
        d.set("detector.absorption_length_um", 0.0)
    else:
        d.set("detector.absorption_length_um", _num(flag, v))


def read_output_file(d, tok, flag):
    """Naming the noise or PGM file also switches that output back on (after -nonoise, -nopgm)."""
    row = FLAGS_BY_NAME[flag]
    d.set(row.fields[0], tok.value(flag, "a file name"))
    d.switches[row.fields[0]] = True


def read_output_off(d, tok, flag):
    d.switches[FLAGS_BY_NAME[flag].fields[0]] = False


def read_pgmscale(d, tok, flag):
    """-pgmscale also switches the PGM image on, as in nanoBragg."""
    v = _num(flag, tok.value(flag))
    d.set("outputs.pgm_scale", v if v > 0 else None)
    d.switches["outputs.pgm_file"] = True


def read_trace_pixel(d, tok, flag):
    s = _int(flag, tok.value(flag, "slow and fast pixel"))
    f = _int(flag, tok.value(flag, "slow and fast pixel"))
    if s < 0 or f < 0:
        raise ArgumentError(f"-trace_pixel: pixel indices must be >= 0, got {s} {f}", flag=flag)
    d.trace_pixels.append((s, f))


def read_into_draft(attr: str):
    """A reader that keeps the value on the parse (not in the config): -trace_file, -dump."""
    def read(d, tok, flag):
        setattr(d, attr, tok.value(flag, "a file name"))
    read.__name__ = f"read_{attr}"
    return read


def read_progress(d, tok, flag):
    d.progress = flag == "-progress"


def read_force(d, tok, flag):
    """Our -force: render even what the price check (sim_core.preflight) would refuse."""
    d.force = True


# -- the C program's quirks: writers -------------------------------------------------------------------
def declared_default(path: str):
    """The default the config model declares for a field."""
    section, *rest = path.split(".")
    model = SimulationConfig.model_fields[section].default
    for part in rest[:-1]:
        model = getattr(model, part)
    return type(model).model_fields[rest[-1]].default


def write_convention(config, row, names):
    """A named convention other than the default, first: vector flags after it switch to custom. A
    custom config that gives no vector selects custom with nanoBragg's own fast axis."""
    conv = config.detector.convention
    if conv == "custom":
        return [] if given_vectors(config) else ["-fdet_vector", "0", "0", "1"]
    return [] if conv == declared_default("detector.convention") else [f"-{conv}"]


def write_cell(config, row, names):
    c = config.crystal.cell
    if c is None:
        return []
    return ["-cell"] + [format_value(x) for x in (c.a_A, c.b_A, c.c_A, c.alpha_deg, c.beta_deg,
                                                   c.gamma_deg)]


def write_misset(config, row, names):
    """-misset_seed goes before -misset random (after it, it would read the next tokens as angles)."""
    cr = config.crystal
    if cr.misset_random:
        seed = [] if cr.misset_seed is None else ["-misset_seed", format_value(cr.misset_seed)]
        return seed + ["-misset", "random"]
    if cr.misset_deg is not None:
        return ["-misset"] + [format_value(x) for x in cr.misset_deg]
    return []


def write_misset_seed_alone(config, row, names):
    """A seed without a random misset: written after every other nanoBragg flag, where no three
    tokens of the C program follow it (see read_misset_seed)."""
    cr = config.crystal
    if cr.misset_random or cr.misset_seed is None:
        return []
    return ["-misset_seed", format_value(cr.misset_seed)]


def write_twotheta(config, row, names):
    """After -twotheta_axis (which sets the angle to the axis' first component), always."""
    det = config.detector
    if det.twotheta_deg == 0.0 and det.twotheta_axis is None:
        return []
    return ["-twotheta", format_value(det.twotheta_deg)]


def write_pivot(config, row, names):
    """The custom convention's pivot, after every flag that selects one."""
    det = config.detector
    return ["-pivot", det.pivot or "beam"] if det.convention == "custom" else []


def write_detector_abs(config, row, names):
    """Before -detector_thick: "-detector_abs 0" also zeroes the thickness."""
    v = config.detector.absorption_length_um
    return [] if v is None else ["-detector_abs", format_value(v)]


def write_output_off(config, row, names):
    return [row.name] if get_field(config, row.fields[0]) is None else []


def write_pgmscale(config, row, names):
    out = config.outputs
    if out.pgm_scale is None or out.pgm_file is None:
        return []
    return ["-pgmscale", format_value(out.pgm_scale)]


def write_trace_pixels(config, row, names):
    out = []
    for s, f in config.run.trace_pixels:
        out += ["-trace_pixel", str(s), str(f)]
    return out


def read_shot(d, tok, flag):
    """A shot-to-shot distribution: its kind (normal, uniform, lognormal), center and width."""
    kind = tok.value(flag, "a distribution (normal, uniform or lognormal), its center and width")
    if kind not in SHOT_KINDS:
        raise ArgumentError(f"{flag}: expected normal, uniform or lognormal, got {kind!r}",
                            flag=flag)
    center, width = (_num(flag, tok.value(flag, "the center and width of the distribution"))
                     for _ in range(2))
    d.set(FLAGS_BY_NAME[flag].fields[0], {"kind": kind, "center": center, "width": width})


def write_shot(config, row, names):
    dist = get_field(config, row.fields[0])
    if dist is None:
        return []
    return [row.name, dist.kind, format_value(dist.center), format_value(dist.width)]


def never(config, row, names):
    return []


# -- the table ----------------------------------------------------------------------------------------
def _num_rows(fields_by_flag: dict[str, tuple[str, str]], **kw) -> list[Flag]:
    """Rows of one kind: flag -> (field, help)."""
    return [Flag(name, (path,), help=text, **kw) for name, (path, text) in fields_by_flag.items()]


def _switches(path: str, values: dict[str, tuple[Any, str]]) -> list[Flag]:
    """Switches of one field: flag -> (value, help)."""
    return [Flag(name, (path,), "switch", 0, value=v, help=text)
            for name, (v, text) in values.items()]


def _ignored(names: tuple[str, ...], nargs: int, note: str, what: str = "", *, help: str) -> Flag:
    return Flag(names[0], (), "ignored", nargs, aliases=names[1:], note=note, what=what,
                writes=False, help=help)


_NO_EFFECT = "{flag} has no effect on the image (nanoBragg only reports it)"
_FILE_ROWS = [Flag(f.flag, (f.field,), "file", ours=f.ours, help=f.help)
              for f in INPUT_FILES]
_FILE_ROW = {r.name: r for r in _FILE_ROWS}

FLAGS: tuple[Flag, ...] = (
    # -- lab frame and detector switches that must come first -----------------------------------------
    Flag("-mosflm", ("detector.convention",), "switch", 0, value="mosflm",
         aliases=("-xds", "-adxv", "-denzo", "-dials"), read=read_convention,
         write=write_convention,
         help="the detector convention (axes, beam centre, pivot) of that program; -mosflm by default"),
    Flag("-curved_det", ("detector.curved",), "switch", 0, value=True,
         aliases=("-curved_detector",), read=read_curved,
         help="a spherical detector: every pixel at the same distance from the sample"),
    # -- crystal ----------------------------------------------------------------------------------------
    Flag("-cell", ("crystal.cell",), nargs=6, read=read_cell, write=write_cell,
         what="a b c (A) alpha beta gamma (deg)",
         help="the unit cell; fewer values are completed as nanoBragg does (with a warning)"),
    _FILE_ROW["-mat"],
    Flag("-misset", ("crystal.misset_deg", "crystal.misset_random"), nargs=3, read=read_misset,
         write=write_misset, what="three angles (degrees) or 'random'",
         help="misorientation of the crystal: rotations about x, y and z, or a random one"),
    *_num_rows({"-Na": ("crystal.Na", "unit cells along a"),
                "-Nb": ("crystal.Nb", "unit cells along b"),
                "-Nc": ("crystal.Nc", "unit cells along c")}, kind="int"),
    Flag("-N", ("crystal.Na", "crystal.Nb", "crystal.Nc"), "int",
         help="unit cells along a, b and c"),
    Flag("-xtal_x", ("crystal.size_a_mm",), aliases=("-sample_thick", "-sample_x", "-xtal_thick"),
         help="crystal size along a (mm), instead of -Na"),
    Flag("-xtal_y", ("crystal.size_b_mm",),
         aliases=("-sample_width", "-sample_y", "-width", "-xtal_width"),
         help="crystal size along b (mm), instead of -Nb"),
    Flag("-xtal_z", ("crystal.size_c_mm",),
         aliases=("-sample_height", "-sample_heigh", "-sample_z", "-height", "-heigh",
                  "-xtal_height", "-xtal_heigh"),
         help="crystal size along c (mm), instead of -Nc"),
    Flag("-samplesize", ("crystal.size_a_mm", "crystal.size_b_mm", "crystal.size_c_mm"),
         aliases=("-sample_size", "-xtalsize", "-xtal_size"),
         help="crystal size along a, b and c (mm)"),
    *_switches("crystal.shape", {
        "-square_xtal": ("square", "spot shape of a parallelepiped crystal (the default)"),
        "-round_xtal": ("round", "spot shape of a spherical crystal"),
        "-gauss_xtal": ("gauss", "Gaussian spot shape"),
        "-tophat_spots": ("tophat", "top-hat spot shape (uniform within each spot)")}),
    Flag("-binary_spots", ("crystal.shape",), "switch", 0, value="tophat", writes=False,
         help="the same as -tophat_spots"),
    Flag("-fudge", ("crystal.fudge",), help="factor on the spot width of the non-square shapes"),
    Flag("-mosaic", ("crystal.mosaic_spread_deg",),
         aliases=("-mosaicity", "-mosaici", "-mosaic_spread", "-mosaic_spr"),
         help="mosaic spread (deg)"),
    Flag("-mosaic_domains", ("crystal.mosaic_domains",), "count", aliases=("-mosaic_dom",),
         help="mosaic domains sampled over the spread"),
    Flag("-mosaic_seed", ("crystal.mosaic_seed",), "int", help="random seed of the mosaic domains"),
    # -- scan and goniometer -----------------------------------------------------------------------------
    *_num_rows({"-phi": ("scan.phi_start_deg", "spindle angle at the start (deg)"),
                "-osc": ("scan.osc_range_deg", "oscillation range of the image (deg)"),
                "-phistep": ("scan.phi_step_deg", "spindle step within the oscillation (deg)")}),
    Flag("-phisteps", ("scan.phi_steps",), "count", help="spindle steps within the oscillation"),
    # -- structure factors -------------------------------------------------------------------------------
    _FILE_ROW["-hkl"],
    Flag("-default_F", ("structure_factors.default_F",),
         help="structure factor of every reflection that no file gives"),
    *_switches("structure_factors.interpolate", {
        "-interpolate": ("on", "interpolate structure factors between Miller indices"),
        "-nointerpolate": ("off", "take the structure factor of the nearest Miller index")}),
    Flag("-dump", (), "str", read=read_into_draft("dump_name"), writes=False,
         help="structure-factor cache read when no -hkl is given (default Fdump.bin)"),
    # -- beam ----------------------------------------------------------------------------------------------
    Flag("-lambda", ("beam.wavelength_A",), aliases=("-wave", "-wavelength"),
         help="wavelength (A)"),
    Flag("-energy", ("beam.wavelength_A",), read=read_energy, writes=False,
         help="photon energy (eV), instead of -lambda"),
    Flag("-dispersion", ("beam.dispersion_pct",), help="spectral width (percent of the wavelength)"),
    Flag("-dispsteps", ("beam.dispersion_steps",), "count",
         help="wavelengths sampled over -dispersion"),
    *_num_rows({"-hdivrange": ("beam.hdiv_range_mrad", "horizontal beam divergence (mrad)"),
                "-vdivrange": ("beam.vdiv_range_mrad", "vertical beam divergence (mrad)"),
                "-hdivstep": ("beam.hdiv_step_mrad", "horizontal divergence step (mrad)"),
                "-vdivstep": ("beam.vdiv_step_mrad", "vertical divergence step (mrad)")}),
    *_num_rows({"-hdivsteps": ("beam.hdiv_steps", "horizontal divergence points"),
                "-vdivsteps": ("beam.vdiv_steps", "vertical divergence points")}, kind="count"),
    Flag("-divergence", ("beam.hdiv_range_mrad", "beam.vdiv_range_mrad"),
         help="horizontal and vertical beam divergence (mrad)"),
    Flag("-divsteps", ("beam.hdiv_steps", "beam.vdiv_steps"), "count",
         help="horizontal and vertical divergence points"),
    *_switches("beam.round_div", {
        "-round_div": (True, "an elliptical divergence grid (the default)"),
        "-square_div": (False, "a rectangular divergence grid (corners kept)")}),
    _FILE_ROW["-sourcefile"],
    _ignored(("-source_dist", "-source_distance"), 1,
             "{flag} is ignored, as nanoBragg ignores it (sources sit 10 m away)",
             help="ignored, as by nanoBragg (sources sit 10 m away)"),
    Flag("-polar", ("beam.polarization",), read=read_polar,
         help="Kahn polarization factor (0 to 1)"),
    Flag("-nopolar", ("beam.polarization_off",), "switch", 0, value=True,
         help="no polarization correction"),
    Flag("-fluence", ("beam.fluence_photons_per_m2",), help="photons per square metre"),
    Flag("-flux", ("beam.flux_photons_per_s",), help="photons per second"),
    Flag("-exposure", ("beam.exposure_s",), help="exposure time (s)"),
    Flag("-beamsize", ("beam.beam_size_mm",), help="beam size (mm)"),
    # -- detector ------------------------------------------------------------------------------------------
    Flag("-pixel", ("detector.pixel_size_mm",), help="pixel size (mm)"),
    Flag("-detpixels_x", ("detector.fast_pixels",), "int", aliases=("-detpixels_f",),
         help="pixels along the fast axis"),
    Flag("-detpixels_y", ("detector.slow_pixels",), "int", aliases=("-detpixels_s",),
         help="pixels along the slow axis"),
    Flag("-detpixels", ("detector.fast_pixels", "detector.slow_pixels"), "int",
         help="pixels along both axes"),
    *_num_rows({"-detsize_f": ("detector.size_fast_mm", "detector size along the fast axis (mm)"),
                "-detsize_s": ("detector.size_slow_mm", "detector size along the slow axis (mm)")}),
    Flag("-detsize", ("detector.size_fast_mm", "detector.size_slow_mm"),
         help="detector size along both axes (mm)"),
    *_num_rows({"-fdet_vector": ("detector.fdet_vector", "fast detector axis (custom convention)"),
                "-sdet_vector": ("detector.sdet_vector", "slow detector axis (custom convention)"),
                "-odet_vector": ("detector.odet_vector", "detector normal (custom convention)")},
               nargs=3, custom=True),
    Flag("-pix0_vector", ("detector.pix0_vector_m",), nargs=3, custom=True,
         aliases=("-pix0_vector_mm",), help="position of the first pixel (m; custom convention)"),
    Flag("-twotheta_axis", ("detector.twotheta_axis",), nargs=3, custom=True,
         read=read_twotheta_axis, help="rotation axis of -twotheta (custom convention)"),
    *_num_rows({"-beam_vector": ("beam.beam_vector", "beam direction (custom convention)"),
                "-polar_vector": ("beam.polar_vector", "polarization direction (custom convention)"),
                "-spindle_axis": ("goniometer.spindle_axis", "spindle axis (custom convention)")},
               nargs=3, custom=True),
    *_num_rows({"-detector_rotx": ("detector.rotx_deg", "detector rotation about x (deg)"),
                "-detector_roty": ("detector.roty_deg", "detector rotation about y (deg)"),
                "-detector_rotz": ("detector.rotz_deg", "detector rotation about z (deg)")}),
    Flag("-twotheta", ("detector.twotheta_deg",), pivot="sample", write=write_twotheta,
         help="detector swing angle 2theta (deg; sample pivot)"),
    *_num_rows({"-Xbeam": ("detector.beam_x_mm", "beam centre X of the convention (mm; beam pivot)"),
                "-Ybeam": ("detector.beam_y_mm", "beam centre Y of the convention (mm; beam pivot)"),
                "-distance": ("detector.distance_mm",
                              "sample to detector along the beam (mm; beam pivot)")},
               pivot="beam"),
    *_num_rows({"-Xclose": ("detector.close_x_mm", "X of the detector point nearest the sample (mm)"),
                "-Yclose": ("detector.close_y_mm", "Y of the detector point nearest the sample (mm)"),
                "-ORGX": ("detector.org_x_px", "XDS origin ORGX (pixels; sample pivot)"),
                "-ORGY": ("detector.org_y_px", "XDS origin ORGY (pixels; sample pivot)"),
                "-close_distance": ("detector.close_distance_mm",
                                    "sample to detector plane (mm; sample pivot)")},
               pivot="sample"),
    Flag("-pivot", ("detector.pivot",), "str", read=read_pivot, write=write_pivot,
         what="beam or sample", help="rotate the detector about the beam spot or the sample"),
    Flag("-point_pixel", ("detector.point_pixel",), "switch", 0, value=True,
         help="the solid angle of a point instead of the pixel's area"),
    Flag("-detector_abs", ("detector.absorption_length_um",),
         aliases=("-detector_absorb", "-detector_absorption"), read=read_detector_abs,
         write=write_detector_abs, help="sensor attenuation length (um), or 'inf' for none"),
    Flag("-detector_thick", ("detector.thickness_um",), help="sensor thickness (um)"),
    Flag("-thicksteps", ("detector.thickness_steps",), "count", aliases=("-detector_thicksteps",),
         help="layers sampled through the sensor"),
    _FILE_ROW["-mask"],
    # its header presets the detector (read before the rest)
    Flag("-img", (), "str", writes=False, what="a file name",
         help="preset the detector from the header of this SMV image"),
    # -- sampling, background, noise -----------------------------------------------------------------
    Flag("-oversample", ("sampling.oversample",), "posint_or_none",
         help="subpixels per pixel side (default: chosen from the spot size)"),
    *[Flag(f"-{k}", (f"sampling.{k}",), "switch", 0, value=True,
           help=f"{what_} per subpixel rather than per pixel")
      for k, what_ in (("oversample_thick", "sensor absorption"),
                       ("oversample_polar", "polarization"), ("oversample_omega", "solid angle"))],
    Flag("-roi", ("sampling.roi",), "int", nargs=4, what="xmin xmax ymin ymax",
         help="render only this region of pixels"),
    Flag("-dmin", ("sampling.dmin_A",), help="skip pixels finer than this resolution (A)"),
    Flag("-water", ("background.water_um",), help="thickness of water scattering a background (um)"),
    Flag("-seed", ("noise.seed",), "int", help="random seed of the noise image"),
    # -- outputs ---------------------------------------------------------------------------------------
    Flag("-floatfile", ("outputs.float_file",), "str", aliases=("-floatimage",), output=True,
         help="raw float image (default floatimage.bin)"),
    Flag("-intfile", ("outputs.int_file",), "str", aliases=("-intimage",), output=True,
         help="SMV image of integers (default intimage.img)"),
    Flag("-pgmfile", ("outputs.pgm_file",), "str", aliases=("-pgmimage",), output=True,
         read=read_output_file, help="PGM picture (default image.pgm)"),
    Flag("-noisefile", ("outputs.noise_file",), "str", aliases=("-noiseimage",), output=True,
         read=read_output_file, help="SMV image with Poisson noise (default noiseimage.img)"),
    Flag("-nonoise", ("outputs.noise_file",), "switch", 0, output=True, read=read_output_off,
         write=write_output_off, help="no noise image"),
    Flag("-nopgm", ("outputs.pgm_file",), "switch", 0, output=True, read=read_output_off,
         write=write_output_off, help="no PGM picture"),
    Flag("-scale", ("outputs.int_scale",), "pos_or_none",
         help="photons to counts of the int image (default: brightest pixel to 55000)"),
    Flag("-pgmscale", ("outputs.pgm_scale",), "pos_or_none", read=read_pgmscale,
         write=write_pgmscale, help="scale of the PGM picture"),
    Flag("-adc", ("outputs.adc_offset",), help="offset added to the int and noise images (default 40)"),
    Flag("-misset_seed", ("crystal.misset_seed",), "int", read=read_misset_seed,
         write=write_misset_seed_alone, help="random seed of -misset random"),
    # -- accepted, no effect on the image ----------------------------------------------------------------
    _ignored(("-density", "-sample_density", "-sample_den", "-MW", "-molecular_weight", "-molec"),
             1, _NO_EFFECT, help="accepted; no effect on the image (nanoBragg only reports it)"),
    _ignored(("-printout", "-coherent"), 0, "", help="accepted; no effect on the image"),
    _ignored(("-printout_pixel",), 2, "", "fast and slow pixel",
             help="accepted; no effect on the image"),
    _ignored(("-stol", "-4stol", "-Q", "-stolout"), 1,
             "{flag} has no effect on the image and is ignored", "a file name",
             help="accepted and ignored (no effect on the image)"),
    Flag("-noprogress", (), "switch", 0, aliases=("-progress",), read=read_progress,
         writes=False, help="hide (or, -progress, show) the progress of long renders"),
    # -- our own flags -------------------------------------------------------------------------------
    Flag("-dtype", ("run.dtype",), "choice", choices=("float64", "float32"), ours=True,
         help="floating-point precision of the render (default float64)"),
    Flag("-device", ("run.device",), "choice", choices=("auto", "cpu", "cuda"), ours=True,
         help="where to render (default auto: a GPU when there is one)"),
    Flag("-phi_mode", ("run.phi_mode",), "choice", choices=("default", "c-parity"), ours=True,
         help="c-parity: reproduce the C program's stale rotation at phi = 0"),
    Flag("-compile", ("run.compile",), "choice", choices=("auto", "on", "off"), ours=True,
         help="compile the render kernel with torch.compile (default auto)"),
    Flag("-memory_mb", ("run.memory_budget_mb",), "int", ours=True,
         help="memory budget of one render chunk (MB, default 1024)"),
    Flag("-trace_pixel", ("run.trace_pixels",), "int", nargs=2, read=read_trace_pixel,
         write=write_trace_pixels, ours=True, what="slow and fast pixel",
         help="print every term of this pixel's computation (repeatable)"),
    Flag("-trace_file", (), "str", read=read_into_draft("trace_file"), writes=False, ours=True,
         what="a file name", help="write the traces to this file instead of the screen"),
    # structure factors computed from a coordinate model or read from an MTZ file
    _FILE_ROW["-model"],
    _FILE_ROW["-mtz"],
    Flag("-mtz_column", ("structure_factors.mtz_column",), "str", ours=True,
         what="a column label", help="the MTZ column to read (default: the first F or I column)"),
    Flag("-dmin_F", ("structure_factors.dmin_F_A",), ours=True,
         help="resolution limit of the structure factors of -model or -mtz (A)"),
    Flag("-cbf", ("outputs.cbf_file",), "str", aliases=("-cbffile",), output=True, ours=True,
         help="also write the int image as a miniCBF file"),
    # an NXmx NeXus/HDF5 master file: every image of the render or series (sim_core.io.nexus)
    Flag("-nexus", ("outputs.nexus_file",), "str", output=True, ours=True,
         help="also write an NXmx NeXus/HDF5 file with every image and the full geometry"),
    Flag("-nexus_image", ("outputs.nexus_image",), "choice", choices=("float", "int", "noise"),
         ours=True, help="what the NeXus file holds: the float image, the int or the noise counts"),
    # a rotation series: image n starts at -phi + (n - first_image) * -osc (see sim_core.series)
    Flag("-images", ("scan.images",), "int", ours=True,
         help="render a rotation series (or a stills dataset) of this many images"),
    Flag("-first_image", ("scan.first_image",), "int", ours=True,
         help="the number of the series' first image (default 1)"),
    # the local command's price check (sim_core.preflight); the service keeps its own limits
    Flag("-force", (), "switch", 0, read=read_force, writes=False, ours=True,
         help="render even what does not fit in memory or would take more than a day"),
    # a stills dataset: every image's orientation drawn uniformly, shot-to-shot variations drawn
    # from the same seeded stream (see sim_core.stills)
    Flag("-random_orientations", ("scan.random_orientations",), "switch", 0, value=True,
         ours=True, help="stills: draw each image's crystal orientation uniformly over all "
                         "rotations (no rotation within an image)"),
    Flag("-orientation_seed", ("scan.orientation_seed",), "int", ours=True,
         help="the seed of the stills' orientations and shot-to-shot draws"),
    *[Flag(name, (path,), nargs=3, read=read_shot, write=write_shot, ours=True,
           what="a distribution (normal, uniform or lognormal), its center and width",
           help=f"stills: draw each image's {about} from a distribution")
      for name, path, about in (("-shot_N", "scan.shot_N", "crystal size (cells per axis)"),
                                ("-shot_mosaic", "scan.shot_mosaic_spread_deg",
                                 "mosaic spread (deg)"),
                                ("-shot_cell_scale", "scan.shot_cell_scale", "unit-cell scale"),
                                ("-shot_lambda", "scan.shot_wavelength_A", "wavelength (A)"),
                                ("-shot_flux_scale", "scan.shot_flux_scale", "flux scale"))],
)

FLAGS_BY_NAME: dict[str, Flag] = {n: row for row in FLAGS for n in row.names}
#: our own flags, in addition to the C program's
OUR_FLAGS = tuple(n for row in FLAGS if row.ours for n in row.names)
assert len(FLAGS_BY_NAME) == sum(len(r.names) for r in FLAGS), "a flag is declared twice"
assert all(r.kind in KINDS for r in FLAGS)


def rows_setting(path: str) -> list[Flag]:
    """The rows whose flag sets the field ``path`` (or the field it is part of: ``crystal.cell.a_A``
    <- ``-cell``)."""
    return [r for r in FLAGS for f in r.fields if path == f or path.startswith(f + ".")]


__all__ = ["Flag", "FLAGS", "FLAGS_BY_NAME", "OUR_FLAGS", "read_value", "format_value", "what",
           "declared_default", "rows_setting"]
