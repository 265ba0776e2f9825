"""Detector geometry: conventions, beam centres, pivots, rotations and 2-theta.

A faithful port of the part of nanoBragg's main() that turns the detector flags into the detector
origin ``pix0`` and the fast/slow/normal unit vectors. All lengths are metres; the continuous inputs
(distance, beam centre, rotations, 2-theta) may be tensors that require grad.

The order of operations matters and is nanoBragg's:

1. pixel counts and detector size;
2. default beam centres ``Fclose/Sclose`` (from ORGX/ORGY or the detector middle);
3. the convention sets the axis vectors, the default Xbeam/Ybeam, ``Fbeam/Sbeam`` and the pivot;
4. ``ratio`` = beam . (odet rotated by rotx, roty, rotz) turns a distance into a close distance;
5. SAMPLE pivot: pix0 is placed before the detector rotations and rotated with them; BEAM pivot:
   pix0 is placed after the rotations so that the direct beam keeps hitting ``Fbeam, Sbeam``;
6. the close point, the beam spot, ORGX/ORGY and the DIALS origin are derived from pix0.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import torch

from ..config import Detector
from ..lab_frame import LabFrame
from ..units import deg2rad
from .rotations import rotate_axis, rotate_xyz

DBL_MIN = sys.float_info.min

@dataclass
class DetectorGeometry:
    """Everything the render loop and the file headers need to know about the detector."""

    fpixels: int
    spixels: int
    pixel_size: torch.Tensor  # m
    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    pix0: torch.Tensor  # m, lab position of the first pixel's corner
    twotheta_axis: torch.Tensor
    distance: torch.Tensor  # m, sample to beam spot
    close_distance: torch.Tensor  # m, sample to detector plane
    convention: str
    pivot: str
    # header / report values (metres unless noted)
    Xbeam: torch.Tensor
    Ybeam: torch.Tensor
    Fbeam: torch.Tensor
    Sbeam: torch.Tensor
    Xclose: torch.Tensor
    Yclose: torch.Tensor
    Fclose: torch.Tensor
    Sclose: torch.Tensor
    ORGX: torch.Tensor  # pixels
    ORGY: torch.Tensor
    dials_origin_mm: torch.Tensor
    detsize_f: float
    detsize_s: float
    twotheta: torch.Tensor  # rad
    curved: bool = False
    point_pixel: bool = False
    notes: list[str] = field(default_factory=list)


def _vec(v, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(v, dtype=dtype)


def c_unitize(v: tuple[float, float, float]) -> tuple[tuple[float, float, float], float]:
    """nanoBragg's unitize on plain floats: (unit vector, magnitude as C computes it)."""
    mag = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if mag == 0:
        return (0.0, 0.0, 0.0), 0.0
    return (v[0] / mag, v[1] / mag, v[2] / mag), mag


def _pixel_counts(det: Detector, pixel: float) -> tuple[int, int, float, float]:
    detsize_f = det.size_fast_mm / 1000.0
    detsize_s = det.size_slow_mm / 1000.0
    if det.fast_pixels:
        detsize_f = pixel * det.fast_pixels
    if det.slow_pixels:
        detsize_s = pixel * det.slow_pixels
    fpixels = math.ceil(detsize_f / pixel - 0.5)
    spixels = math.ceil(detsize_s / pixel - 0.5)
    return fpixels, spixels, detsize_f, detsize_s


