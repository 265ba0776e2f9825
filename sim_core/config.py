"""The one simulation config model.

It is the CLI's target (``nanobragg_args`` builds it), the REST payload, and the content of
``run_metadata.json``. Units are in the field names. ``None`` means "let the simulator choose, as the
C program does" (for example ``oversample=None`` picks the oversampling from the crystal size).
Counts, ranges and steps follow nanoBragg's rules, which ``sim_core.sampling`` applies.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .errors import ConfigError

Vector3 = tuple[float, float, float]
#: a local path (CLI) or an uploaded file id ``sha256:<hex>`` (service)
FileRef = Annotated[str, Field(min_length=1, max_length=4096)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

#: nanoBragg's default fluence, photons per square metre
DEFAULT_FLUENCE = 125932015286227086360700780544.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _nonzero(name: str, v: Optional[Vector3]) -> Optional[Vector3]:
    if v is not None:
        if not all(math.isfinite(x) for x in v):
            raise ValueError(f"{name} must be finite")
        if v[0] == 0 and v[1] == 0 and v[2] == 0:
            raise ValueError(f"{name} must not be the zero vector")
    return v


class UnitCell(_Model):
    a_A: PositiveFloat
    b_A: PositiveFloat
    c_A: PositiveFloat
    alpha_deg: Annotated[float, Field(gt=0, lt=180)] = 90.0
    beta_deg: Annotated[float, Field(gt=0, lt=180)] = 90.0
    gamma_deg: Annotated[float, Field(gt=0, lt=180)] = 90.0

    @model_validator(mode="after")
    def _volume(self) -> "UnitCell":
        al, be, ga = (math.radians(x) for x in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        s = (al + be + ga) / 2
        skew = math.sin(s) * math.sin(s - al) * math.sin(s - be) * math.sin(s - ga)
        # 2 sqrt(skew) is the volume of the cell with unit edges: 1 for a cube, 0 when flat
        if skew <= 0 or 2 * math.sqrt(skew) < 1e-6:
            raise ValueError("cell angles describe no parallelepiped (zero or negative volume)")
        return self


class Crystal(_Model):
    cell: Optional[UnitCell] = None
    #: MOSFLM orientation matrix file: reciprocal vectors times the wavelength, as columns a* b* c*
    matrix_file: Optional[FileRef] = None
    misset_deg: Optional[Vector3] = None
    #: draw the orientation from nanoBragg's generator (``-misset random``)
    misset_random: bool = False
    #: seed of the random orientation; None picks one from the clock and records it
    misset_seed: Optional[int] = None
    Na: Annotated[int, Field(ge=0)] = 1
    Nb: Annotated[int, Field(ge=0)] = 1
    Nc: Annotated[int, Field(ge=0)] = 1
    #: crystal size along a, b, c; when given it sets Na, Nb, Nc (``-samplesize``, ``-xtalsize``)
    size_a_mm: Optional[PositiveFloat] = None
    size_b_mm: Optional[PositiveFloat] = None
    size_c_mm: Optional[PositiveFloat] = None
    shape: Literal["square", "round", "gauss", "tophat"] = "square"
    fudge: PositiveFloat = 1.0
    mosaic_spread_deg: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    mosaic_domains: Optional[Annotated[int, Field(ge=0)]] = None
    mosaic_seed: int = 12345678
    phi_start_deg: FiniteFloat = 0.0
    osc_range_deg: Optional[FiniteFloat] = None
    phi_step_deg: Optional[FiniteFloat] = None
    phi_steps: Optional[Annotated[int, Field(ge=0)]] = None
    #: rotation axis of phi; None takes the convention's
    spindle_axis: Optional[Vector3] = None

    @field_validator("spindle_axis")
    @classmethod
    def _axis(cls, v, info):
        return _nonzero(info.field_name, v)


class StructureFactors(_Model):
    #: text file of ``h k l F`` records
    hkl_file: Optional[FileRef] = None
    #: structure factor of every reflection the file does not give (or all, without a file)
    default_F: FiniteFloat = 0.0
    #: tricubic interpolation between reflections; auto turns it on for crystals of 2 cells or fewer
    interpolate: Literal["auto", "on", "off"] = "auto"
    #: coordinate model (PDB or mmCIF) whose |F| are computed; the cell comes from it unless given
    model_file: Optional[FileRef] = None
    #: MTZ file and the label of its amplitude (or intensity) column; None: the first F column
    mtz_file: Optional[FileRef] = None
    mtz_column: Optional[Annotated[str, Field(min_length=1, max_length=64)]] = None
    #: compute F from the model or MTZ to this resolution; None: as far as the detector reaches
    dmin_F_A: Optional[PositiveFloat] = None

    @model_validator(mode="after")
    def _one_source(self) -> "StructureFactors":
        from .structure_sources import check_structure_sources
        return check_structure_sources(self)


class Beam(_Model):
    wavelength_A: PositiveFloat = 1.0
    dispersion_pct: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    dispersion_steps: Optional[Annotated[int, Field(ge=0)]] = None
    hdiv_range_mrad: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    vdiv_range_mrad: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    hdiv_step_mrad: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    vdiv_step_mrad: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    hdiv_steps: Optional[Annotated[int, Field(ge=0)]] = None
    vdiv_steps: Optional[Annotated[int, Field(ge=0)]] = None
    #: keep only the divergence grid points inside an ellipse (``-round_div``, the default)
    round_div: bool = True
    #: text file of sources: ``X Y Z weight wavelength`` per line (positions in metres)
    source_file: Optional[FileRef] = None
    #: direction of the beam; None takes the convention's
    beam_vector: Optional[Vector3] = None
    #: E-vector of the beam; None takes the convention's
    polar_vector: Optional[Vector3] = None
    #: Kahn polarization factor (0 = unpolarized, 1 = fully polarized along polar_vector)
    polarization: Annotated[float, Field(ge=-1, le=1)] = 0.0
    #: switch the polarization correction off (``-nopolar``)
    polarization_off: bool = False
    fluence_photons_per_m2: PositiveFloat = DEFAULT_FLUENCE
    #: when non-zero, fluence = flux * exposure / beam_size^2
    flux_photons_per_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    exposure_s: FiniteFloat = 1.0
    beam_size_mm: FiniteFloat = 0.1

    @field_validator("beam_vector", "polar_vector")
    @classmethod
    def _vectors(cls, v, info):
        return _nonzero(info.field_name, v)


class Detector(_Model):
    convention: Literal["mosflm", "xds", "adxv", "denzo", "dials", "custom"] = "mosflm"
    #: rotation pivot; the named conventions fix it (mosflm, adxv, denzo: beam; xds, dials: sample)
    pivot: Optional[Literal["beam", "sample"]] = None
    #: sample to the beam spot on the detector; default 100 mm unless close_distance_mm is given
    distance_mm: Optional[PositiveFloat] = None
    #: sample to the nearest point of the detector plane
    close_distance_mm: Optional[PositiveFloat] = None
    pixel_size_mm: PositiveFloat = 0.1
    fast_pixels: Optional[Annotated[int, Field(gt=0)]] = None
    slow_pixels: Optional[Annotated[int, Field(gt=0)]] = None
    #: detector size when the pixel counts are not given
    size_fast_mm: PositiveFloat = 102.4
    size_slow_mm: PositiveFloat = 102.4
    #: direct-beam position in the convention's own axes (``-Xbeam``, ``-Ybeam``)
    beam_x_mm: Optional[FiniteFloat] = None
    beam_y_mm: Optional[FiniteFloat] = None
    #: nearest point of the detector (``-Xclose``, ``-Yclose``)
    close_x_mm: Optional[FiniteFloat] = None
    close_y_mm: Optional[FiniteFloat] = None
    #: XDS origin in pixels (``-ORGX``, ``-ORGY``)
    org_x_px: Optional[FiniteFloat] = None
    org_y_px: Optional[FiniteFloat] = None
    fdet_vector: Optional[Vector3] = None
    sdet_vector: Optional[Vector3] = None
    odet_vector: Optional[Vector3] = None
    #: accepted for compatibility; nanoBragg recomputes pix0 from the beam centre (see docs)
    pix0_vector_m: Optional[Vector3] = None
    rotx_deg: FiniteFloat = 0.0
    roty_deg: FiniteFloat = 0.0
    rotz_deg: FiniteFloat = 0.0
    twotheta_deg: FiniteFloat = 0.0
    twotheta_axis: Optional[Vector3] = None
    #: every pixel at the same distance from the sample (``-curved_det``)
    curved: bool = False
    #: solid angle by inverse square law only, no obliquity (``-point_pixel``)
    point_pixel: bool = False
    thickness_um: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    #: attenuation length of the sensor; None uses the thickness; 0 means no absorption
    absorption_length_um: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    thickness_steps: Optional[Annotated[int, Field(ge=0)]] = None
    #: SMV image whose zero pixels are skipped (its header also sets the detector, as in nanoBragg)
    mask_file: Optional[FileRef] = None

    @field_validator("fdet_vector", "sdet_vector", "twotheta_axis")
    @classmethod
    def _vectors(cls, v, info):
        return _nonzero(info.field_name, v)

    @model_validator(mode="after")
    def _custom_only(self) -> "Detector":
        if self.convention != "custom":
            for name in ("fdet_vector", "sdet_vector", "odet_vector", "twotheta_axis",
                         "pix0_vector_m"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs convention='custom' (the {self.convention} "
                                     "convention sets its own axes)")
        return self

    @model_validator(mode="after")
    def _pivot_matches_convention(self) -> "Detector":
        fixed = {"mosflm": "beam", "adxv": "beam", "denzo": "beam", "xds": "sample", "dials": "sample"}
        want = fixed.get(self.convention)
        if self.pivot is not None and want is not None and self.pivot != want:
            raise ValueError(f"the {self.convention} convention always pivots about the {want}; "
                             f"pivot={self.pivot!r} needs convention='custom'")
        return self


class Sampling(_Model):
    #: subpixels per pixel edge; None chooses it from the crystal size as nanoBragg does
    oversample: Optional[Annotated[int, Field(gt=0)]] = None
    #: recompute these factors for every subpixel instead of once per pixel
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    #: render only fast xmin..xmax, slow ymin..ymax (inclusive, pixels)
    roi: Optional[tuple[int, int, int, int]] = None
    #: skip scattering beyond this resolution
    dmin_A: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class Background(_Model):
    #: thickness of water around the crystal that adds a flat background
    water_um: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class Noise(_Model):
    #: seed of the Poisson noise; None picks one from the clock and records it
    seed: Optional[int] = None


class Outputs(_Model):
    float_file: Optional[str] = "floatimage.bin"
    int_file: Optional[str] = "intimage.img"
    noise_file: Optional[str] = "noiseimage.img"
    pgm_file: Optional[str] = "image.pgm"
    #: counts per photon of the SMV int image; None scales the maximum to 55000
    int_scale: Optional[PositiveFloat] = None
    pgm_scale: Optional[PositiveFloat] = None
    adc_offset: FiniteFloat = 40.0


class RunOptions(_Model):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float64", "float32"] = "float64"
    #: c-parity reproduces the released C program's stale rotation at phi = 0
    phi_mode: Literal["default", "c-parity"] = "default"
    #: (slow, fast) pixels to trace
    trace_pixels: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] = []
    #: peak working memory of one render chunk
    memory_budget_mb: Annotated[int, Field(ge=16, le=1 << 20)] = 1024
    #: fuse the common evaluations with torch.compile; auto: in workers and nanobragg-server, for
    #: renders big enough to repay the compilation
    compile: Literal["auto", "on", "off"] = "auto"


#: run options that do not change the image and so stay out of config_sha256
_HASH_EXCLUDE = {"run": {"device", "memory_budget_mb", "trace_pixels", "compile"}}


class SimulationConfig(_Model):
    crystal: Crystal = Crystal()
    structure_factors: StructureFactors = StructureFactors()
    beam: Beam = Beam()
    detector: Detector = Detector()
    sampling: Sampling = Sampling()
    background: Background = Background()
    noise: Noise = Noise()
    outputs: Outputs = Outputs()
    run: RunOptions = RunOptions()

    @model_validator(mode="after")
    def _complete(self) -> "SimulationConfig":
        sf = self.structure_factors
        if self.crystal.cell is None and self.crystal.matrix_file is None and not (
                sf.model_file or sf.mtz_file):
            raise ValueError("crystal: give a unit cell (crystal.cell), an orientation matrix "
                             "(crystal.matrix_file) or a model / MTZ file that has one")
        if self.detector.convention != "custom":
            for path, value in (("beam.beam_vector", self.beam.beam_vector),
                                ("beam.polar_vector", self.beam.polar_vector),
                                ("crystal.spindle_axis", self.crystal.spindle_axis)):
                if value is not None:
                    raise ValueError(f"{path} needs detector.convention='custom' (the "
                                     f"{self.detector.convention} convention sets its own axes)")
        if not (sf.hkl_file or sf.model_file or sf.mtz_file) and sf.default_F == 0:
            raise ValueError("structure_factors: give an HKL, model or MTZ file "
                             "(structure_factors.hkl_file, model_file, mtz_file) or a non-zero "
                             "structure_factors.default_F")
        return self

    # -- identity ---------------------------------------------------------------------------------
    def canonical_json(self, *, for_hash: bool = False) -> str:
        data = self.model_dump(mode="json", exclude=_HASH_EXCLUDE if for_hash else None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def config_sha256(self) -> str:
        return hashlib.sha256(self.canonical_json(for_hash=True).encode()).hexdigest()

    def file_refs(self) -> dict[str, str]:
        """Field path -> file reference, for every input file the config names."""
        refs = {
            "crystal.matrix_file": self.crystal.matrix_file,
            "structure_factors.hkl_file": self.structure_factors.hkl_file,
            "structure_factors.model_file": self.structure_factors.model_file,
            "structure_factors.mtz_file": self.structure_factors.mtz_file,
            "beam.source_file": self.beam.source_file,
            "detector.mask_file": self.detector.mask_file,
        }
        return {k: v for k, v in refs.items() if v is not None}


def validation_errors(exc: ValidationError) -> list[dict]:
    """Pydantic errors as ``{"field": "a.b.c", "message": ...}`` records."""
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"field": path or "(config)", "message": msg})
    return out


def load_config(data: dict | str) -> SimulationConfig:
    """Build a config from a dict or JSON text, raising :class:`ConfigError` naming each bad field."""
    try:
        if isinstance(data, str):
            return SimulationConfig.model_validate_json(data)
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        errs = validation_errors(exc)
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errs)
        raise ConfigError(f"invalid simulation config: {text}", field=errs[0]["field"]) from exc
