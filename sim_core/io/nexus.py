"""NeXus/HDF5 files in the NXmx application definition: one master file per image or series.

A file holds every image of a render as the frames of one dataset, ``/entry/data/data`` (frames,
slow, fast), compressed with bitshuffle/LZ4 (``hdf5plugin``): the float image (photons per pixel,
float32) or the counts of the int or noise image (uint16, as the SMV files hold them). Around it,
the geometry in NXmx's own terms, so that every pixel's lab position follows from the file alone:

- ``/entry/instrument/detector/module``: ``fast_pixel_direction`` and ``slow_pixel_direction``
  (translations of one pixel size along the unrotated detector axes) and ``module_offset``, each a
  link in a ``depends_on`` chain that ends at the sample; ``module_offset`` places the outer corner
  of the first pixel (dxtbx's panel origin), so the centre of pixel (slow ``s``, fast ``f``) lies
  ``(f + 1/2)`` fast and ``(s + 1/2)`` slow pixel sizes from it, as in ``sim_core``;
- ``/entry/instrument/detector/transformations``: the detector's chain as nanoBragg builds it. The
  rotations ``detector_rotx``, ``detector_roty``, ``detector_rotz`` (``-detector_rotx/y/z``, about
  the lab axes, in that order) and then ``two_theta`` (``-twotheta`` about the 2θ axis). With the
  sample pivot (XDS, DIALS, ``-pivot sample``) the detector is placed at its close distance along
  its unrotated normal (``detector_distance``) and the rotations turn it about the sample; with the
  beam pivot (MOSFLM, DENZO, ADXV, ``-pivot beam``) the rotations turn it about the beam spot and
  ``detector_distance`` then moves that spot down the beam. The beam centre, ``-Xbeam/-Ybeam``,
  ``-ORGX/-ORGY`` and the other offsets all end in ``module_offset``;
- ``distance`` and ``beam_center_x/y`` (pixels): where the direct beam meets the detector plane.
  Under ``-twotheta`` that is not nanoBragg's distance and beam centre (the SMV and CBF headers
  keep those, which leave the 2θ rotation out); the chain holds the geometry either way;
- ``/entry/sample/transformations/phi``: the goniometer (spindle) axis with each frame's φ start,
  ``phi_end`` and ``phi_increment_set`` (the φ range of each image, from ``sim_core.series``);
- ``/entry/instrument/beam``: wavelength, total flux where the config sets one, beam size;
- ``pixel_mask``: bit 8 (user defined) on the pixels the render skipped (``-roi``, ``-mask``);
- the sensor (silicon, as nanoBragg's absorption model and the miniCBF header assume, with
  ``detector.thickness_um``), exposure time and a saturation value.

The frame. NeXus uses the McStas frame: z along the beam, y up, x = y × z (to the left, looking
down the beam). ``sim_core`` places the beam along its convention's own axis (MOSFLM, DENZO: +x;
XDS, DIALS, ADXV: +z; custom: ``-beam_vector``), so the lab vectors are mapped with the proper
rotation ``M`` (:func:`mcstas_rotation`) that takes the unit beam to McStas +z and the spindle's
component across the beam to McStas −x (a horizontal rotation axis, as Diamond's beamlines write
ω: ``(-1, 0, 0)``). For the MOSFLM convention (beam +x, spindle +z) that is
``McStas (x, y, z) = (-z, y, x)``; for XDS (beam +z, spindle +x) ``(-x, -y, z)``; for nanoBragg's
DIALS convention (beam +z, spindle +y) ``(-y, x, z)``. A spindle along the beam falls back on the
polarization vector, then on the lab axis most across the beam. ``M`` is a rotation, so distances,
angles and handedness are those of ``sim_core``'s render; a position ``p`` of ``sim_core`` is
``M @ p`` in the file.

A curved detector (``-curved_det``: every pixel at the same distance) is not a plane and NXmx has no
way to say so: it is refused with a :class:`~sim_core.errors.ConfigError` naming
``detector.curved``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence, Union

import numpy as np

from ..errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]
ImageKind = Literal["float", "int", "noise"]
IMAGE_KINDS = ("float", "int", "noise")

#: where the data and the transformation chains live (absolute paths, as depends_on holds them)
DATA_PATH = "/entry/data/data"
DETECTOR = "/entry/instrument/detector"
DETECTOR_CHAIN = DETECTOR + "/transformations"
MODULE = DETECTOR + "/module"
PHI_AXIS = "/entry/sample/transformations/phi"
#: the count where the int and noise images clamp (the SMV images' 16 bits)
COUNT_SATURATION = 65535
#: the float image has no overload; the largest value an int32 trusted range holds stands for it
FLOAT_SATURATION = 2 ** 31 - 1
#: fixed, so that the same render gives the same file contents
FIXED_START_TIME = "1970-01-01T00:00:00Z"
#: ``pixel_mask`` bit 8, NXmx's "user defined mask": pixels the render skipped (outside ``-roi``,
#: zero in ``-mask``), which hold 0 rather than a measurement
UNRENDERED = 1 << 8


def _unit(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(a))
    return a / n if n > 0 else a


def mcstas_rotation(beam, spindle, polar=None) -> np.ndarray:
    """The proper rotation ``M`` (3×3) from ``sim_core``'s lab frame to NeXus' McStas frame.

    Its rows are McStas' x, y, z axes written in ``sim_core``'s frame: z the unit beam, x the
    spindle's part across the beam, negated (or the polarization's, or a lab axis', when the spindle
    lies along the beam), y = z × x.
    """
    z = _unit(beam)
    across = None
    candidates = [spindle] + ([polar] if polar is not None else []) + \
        [np.eye(3)[int(np.argmin(np.abs(z)))]]
    for ref in candidates:
        r = np.asarray(ref, dtype=np.float64)
        perp = r - np.dot(r, z) * z
        if np.linalg.norm(perp) > 1e-9 * max(1.0, float(np.linalg.norm(r))):
            across = perp
            break
    x = -_unit(across)
    y = np.cross(z, x)
    return np.stack([x, y, z])


@dataclass(frozen=True)
class Transformation:
    """One NXtransformations axis: a translation (mm) or a rotation (degrees) along ``vector``."""

    name: str
    kind: Literal["translation", "rotation"]
    value: float
    vector: tuple[float, float, float]
    depends_on: str


@dataclass(frozen=True)
class NexusGeometry:
    """The geometry of a (flat) detector, beam and goniometer in McStas terms, lengths in mm."""

    rotation: np.ndarray  # M: sim_core lab -> McStas
    #: the detector chain, innermost (applied first) to outermost
    detector_chain: tuple[Transformation, ...]
    module_offset: Transformation
    fast_vector: tuple[float, float, float]
    slow_vector: tuple[float, float, float]
    pixel_size_mm: float
    fpixels: int
    spixels: int
    spindle: tuple[float, float, float]
    #: sample to where the direct beam meets the detector plane, and that spot in pixels (fast,
    #: slow) from the first pixel's corner; None for a detector edge-on to the beam
    distance_mm: float | None
    beam_center_px: tuple[float, float] | None


def _tuple(v: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(x) for x in v)


def _translation(name: str, vec: np.ndarray, depends_on: str, fallback: np.ndarray
                 ) -> Transformation:
    """A translation by ``vec`` (mm) as a unit vector and a length (along ``fallback`` if zero)."""
    length = float(np.linalg.norm(vec))
    direction = vec / length if length > 0 else _unit(fallback)
    return Transformation(name, "translation", length, _tuple(direction), depends_on)


def nexus_geometry(config, detector=None, frame=None) -> NexusGeometry:
    """The NXmx geometry of ``config`` (its detector and lab frame unless given, as built by
    ``sim_core.geometry.detector.build_detector`` and ``sim_core.lab_frame.resolve_frame``).

    Raises :class:`ConfigError` for a curved detector, and for a detector transformation that is
    not a rotation (a ``-twotheta_axis`` that is not a unit vector turns and scales the detector
    axes in nanoBragg, which no NXmx chain expresses).
    """
    import torch

    from ..geometry.detector import build_detector, c_unitize
    from ..geometry.rotations import rotate_axis, rotate_xyz
    from ..lab_frame import resolve_frame

    if config.detector.curved:
        raise ConfigError("NeXus/NXmx output describes flat detector modules; a curved detector "
                          "(detector.curved, -curved_det) has no NXmx description: drop "
                          "-curved_det or the NeXus output", field="detector.curved",
                          flag="-curved_det")
    frame = frame or resolve_frame(config)
    det = detector or build_detector(config.detector, frame)
    d = config.detector
    rx, ry, rz, tt = (math.radians(a) for a in (d.rotx_deg, d.roty_deg, d.rotz_deg,
                                                d.twotheta_deg))
    # the detector rotation R of sim_core: columns are the turned lab axes
    eye = torch.eye(3, dtype=torch.float64)
    tt_axis = det.twotheta_axis.detach().to(torch.float64)
    turned = rotate_axis(rotate_xyz(eye, rx, ry, rz), tt_axis, tt)
    R = turned.numpy().T
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-12, rtol=0):
        raise ConfigError("the detector's 2-theta axis is not a unit vector, so nanoBragg's 2-theta "
                          "rotation also scales the detector axes, which NXmx cannot describe: "
                          "give a unit detector.twotheta_axis (-twotheta_axis)",
                          field="detector.twotheta_axis", flag="-twotheta_axis")
    beam = np.asarray(c_unitize(frame.beam)[0])
    M = mcstas_rotation(beam, c_unitize(frame.spindle)[0], c_unitize(frame.polar)[0])
    mm = 1000.0
    fdet = det.fdet.detach().numpy()
    sdet = det.sdet.detach().numpy()
    odet = det.odet.detach().numpy()
    pix0 = det.pix0.detach().numpy() * mm
    # the unrotated detector axes, in McStas
    f0, s0, o0 = (M @ (R.T @ v) for v in (fdet, sdet, odet))

    rot_axes = [("detector_rotx", (1, 0, 0), d.rotx_deg), ("detector_roty", (0, 1, 0), d.roty_deg),
                ("detector_rotz", (0, 0, 1), d.rotz_deg)]
    rot_vectors = [(name, M @ np.asarray(axis, float), deg) for name, axis, deg in rot_axes]
    rot_vectors.append(("two_theta", M @ _unit(tt_axis.numpy()), d.twotheta_deg))

    def chain_path(name: str) -> str:
        return f"{DETECTOR_CHAIN}/{name}"

    names = [n for n, _, _ in rot_vectors]
    chain: list[Transformation] = []
    # where the direct beam meets the detector plane: nanoBragg's own distance and Fbeam/Sbeam
    # leave the 2-theta rotation out (the SMV header's DISTANCE under -twotheta), NXmx wants these
    along = float(np.dot(beam, odet))
    distance_mm = float(np.dot(pix0, odet)) / along if abs(along) > 1e-12 else None
    beam_center = None
    if distance_mm is not None:
        in_plane = np.stack([fdet, sdet], axis=1)
        fs, *_ = np.linalg.lstsq(in_plane, distance_mm * beam - pix0, rcond=None)
        beam_center = (float(fs[0]) / (float(det.pixel_size) * mm),
                       float(fs[1]) / (float(det.pixel_size) * mm))
    if det.pivot == "sample":
        # pix0 = R (close0 o0 + offset): place, then turn about the sample
        local = M @ (R.T @ pix0)
        close0 = float(np.dot(local, o0))
        offset = local - close0 * o0
        chain.append(Transformation("detector_distance", "translation", close0, _tuple(o0),
                                    chain_path(names[0])))
        for i, (name, vec, deg) in enumerate(rot_vectors):
            nxt = chain_path(names[i + 1]) if i + 1 < len(names) else "."
            chain.append(Transformation(name, "rotation", float(deg), _tuple(vec), nxt))
    else:
        # pix0 = spot + R offset: turn about the beam spot, which lies `distance` down the beam
        # (a detector edge-on to the beam has no spot: nanoBragg's distance stands in for it)
        pivot_mm = distance_mm if distance_mm is not None else float(det.distance) * mm
        spot = pivot_mm * beam
        offset = M @ (R.T @ (pix0 - spot))
        for i, (name, vec, deg) in enumerate(rot_vectors):
            nxt = chain_path(names[i + 1]) if i + 1 < len(names) else \
                chain_path("detector_distance")
            chain.append(Transformation(name, "rotation", float(deg), _tuple(vec), nxt))
        chain.append(Transformation("detector_distance", "translation", pivot_mm,
                                    _tuple(M @ beam), "."))
    module_offset = _translation("module_offset", offset, chain_path(chain[0].name), f0)
    px = float(det.pixel_size)
    return NexusGeometry(
        rotation=M, detector_chain=tuple(chain), module_offset=module_offset,
        fast_vector=_tuple(f0), slow_vector=_tuple(s0), pixel_size_mm=px * mm,
        fpixels=det.fpixels, spixels=det.spixels,
        spindle=_tuple(M @ np.asarray(c_unitize(frame.spindle)[0])), distance_mm=distance_mm,
        beam_center_px=beam_center)


def _scan_angles(config, count: int) -> tuple[np.ndarray, float]:
    """φ start of each of ``count`` frames and the φ range of one, for the series ``config``."""
    from ..seeds import with_seeds
    from ..series import series_of

    images = series_of(with_seeds(config))  # the angles do not depend on the seeds
    if count != len(images):
        raise ValueError(f"{count} frames for a series of {len(images)} images "
                         "(scan.images)")
    return np.array([im.phi_start_deg for im in images]), float(images[0].osc_deg)


def frame_pixels(result, image: ImageKind = "float", *, noise=None) -> np.ndarray:
    """The pixels of ``result`` that a NeXus frame holds: the float image (float32), or the counts
    of the int image (``outputs.int_scale`` or the automatic scale, as ``-intfile``) or of the noise
    image (drawn with the config's seed, as ``-noisefile``; ``noise``: one already drawn)."""
    if image == "float":
        return np.ascontiguousarray(result.image, dtype=np.float32)
    if image == "int":
        from ..outputs import int_scale_of
        from .smv import int_image
        return int_image(result.image, int_scale_of(result), result.config.outputs.adc_offset,
                         result.experiment.roi)
    if image == "noise":
        if noise is None:
            from ..noise import poisson_noise
            noise = poisson_noise(result.image, result.config.noise.seed,
                                  adc_offset=result.config.outputs.adc_offset,
                                  roi=result.experiment.roi, rng=result.experiment.rng)
        return noise.image
    raise ValueError(f"image must be one of {', '.join(IMAGE_KINDS)}, not {image!r}")


def _set_str(group, name: str, text: str, **attrs):
    ds = group.create_dataset(name, data=np.bytes_(text.encode()))
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def _nx_group(parent, name: str, nx_class: str):
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _write_axis(group, t: Transformation, *, value=None):
    ds = group.create_dataset(t.name, data=np.asarray(t.value if value is None else value,
                                                      dtype=np.float64))
    ds.attrs["transformation_type"] = t.kind
    ds.attrs["units"] = "mm" if t.kind == "translation" else "deg"
    ds.attrs["vector"] = np.asarray(t.vector, dtype=np.float64)
    ds.attrs["offset"] = np.zeros(3)
    ds.attrs["offset_units"] = "mm"
    ds.attrs["depends_on"] = t.depends_on
    return ds


class NexusWriter:
    """An NXmx master file written frame by frame (a series renders one image at a time).

    ``with NexusWriter(path, config, frames=N, image="noise") as w: w.write(k, pixels)`` for
    k = 0 … N−1; ``w.mark_unrendered(experiment)`` flags the pixels its render skipped in
    ``pixel_mask`` (every pixel counts otherwise). The file is written under a temporary name beside ``path`` and renamed when the
    block ends without an error (a reader never sees half a file); on an error it is removed.
    ``config`` is the series' config (its ``scan`` gives every frame's φ range).
    """

    def __init__(self, path: PathLike, config, *, frames: int | None = None,
                 image: ImageKind = "float", phi_starts_deg: Sequence[float] | None = None,
                 osc_deg: float | None = None, geometry: NexusGeometry | None = None):
        if image not in IMAGE_KINDS:
            raise ValueError(f"image must be one of {', '.join(IMAGE_KINDS)}, not {image!r}")
        self.path = Path(path)
        self.config = config
        self.image = image
        self.geometry = geometry or nexus_geometry(config)
        if phi_starts_deg is None:
            starts, osc = _scan_angles(config, config.scan.images if frames is None else frames)
        else:
            if osc_deg is None:
                raise ValueError("phi_starts_deg needs osc_deg (the phi range of each frame)")
            starts, osc = np.asarray(phi_starts_deg, dtype=np.float64), float(osc_deg)
        self.phi_starts = starts
        self.osc_deg = osc
        self.frames = len(starts)
        self._written: set[int] = set()
        self._file = None
        self._tmp: Path | None = None

    # -- the file -------------------------------------------------------------------------------
    def __enter__(self) -> "NexusWriter":
        import h5py

        from ..outputs import atomic_path

        self._tmp = atomic_path(self.path)
        try:
            self._file = h5py.File(self._tmp, "w")
            self._write_structure()
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._abort()
            return False
        try:
            missing = sorted(set(range(self.frames)) - self._written)
            if missing:
                raise ValueError(f"NeXus file {self.path}: frames {missing} were not written")
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._abort()
            raise
        return False

    def _abort(self):
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - closing a broken file
                pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def write(self, k: int, pixels: np.ndarray) -> None:
        """Frame ``k`` (0-based): the (slow, fast) pixels of image ``k`` of the series."""
        g = self.geometry
        arr = np.asarray(pixels)
        if arr.shape != (g.spixels, g.fpixels):
            raise ValueError(f"frame shape {arr.shape} does not match the detector's "
                             f"{(g.spixels, g.fpixels)} (slow, fast)")
        if not 0 <= k < self.frames:
            raise ValueError(f"frame {k} is outside the file's {self.frames} frames")
        self._data[k] = arr.astype(self._data.dtype, copy=False)
        self._written.add(k)

    def mark_unrendered(self, experiment) -> None:
        """Set :data:`UNRENDERED` in ``pixel_mask`` for the pixels ``experiment`` does not render
        (outside its ROI or masked), so that a processing program leaves them out."""
        g = self.geometry
        rendered = np.zeros(g.spixels * g.fpixels, dtype=bool)
        rendered[experiment.render_pixels()] = True
        self._mask[...] = np.where(rendered.reshape(g.spixels, g.fpixels), 0,
                                   UNRENDERED).astype(np.uint32)

    def _write_structure(self):
        import hdf5plugin

        cfg, g, f = self.config, self.geometry, self._file
        f.attrs["default"] = "entry"
        f.attrs["creator"] = "bragg-service sim_core (nanoBragg in PyTorch)"
        entry = _nx_group(f, "entry", "NXentry")
        entry.attrs["default"] = "data"
        _set_str(entry, "definition", "NXmx")
        _set_str(entry, "start_time", FIXED_START_TIME)
        _set_str(entry, "end_time_estimated", FIXED_START_TIME)

        # the frames
        dtype = np.float32 if self.image == "float" else np.uint16
        data_group = _nx_group(entry, "data", "NXdata")
        data_group.attrs["signal"] = "data"
        self._data = data_group.create_dataset(
            "data", shape=(self.frames, g.spixels, g.fpixels), dtype=dtype,
            chunks=(1, g.spixels, g.fpixels), **hdf5plugin.Bitshuffle(cname="lz4"))
        self._data.attrs["units"] = "photons" if self.image == "float" else "counts"
        self._data.attrs["image"] = self.image

        # the source and the beam (McStas: the beam runs along +z)
        source = _nx_group(entry, "source", "NXsource")
        _set_str(source, "name", "nanoBragg simulation", short_name="nanoBragg")
        instrument = _nx_group(entry, "instrument", "NXinstrument")
        _set_str(instrument, "name", "nanoBragg simulated beamline", short_name="nanoBragg")
        beam = _nx_group(instrument, "beam", "NXbeam")
        wl = beam.create_dataset("incident_wavelength", data=float(cfg.beam.wavelength_A))
        wl.attrs["units"] = "angstrom"
        if cfg.beam.dispersion_pct:
            spread = beam.create_dataset("incident_wavelength_spread",
                                         data=cfg.beam.dispersion_pct / 100.0
                                         * cfg.beam.wavelength_A)
            spread.attrs["units"] = "angstrom"
        if cfg.beam.flux_photons_per_s > 0:
            flux = beam.create_dataset("total_flux", data=float(cfg.beam.flux_photons_per_s))
            flux.attrs["units"] = "Hz"
        size = beam.create_dataset("incident_beam_size", data=[cfg.beam.beam_size_mm] * 2)
        size.attrs["units"] = "mm"
        direction = _nx_group(beam, "transformations", "NXtransformations")
        # a direction, not a motion: the beam's travel, as NeXus places it
        inc = direction.create_dataset("incident_beam_direction", data=0.0)
        inc.attrs["vector"] = np.array([0.0, 0.0, 1.0])
        inc.attrs["depends_on"] = "."

        # the detector and its chain
        det = _nx_group(instrument, "detector", "NXdetector")
        det["data"] = self._data  # the frames, linked where NXdetector keeps them
        _set_str(det, "description", "nanoBragg simulated pixel array detector")
        _set_str(det, "type", "pixel")
        _set_str(det, "depends_on", f"{DETECTOR_CHAIN}/{g.detector_chain[0].name}")
        chain = _nx_group(det, "transformations", "NXtransformations")
        for t in g.detector_chain:
            _write_axis(chain, t)
        if g.distance_mm is not None:
            dist = det.create_dataset("distance", data=g.distance_mm)
            dist.attrs["units"] = "mm"
            det.create_dataset("distance_derived", data=True)
            for name, value in zip(("beam_center_x", "beam_center_y"), g.beam_center_px):
                ds = det.create_dataset(name, data=value)
                ds.attrs["units"] = "pixels"
        self._mask = det.create_dataset("pixel_mask", shape=(g.spixels, g.fpixels),
                                        dtype=np.uint32, fillvalue=0,
                                        **hdf5plugin.Bitshuffle(cname="lz4"))
        det.create_dataset("pixel_mask_applied", data=False)
        for name in ("x_pixel_size", "y_pixel_size"):
            ds = det.create_dataset(name, data=g.pixel_size_mm)
            ds.attrs["units"] = "mm"
        _set_str(det, "sensor_material", "Silicon")
        thick = det.create_dataset("sensor_thickness",
                                   data=float(cfg.detector.thickness_um) / 1000.0)
        thick.attrs["units"] = "mm"
        saturation = FLOAT_SATURATION if self.image == "float" else COUNT_SATURATION
        det.create_dataset("saturation_value", data=np.int64(saturation))
        det.create_dataset("bit_depth_image", data=np.int32(32 if self.image == "float" else 16))
        for name in ("count_time", "frame_time"):
            ds = det.create_dataset(name, data=float(cfg.beam.exposure_s))
            ds.attrs["units"] = "s"

        module = _nx_group(det, "module", "NXdetector_module")
        module.create_dataset("data_origin", data=np.array([0, 0], dtype=np.int64))
        module.create_dataset("data_size", data=np.array([g.spixels, g.fpixels], dtype=np.int64))
        module.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
        _write_axis(module, g.module_offset)
        offset_path = f"{MODULE}/module_offset"
        for name, vec in (("fast_pixel_direction", g.fast_vector),
                          ("slow_pixel_direction", g.slow_vector)):
            _write_axis(module, Transformation(name, "translation", g.pixel_size_mm, vec,
                                               offset_path))

        # the sample on its goniometer: φ per frame
        sample = _nx_group(entry, "sample", "NXsample")
        _set_str(sample, "name", "simulated crystal")
        _set_str(sample, "depends_on", PHI_AXIS)
        gonio = _nx_group(sample, "transformations", "NXtransformations")
        phi = _write_axis(gonio, Transformation("phi", "rotation", 0.0, g.spindle, "."),
                          value=self.phi_starts)
        phi.attrs["long_name"] = "spindle rotation at the start of each frame"
        end = gonio.create_dataset("phi_end", data=self.phi_starts + self.osc_deg)
        end.attrs["units"] = "deg"
        inc_set = gonio.create_dataset("phi_increment_set", data=self.osc_deg)
        inc_set.attrs["units"] = "deg"
        sample["beam"] = beam  # older NXmx readers look for the beam in the sample


def write_nexus(path: PathLike, frames: Iterable, config, *, image: ImageKind = "float",
                experiment=None) -> Path:
    """Write an NXmx master file at ``path`` holding ``frames`` as ``/entry/data/data``.

    Args:
        frames: the images in order: :class:`~sim_core.simulate.SimulationResult` objects (each
            gives its pixels as ``image`` chooses, see :func:`frame_pixels`, and its own φ range)
            or (slow, fast) arrays already holding the pixels (then ``config.scan`` gives the φ
            range of each: one frame per image of the series).
        config: the series' (or the single image's) config: geometry, beam, sensor, exposure.
        image: ``float`` (photons, float32), ``int`` or ``noise`` (uint16 counts as the SMV
            files hold them); it names what arrays hold, and picks the pixels of results.
        experiment: the render's :class:`~sim_core.experiment.Experiment` (the results' own
            when they are given): its skipped pixels are flagged in ``pixel_mask``.
    """
    items = list(frames)
    if not items:
        raise ValueError("a NeXus file needs at least one frame")
    results = [x for x in items if hasattr(x, "experiment")]
    if results and len(results) != len(items):
        raise ValueError("frames must be all results or all arrays")
    if results:
        starts = [math.degrees(r.experiment.scan.phi_start_rad) for r in results]
        osc = math.degrees(results[0].experiment.scan.osc_range_rad)
        geometry = nexus_geometry(config, results[0].experiment.detector,
                                  results[0].experiment.frame)
        writer = NexusWriter(path, config, image=image, phi_starts_deg=starts, osc_deg=osc,
                             geometry=geometry)
    else:
        writer = NexusWriter(path, config, frames=len(items), image=image)
    with writer:
        experiment = experiment or (results[0].experiment if results else None)
        if experiment is not None:
            writer.mark_unrendered(experiment)
        for k, item in enumerate(items):
            writer.write(k, frame_pixels(item, image) if results else item)
    return Path(path)


__all__ = ["IMAGE_KINDS", "DATA_PATH", "COUNT_SATURATION", "UNRENDERED", "NexusGeometry", "NexusWriter",
           "Transformation", "frame_pixels", "mcstas_rotation", "nexus_geometry", "write_nexus"]
