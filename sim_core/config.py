"""The one simulation config model.

It is the CLI's target (``nanobragg_args`` builds it), the REST payload, and the content of
``run_metadata.json``. Its sections follow the experiment, as in DIALS' dxtbx models: ``beam``,
``detector``, ``goniometer`` (the spindle), ``scan`` (the φ range of an image), ``crystal``, then
``structure_factors``, ``sampling``, ``background``, ``noise``, ``outputs`` and ``run``. Units are in the
field names. ``None`` means "let the simulator choose, as the C program does" (for example
``oversample=None`` picks the oversampling from the crystal size). Counts, ranges and steps follow
nanoBragg's rules, which ``sim_core.sampling`` applies; the lab frame (convention, pivot, default
vectors) is ``sim_core.lab_frame``'s.

Every number is finite and within a physical range (a wavelength of 1e-320 Å or a seed beyond what
the generators take is refused naming the field). Configs of the earlier shape (the φ scan and the
spindle inside ``crystal``) are still read: :func:`migrate_old_shape` moves their fields and leaves a
deprecation note in :attr:`SimulationConfig.deprecations`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from typing import Annotated, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError,
                      field_validator, model_validator)

from .errors import ConfigError
from .lab_frame import Convention, Pivot, frame_errors

#: nanoBragg's default fluence, photons per square metre
DEFAULT_FLUENCE = 125932015286227086360700780544.0
#: the largest count of steps, domains or layers, and of pixels along one detector edge
MAX_STEPS = 100_000
MAX_PIXELS_EDGE = 100_000
#: absolute angles (misset, φ, detector rotations) in degrees
MAX_ANGLE_DEG = 1e4
#: seeds are C ``long`` values negated by the generators: |seed| < 2^63
MAX_SEED = (1 << 63) - 1


class FieldError(ValueError):
    """A check across fields that names the field at fault (a path relative to the model)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _normal(x: float) -> float:
    if x != 0 and abs(x) < sys.float_info.min:
        raise ValueError(f"{x!r} is a subnormal number (too small to compute with); give 0 or a "
                         "normal number")
    return x


def Num(*, ge: float | None = None, le: float | None = None, gt: float | None = None):
    """A finite, normal float within [ge, le] (or above gt)."""
    return Annotated[float, Field(ge=ge, le=le, gt=gt, allow_inf_nan=False),
                     AfterValidator(_normal)]


def Count(*, ge: int = 0, le: int = MAX_STEPS):
    return Annotated[int, Field(ge=ge, le=le)]


Angle = Num(ge=-MAX_ANGLE_DEG, le=MAX_ANGLE_DEG)
Seed = Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED)]
Vector3 = tuple[Num(ge=-1e6, le=1e6), Num(ge=-1e6, le=1e6), Num(ge=-1e6, le=1e6)]
#: a local path (CLI) or an uploaded file id ``sha256:<hex>`` (service)
FileRef = Annotated[str, Field(min_length=1, max_length=4096)]
#: lengths and positions in the lab, in millimetres
Length_mm = Num(ge=1e-6, le=1e6)
Offset_mm = Num(ge=-1e6, le=1e6)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _nonzero(name: str, v: Optional[tuple]) -> Optional[tuple]:
    if v is not None and math.sqrt(sum(x * x for x in v)) < 1e-12:
        raise ValueError(f"{name} must not be the zero vector")
    return v


#: the cell edges a simulation takes (Angstrom): a given cell, and one from a matrix or a file
CELL_EDGE_MIN_A, CELL_EDGE_MAX_A = 0.1, 1e6