def build_detector(det: Detector, frame: LabFrame, params: dict | None = None
                   ) -> DetectorGeometry:
    """Resolve the detector of a config into vectors and positions (a port of nanoBragg's rules),
    in the lab frame ``frame`` (its beam direction places the beam spot).

    ``params`` may hold tensors that replace config values so that gradients reach them:
    ``distance_mm``, ``beam_x_mm``, ``beam_y_mm``, ``rotx_deg``, ``roty_deg``, ``rotz_deg``,
    ``twotheta_deg``.
    """
    params = params or {}
    f64 = torch.float64
    notes: list[str] = []
    pixel_f = det.pixel_size_mm / 1000.0
    fpixels, spixels, detsize_f, detsize_s = _pixel_counts(det, pixel_f)
    if fpixels <= 0 or spixels <= 0:
        from ..errors import ConfigError
        raise ConfigError("detector: the detector has no pixels", field="detector.fast_pixels")
    pixel = _vec(pixel_f)

    def param(name: str, value):
        if name in params:
            return params[name].to(f64)
        return None if value is None else _vec(value)

    def mm(name: str, value):
        t = param(name, value)
        return None if t is None else t / 1000.0

    nan = None  # "not given" (NaN in the C program)
    Xbeam = mm("beam_x_mm", det.beam_x_mm)
    Ybeam = mm("beam_y_mm", det.beam_y_mm)
    Xclose = mm("close_x_mm", det.close_x_mm)
    Yclose = mm("close_y_mm", det.close_y_mm)
    Fclose = Sclose = nan
    if det.org_x_px is not None:
        Fclose = _vec((det.org_x_px - 0.5) * pixel_f)
    if det.org_y_px is not None:
        Sclose = _vec((det.org_y_px - 0.5) * pixel_f)
    if Fclose is None:
        Fclose = _vec(detsize_f / 2.0)
    if Sclose is None:
        Sclose = _vec(detsize_s / 2.0)
    if Xclose is None:
        Xclose = Fclose
    if Yclose is None:
        Yclose = Sclose

    conv, pivot = frame.convention, frame.pivot
    vecs = {"beam": frame.beam, "fdet": frame.fdet, "sdet": frame.sdet, "odet": frame.odet}
    if conv == "custom":
        if Xbeam is None:
            Xbeam = Xclose
        if Ybeam is None:
            Ybeam = Yclose
        Fbeam, Sbeam = Xbeam, Ybeam
        Fclose, Sclose = Xbeam, Ybeam
    else:
        half = pixel_f / 2.0
        if conv == "adxv":
            if Xbeam is None:
                Xbeam = _vec((detsize_f + pixel_f) / 2.0)
            if Ybeam is None:
                Ybeam = _vec((detsize_s - pixel_f) / 2.0)
            Fbeam, Sbeam = Xbeam, detsize_s - Ybeam
        elif conv in ("mosflm", "denzo"):
            if Xbeam is None:
                Xbeam = _vec((detsize_s + pixel_f) / 2.0)
            if Ybeam is None:
                Ybeam = _vec((detsize_f + pixel_f) / 2.0)
            shift = half if conv == "mosflm" else 0.0
            Fbeam, Sbeam = Ybeam + shift, Xbeam + shift
        else:  # xds, dials
            if Xbeam is None:
                Xbeam = Xclose
            if Ybeam is None:
                Ybeam = Yclose
            Fbeam, Sbeam = Xbeam, Ybeam

    # straighten up the vectors, with nanoBragg's odet check on the raw magnitude
    beam_u, _ = c_unitize(vecs["beam"])
    fdet_u, _ = c_unitize(vecs["fdet"])
    sdet_u, _ = c_unitize(vecs["sdet"])
    odet_u, odet_mag = c_unitize(vecs["odet"])
    if odet_mag != 1.0:
        notes.append("odet_vector is not a unit vector: using unit(fdet x sdet) as nanoBragg does")
        cr = (fdet_u[1] * sdet_u[2] - fdet_u[2] * sdet_u[1],
              fdet_u[2] * sdet_u[0] - fdet_u[0] * sdet_u[2],
              fdet_u[0] * sdet_u[1] - fdet_u[1] * sdet_u[0])
        odet_u, _ = c_unitize(cr)
    tt_axis = _vec(frame.twotheta_axis)
    beam_v, fdet, sdet, odet = _vec(beam_u), _vec(fdet_u), _vec(sdet_u), _vec(odet_u)

    rx = deg2rad(param("rotx_deg", det.rotx_deg))
    ry = deg2rad(param("roty_deg", det.roty_deg))
    rz = deg2rad(param("rotz_deg", det.rotz_deg))
    twotheta = deg2rad(param("twotheta_deg", det.twotheta_deg))

    rotated_o = rotate_xyz(odet, rx, ry, rz)
    ratio = torch.dot(beam_v, rotated_o)
    if float(ratio.detach()) == 0.0:
        ratio = ratio + DBL_MIN
    distance = mm("distance_mm", det.distance_mm)
    if distance is None:
        distance = _vec(0.1)
    close_distance = mm("close_distance_mm", det.close_distance_mm)
    if close_distance is None:
        close_distance = torch.abs(ratio * distance)
    distance = close_distance / ratio

    if pivot == "sample":
        pix0 = -Fclose * fdet - Sclose * sdet + close_distance * odet
        pix0 = rotate_xyz(pix0, rx, ry, rz)
        pix0 = rotate_axis(pix0, tt_axis, twotheta)
    fdet = rotate_axis(rotate_xyz(fdet, rx, ry, rz), tt_axis, twotheta)
    sdet = rotate_axis(rotate_xyz(sdet, rx, ry, rz), tt_axis, twotheta)
    odet = rotate_axis(rotate_xyz(odet, rx, ry, rz), tt_axis, twotheta)
    if pivot == "beam":
        pix0 = -Fbeam * fdet - Sbeam * sdet + distance * beam_v

    Fclose = -torch.dot(pix0, fdet)
    Sclose = -torch.dot(pix0, sdet)
    close_distance = torch.dot(pix0, odet)
    spot = close_distance / ratio * beam_v - pix0
    Fbeam = torch.dot(fdet, spot)
    Sbeam = torch.dot(sdet, spot)
    distance = close_distance / ratio
    ORGX = Fclose / pixel + 0.5
    ORGY = Sclose / pixel + 0.5
    dials = 1000.0 * torch.stack((pix0[2], pix0[1], -pix0[0]))

    if det.pix0_vector_m is not None:
        notes.append("-pix0_vector is ignored: nanoBragg recomputes pix0 from the beam centre")
    return DetectorGeometry(
        fpixels=fpixels, spixels=spixels, pixel_size=pixel, fdet=fdet, sdet=sdet, odet=odet,
        pix0=pix0, twotheta_axis=tt_axis, distance=distance, close_distance=close_distance,
        convention=conv, pivot=pivot, Xbeam=_t(Xbeam), Ybeam=_t(Ybeam), Fbeam=Fbeam,
        Sbeam=Sbeam, Xclose=_t(Xclose), Yclose=_t(Yclose), Fclose=Fclose, Sclose=Sclose,
        ORGX=ORGX, ORGY=ORGY, dials_origin_mm=dials, detsize_f=detsize_f, detsize_s=detsize_s,
        twotheta=_t(twotheta), curved=det.curved, point_pixel=det.point_pixel, notes=notes)


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else _vec(x)


__all__ = ["DetectorGeometry", "build_detector", "c_unitize"]