class UnitCell(_Model):
    a_A: Num(ge=CELL_EDGE_MIN_A, le=CELL_EDGE_MAX_A)
    b_A: Num(ge=CELL_EDGE_MIN_A, le=CELL_EDGE_MAX_A)
    c_A: Num(ge=CELL_EDGE_MIN_A, le=CELL_EDGE_MAX_A)
    alpha_deg: Num(gt=0, le=179.999) = 90.0
    beta_deg: Num(gt=0, le=179.999) = 90.0
    gamma_deg: Num(gt=0, le=179.999) = 90.0

    @model_validator(mode="after")
    def _volume(self) -> "UnitCell":
        al, be, ga = (math.radians(x) for x in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        s = (al + be + ga) / 2
        skew = math.sin(s) * math.sin(s - al) * math.sin(s - be) * math.sin(s - ga)
        # 2 sqrt(skew) is the volume of the cell with unit edges: 1 for a cube, 0 when flat
        if skew <= 0 or 2 * math.sqrt(skew) < 1e-6:
            raise ValueError("cell angles describe no parallelepiped (zero or negative volume)")
        return self


class Beam(_Model):
    wavelength_A: Num(ge=1e-3, le=1e4) = 1.0
    dispersion_pct: Num(ge=0, le=100) = 0.0
    dispersion_steps: Optional[Count()] = None
    hdiv_range_mrad: Optional[Num(ge=0, le=1000)] = None
    vdiv_range_mrad: Optional[Num(ge=0, le=1000)] = None
    hdiv_step_mrad: Optional[Num(ge=0, le=1000)] = None
    vdiv_step_mrad: Optional[Num(ge=0, le=1000)] = None
    hdiv_steps: Optional[Count()] = None
    vdiv_steps: Optional[Count()] = None
    #: keep only the divergence grid points inside an ellipse (``-round_div``, the default)
    round_div: bool = True
    #: text file of sources: ``X Y Z weight wavelength`` per line (positions in metres)
    source_file: Optional[FileRef] = None
    #: direction of the beam; None takes the convention's
    beam_vector: Optional[Vector3] = None
    #: E-vector of the beam; None takes the convention's
    polar_vector: Optional[Vector3] = None
    #: Kahn polarization factor (0 = unpolarized, 1 = fully polarized along polar_vector)
    polarization: Num(ge=-1, le=1) = 0.0
    #: switch the polarization correction off (``-nopolar``)
    polarization_off: bool = False
    fluence_photons_per_m2: Num(gt=0, le=1e50) = DEFAULT_FLUENCE
    #: when non-zero, fluence = flux * exposure / beam_size^2
    flux_photons_per_s: Num(ge=0, le=1e40) = 0.0
    exposure_s: Num(ge=0, le=1e9) = 1.0
    #: also clips the crystal's height and width (0: the beam is a point)
    beam_size_mm: Num(ge=0, le=1e4) = 0.1

    @field_validator("beam_vector", "polar_vector")
    @classmethod
    def _vectors(cls, v, info):
        return _nonzero(info.field_name, v)

    @model_validator(mode="after")
    def _bounded_steps(self) -> "Beam":
        for axis in ("hdiv", "vdiv"):
            rng, step = getattr(self, f"{axis}_range_mrad"), getattr(self, f"{axis}_step_mrad")
            if getattr(self, f"{axis}_steps") is None and rng and step and rng / step > MAX_STEPS:
                raise FieldError(f"{axis}_step_mrad", f"a range of {rng:g} mrad in steps of "
                                                      f"{step:g} mrad makes more than {MAX_STEPS} "
                                                      "steps")
        return self

    @model_validator(mode="after")
    def _flux_needs_a_beam_size(self) -> "Beam":
        if self.flux_photons_per_s > 0 and self.beam_size_mm <= 0:
            raise FieldError("beam_size_mm", "a flux needs a beam size above 0 (fluence = flux "
                                             "x exposure / beam_size^2)")
        return self


class Detector(_Model):
    #: the lab frame's axes and pivot (see sim_core.lab_frame)
    convention: Convention = "mosflm"
    #: rotation pivot; the named conventions fix it (mosflm, adxv, denzo: beam; xds, dials: sample)
    pivot: Optional[Pivot] = None
    #: sample to the beam spot on the detector; default 100 mm unless close_distance_mm is given
    distance_mm: Optional[Num(ge=1e-3, le=1e6)] = None
    #: sample to the nearest point of the detector plane
    close_distance_mm: Optional[Num(ge=1e-3, le=1e6)] = None
    pixel_size_mm: Num(ge=1e-4, le=1e3) = 0.1
    fast_pixels: Optional[Count(ge=1, le=MAX_PIXELS_EDGE)] = None
    slow_pixels: Optional[Count(ge=1, le=MAX_PIXELS_EDGE)] = None
    #: detector size when the pixel counts are not given
    size_fast_mm: Length_mm = 102.4
    size_slow_mm: Length_mm = 102.4
    #: direct-beam position in the convention's own axes (``-Xbeam``, ``-Ybeam``)
    beam_x_mm: Optional[Offset_mm] = None
    beam_y_mm: Optional[Offset_mm] = None
    #: nearest point of the detector (``-Xclose``, ``-Yclose``)
    close_x_mm: Optional[Offset_mm] = None
    close_y_mm: Optional[Offset_mm] = None
    #: XDS origin in pixels (``-ORGX``, ``-ORGY``)
    org_x_px: Optional[Num(ge=-1e8, le=1e8)] = None
    org_y_px: Optional[Num(ge=-1e8, le=1e8)] = None
    fdet_vector: Optional[Vector3] = None
    sdet_vector: Optional[Vector3] = None
    odet_vector: Optional[Vector3] = None
    #: accepted for compatibility; nanoBragg recomputes pix0 from the beam centre (see docs)
    pix0_vector_m: Optional[Vector3] = None
    rotx_deg: Angle = 0.0
    roty_deg: Angle = 0.0
    rotz_deg: Angle = 0.0
    twotheta_deg: Angle = 0.0
    twotheta_axis: Optional[Vector3] = None
    #: every pixel at the same distance from the sample (``-curved_det``)
    curved: bool = False
    #: solid angle by inverse square law only, no obliquity (``-point_pixel``)
    point_pixel: bool = False
    thickness_um: Num(ge=0, le=1e6) = 0.0
    #: attenuation length of the sensor; None uses the thickness; 0 means no absorption
    absorption_length_um: Optional[Num(ge=0, le=1e9)] = None
    thickness_steps: Optional[Count()] = None
    #: SMV image whose zero pixels are skipped (its header also sets the detector, as in nanoBragg)
    mask_file: Optional[FileRef] = None

    @field_validator("fdet_vector", "sdet_vector", "twotheta_axis")
    @classmethod
    def _vectors(cls, v, info):
        return _nonzero(info.field_name, v)

    @model_validator(mode="after")
    def _pixels_per_edge(self) -> "Detector":
        for edge in ("fast", "slow"):
            if getattr(self, f"{edge}_pixels") is None:
                n = math.ceil(getattr(self, f"size_{edge}_mm") / self.pixel_size_mm - 0.5)
                if n > MAX_PIXELS_EDGE:
                    raise FieldError(f"size_{edge}_mm", f"{n} pixels along the {edge} edge: at most "
                                                        f"{MAX_PIXELS_EDGE}")
        return self


class Goniometer(_Model):
    #: rotation axis of φ; None takes the convention's
    spindle_axis: Optional[Vector3] = None

    @field_validator("spindle_axis")
    @classmethod
    def _axis(cls, v, info):
        return _nonzero(info.field_name, v)


class ShotDistribution(_Model):
    """A quantity drawn anew for every still: ``normal`` (mean ``center``, standard deviation
    ``width``), ``uniform`` (on ``center ± width``) or ``lognormal`` (median ``center``, standard
    deviation of its logarithm ``width``). See sim_core.stills."""

    kind: Literal["normal", "uniform", "lognormal"]
    center: Num(ge=-1e6, le=1e6)
    width: Num(ge=0, le=1e6)

    @model_validator(mode="after")
    def _positive_median(self) -> "ShotDistribution":
        if self.kind == "lognormal" and self.center <= 0:
            raise FieldError("center", "a lognormal distribution needs a median (center) above 0")
        return self


class Scan(_Model):
    """The φ rotation of one image: from ``phi_start_deg`` over ``osc_range_deg`` in steps; for a
    series, the images; for a stills dataset, what is drawn anew for every image."""

    phi_start_deg: Angle = 0.0
    #: a negative range or step counts as not given, as in nanoBragg
    osc_range_deg: Optional[Num(ge=-3600, le=3600)] = None
    phi_step_deg: Optional[Num(ge=-3600, le=3600)] = None
    #: φ steps within one image
    phi_steps: Optional[Count()] = None
    #: images of a series (image i starts at phi_start_deg + (i - first_image) * osc_range_deg)
    images: Count(ge=1) = 1
    #: number of the first image of the series
    first_image: Count(ge=0, le=10 ** 9) = 1
    #: a stills dataset: no rotation, every image's crystal orientation drawn uniformly over all
    #: rotations (``-random_orientations``; see sim_core.stills)
    random_orientations: bool = False
    #: seed of the stills' draws; None picks one from the clock and records it
    orientation_seed: Optional[Annotated[int, Field(ge=0, le=MAX_SEED)]] = None
    #: shot-to-shot variation of a stills dataset, drawn per image from the same seeded stream:
    #: cells per crystal edge (Na = Nb = Nc), mosaic spread, a factor on the cell edges, the
    #: wavelength, a factor on the fluence (or flux)
    shot_N: Optional[ShotDistribution] = None
    shot_mosaic_spread_deg: Optional[ShotDistribution] = None
    shot_cell_scale: Optional[ShotDistribution] = None
    shot_wavelength_A: Optional[ShotDistribution] = None
    shot_flux_scale: Optional[ShotDistribution] = None

    @model_validator(mode="after")
    def _bounded_steps(self) -> "Scan":
        osc, step = self.osc_range_deg, self.phi_step_deg
        if self.phi_steps is None and osc is not None and step is not None and osc > 0 \
                and step > 0 and osc / step > MAX_STEPS:
            raise FieldError("phi_step_deg", f"an oscillation of {osc:g} deg in steps of {step:g} "
                                             f"deg makes more than {MAX_STEPS} phi steps")
        return self

    @model_validator(mode="after")
    def _stills(self) -> "Scan":
        if not self.random_orientations:
            for name in SHOT_FIELDS:
                if getattr(self, name) is not None:
                    raise FieldError(name, "a shot-to-shot variation needs a stills dataset "
                                           "(random_orientations, -random_orientations)")
            return self
        # a still has no rotation: no range, no step and one φ step (nanoBragg's rules would
        # otherwise turn a count of steps into a 1 degree range)
        for name, value in (("osc_range_deg", self.osc_range_deg),
                            ("phi_step_deg", self.phi_step_deg)):
            if value is not None and value > 0:
                raise FieldError(name, f"a still has no rotation: {name} must not be given "
                                       "with random_orientations")
        if self.phi_steps is not None and self.phi_steps > 1:
            raise FieldError("phi_steps", "a still has no rotation: one phi step with "
                                          "random_orientations")
        return self

    @model_validator(mode="after")
    def _series(self) -> "Scan":
        if self.images == 1 or self.random_orientations:
            return self
        osc = self.osc_range_deg
        if osc is None or osc < 0:
            raise FieldError("osc_range_deg", f"a series of {self.images} images needs the phi "
                                              "range of each image (osc_range_deg, -osc)")
        last = self.phi_start_deg + (self.images - 1) * osc
        if abs(last) > MAX_ANGLE_DEG:
            raise FieldError("images", f"the last of {self.images} images would start at "
                                       f"{last:g} deg, beyond {MAX_ANGLE_DEG:g}")
        return self


#: the per-shot variations of a stills dataset, in the order of their draws (see sim_core.stills)
SHOT_FIELDS = ("shot_N", "shot_mosaic_spread_deg", "shot_cell_scale", "shot_wavelength_A",
               "shot_flux_scale")


class Crystal(_Model):
    cell: Optional[UnitCell] = None
    #: MOSFLM orientation matrix file: reciprocal vectors times the wavelength, as columns a* b* c*
    matrix_file: Optional[FileRef] = None
    misset_deg: Optional[tuple[Angle, Angle, Angle]] = None
    #: draw the orientation from nanoBragg's generator (``-misset random``)
    misset_random: bool = False
    #: seed of the random orientation; None picks one from the clock and records it
    misset_seed: Optional[Seed] = None
    Na: Count() = 1
    Nb: Count() = 1
    Nc: Count() = 1
    #: crystal size along a, b, c; when given it sets Na, Nb, Nc (``-samplesize``, ``-xtalsize``)
    size_a_mm: Optional[Num(gt=0, le=1e3)] = None
    size_b_mm: Optional[Num(gt=0, le=1e3)] = None
    size_c_mm: Optional[Num(gt=0, le=1e3)] = None
    shape: Literal["square", "round", "gauss", "tophat"] = "square"
    fudge: Num(ge=1e-6, le=1e6) = 1.0
    mosaic_spread_deg: Optional[Num(ge=0, le=90)] = None
    mosaic_domains: Optional[Count()] = None
    mosaic_seed: Seed = 12345678


class StructureFactors(_Model):
    #: text file of ``h k l F`` records
    hkl_file: Optional[FileRef] = None
    #: structure factor of every reflection the file does not give (or all, without a file)
    default_F: Num(ge=-1e12, le=1e12) = 0.0
    #: tricubic interpolation between reflections; auto turns it on for crystals of 2 cells or fewer
    interpolate: Literal["auto", "on", "off"] = "auto"
    #: coordinate model (PDB or mmCIF) whose |F| are computed; the cell comes from it unless given
    model_file: Optional[FileRef] = None
    #: MTZ file and the label of its amplitude (or intensity) column; None: the first F column
    mtz_file: Optional[FileRef] = None
    mtz_column: Optional[Annotated[str, Field(min_length=1, max_length=64)]] = None
    #: compute F from the model or MTZ to this resolution; None: as far as the detector reaches
    dmin_F_A: Optional[Num(ge=1e-3, le=1e6)] = None

    @model_validator(mode="after")
    def _one_source(self) -> "StructureFactors":
        """One source of structure factors; the MTZ and resolution options only with their
        files."""
        given = [n for n in ("hkl_file", "model_file", "mtz_file") if getattr(self, n)]
        if len(given) > 1:
            raise FieldError(given[1], f"give one of hkl_file, model_file and mtz_file, not "
                                       f"{' and '.join(given)}")
        if self.mtz_column is not None and not self.mtz_file:
            raise FieldError("mtz_column", "mtz_column needs mtz_file")
        if self.dmin_F_A is not None and not (self.model_file or self.mtz_file):
            raise FieldError("dmin_F_A", "dmin_F_A needs model_file or mtz_file (an HKL file "
                                         "gives its own reflections)")
        return self


class Sampling(_Model):
    #: subpixels per pixel edge; None chooses it from the crystal size as nanoBragg does
    oversample: Optional[Count(ge=1, le=1000)] = None
    #: recompute these factors for every subpixel instead of once per pixel
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    #: render only fast xmin..xmax, slow ymin..ymax (inclusive, pixels; negative: the edge)
    roi: Optional[tuple[Count(ge=-MAX_PIXELS_EDGE, le=MAX_PIXELS_EDGE), ...]] = None
    #: skip scattering beyond this resolution
    dmin_A: Num(ge=0, le=1e6) = 0.0

    @field_validator("roi")
    @classmethod
    def _four(cls, v):
        if v is not None and len(v) != 4:
            raise ValueError("roi is four pixel indices: xmin xmax ymin ymax")
        return v


class Background(_Model):
    #: thickness of water around the crystal that adds a flat background
    water_um: Num(ge=0, le=1e6) = 0.0


class Noise(_Model):
    #: seed of the Poisson noise; None picks one from the clock and records it
    seed: Optional[Seed] = None


class Outputs(_Model):
    float_file: Optional[str] = "floatimage.bin"
    int_file: Optional[str] = "intimage.img"
    noise_file: Optional[str] = "noiseimage.img"
    pgm_file: Optional[str] = "image.pgm"
    #: a miniCBF of the int image's counts (``-cbf``); None writes none
    cbf_file: Optional[str] = None
    #: an NXmx NeXus/HDF5 file with every image of the render or series (``-nexus``); None: none
    nexus_file: Optional[str] = None
    #: what its frames hold: the float image (photons) or the int or noise image's counts
    nexus_image: Literal["float", "int", "noise"] = "float"
    #: counts per photon of the SMV int image; None scales the maximum to 55000
    int_scale: Optional[Num(gt=0, le=1e30)] = None
    pgm_scale: Optional[Num(gt=0, le=1e30)] = None
    adc_offset: Num(ge=-1e6, le=1e6) = 40.0


class RunOptions(_Model):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float64", "float32"] = "float64"
    #: c-parity reproduces the released C program's stale rotation at phi = 0
    phi_mode: Literal["default", "c-parity"] = "default"
    #: (slow, fast) pixels to trace
    trace_pixels: list[tuple[Count(le=MAX_PIXELS_EDGE), Count(le=MAX_PIXELS_EDGE)]] = []
    #: peak working memory of one render chunk
    memory_budget_mb: Annotated[int, Field(ge=16, le=1 << 20)] = 1024
    #: fuse the common evaluations with torch.compile; auto: in workers and nanobragg-server, for
    #: renders big enough to repay the compilation
    compile: Literal["auto", "on", "off"] = "auto"


#: run options that do not change the image and so stay out of config_sha256
_HASH_EXCLUDE = {"run": {"device", "memory_budget_mb", "trace_pixels", "compile"}}

#: fields of the earlier config shape: old path -> new path
OLD_FIELDS = {
    "crystal.phi_start_deg": "scan.phi_start_deg",
    "crystal.osc_range_deg": "scan.osc_range_deg",
    "crystal.phi_step_deg": "scan.phi_step_deg",
    "crystal.phi_steps": "scan.phi_steps",
    "crystal.spindle_axis": "goniometer.spindle_axis",
}


def migrate_old_shape(data: dict) -> tuple[dict, list[str]]:
    """Move the fields of the earlier shape to their sections: (new data, deprecation notes).

    A field given both ways is left in place, so that validation names it as unknown.
    """
    def given(path: str) -> bool:
        section, key = path.split(".")
        return isinstance(data.get(section), dict) and key in data[section]

    if not isinstance(data, dict) or not any(given(old) for old in OLD_FIELDS):
        return data, []
    data = copy.deepcopy(data)
    notes = []
    for old, new in OLD_FIELDS.items():
        osec, okey = old.split(".")
        nsec, nkey = new.split(".")
        src = data.get(osec)
        if not isinstance(src, dict) or okey not in src:
            continue
        dst = data.setdefault(nsec, {})
        if not isinstance(dst, dict) or nkey in dst:
            continue
        dst[nkey] = src.pop(okey)
        notes.append(f"deprecated: config field {old} is now {new}")
    return data, notes


class SimulationConfig(_Model):
    beam: Beam = Beam()
    detector: Detector = Detector()
    goniometer: Goniometer = Goniometer()
    scan: Scan = Scan()
    crystal: Crystal = Crystal()
    structure_factors: StructureFactors = StructureFactors()
    sampling: Sampling = Sampling()
    background: Background = Background()
    noise: Noise = Noise()
    outputs: Outputs = Outputs()
    run: RunOptions = RunOptions()

    _deprecations: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _old_shape(cls, data, handler):
        data, notes = migrate_old_shape(data)
        cfg = handler(data)
        if notes:
            cfg._deprecations = notes
        return cfg

    @model_validator(mode="after")
    def _complete(self) -> "SimulationConfig":
        sf = self.structure_factors
        if self.crystal.cell is None and self.crystal.matrix_file is None and not (
                sf.model_file or sf.mtz_file):
            raise FieldError("crystal", "give a unit cell (crystal.cell), an orientation matrix "
                                        "(crystal.matrix_file) or a model / MTZ file that has one")
        for path, message in frame_errors(self):
            raise FieldError(path, message)
        if self.scan.random_orientations and (self.crystal.misset_random
                                              or self.crystal.misset_deg is not None):
            raise FieldError("scan.random_orientations",
                             "random_orientations draws each image's orientation: give no misset "
                             "(crystal.misset_deg, crystal.misset_random) with it")
        if self.outputs.nexus_file and self.detector.curved:
            raise FieldError("detector.curved", "NeXus/NXmx output (outputs.nexus_file) describes "
                                                "flat detector modules; a curved detector has no "
                                                "NXmx description")
        if not (sf.hkl_file or sf.model_file or sf.mtz_file) and sf.default_F == 0:
            raise FieldError("structure_factors", "give an HKL, model or MTZ file "
                                                  "(structure_factors.hkl_file, model_file, "
                                                  "mtz_file) or a non-zero structure_factors.default_F")
        return self

    @property
    def deprecations(self) -> list[str]:
        """Notes on fields given in the earlier shape (moved on reading)."""
        return list(self._deprecations)

    # -- identity ---------------------------------------------------------------------------------
    def canonical_json(self, *, for_hash: bool = False) -> str:
        data = self.model_dump(mode="json", exclude=_HASH_EXCLUDE if for_hash else None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def config_sha256(self) -> str:
        return hashlib.sha256(self.canonical_json(for_hash=True).encode()).hexdigest()

    def file_refs(self) -> dict[str, str]:
        """Field path -> file reference, for every input file the config names."""
        from .inputs import INPUT_FILES
        refs = {f.field: get_field(self, f.field) for f in INPUT_FILES}
        return {k: v for k, v in refs.items() if v is not None}


def get_field(config: BaseModel, path: str):
    """The value at a dotted field path (``beam.wavelength_A``)."""
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_field(config: BaseModel, path: str, value) -> None:
    *head, last = path.split(".")
    setattr(get_field(config, ".".join(head)) if head else config, last, value)


def error_field(err: dict) -> str:
    """The dotted field path of one pydantic error, a cross-field check's own field included."""
    parts = [str(p) for p in err["loc"]]
    exc = (err.get("ctx") or {}).get("error")
    if isinstance(exc, FieldError):
        parts.append(exc.field)
    return ".".join(parts)


def validation_errors(exc: ValidationError) -> list[dict]:
    """Pydantic errors as ``{"field": "a.b.c", "message": ...}`` records."""
    out = []
    for err in exc.errors():
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"field": error_field(err) or "(config)", "message": msg})
    return out


def load_config(data: dict | str) -> SimulationConfig:
    """Build a config from a dict or JSON text, raising :class:`ConfigError` naming each bad field."""
    try:
        if isinstance(data, str):
            data = json.loads(data)
        return SimulationConfig.model_validate(data)
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise ConfigError(f"invalid simulation config: not JSON: {exc}") from exc
        errs = validation_errors(exc)
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errs)
        raise ConfigError(f"invalid simulation config: {text}", field=errs[0]["field"]) from exc
