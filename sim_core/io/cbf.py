"""miniCBF images with a Pilatus-style header, written through fabio.

A miniCBF file is a CIF data block holding a free-text header (``_array_data.header_contents``, the
``# Key value`` lines that Pilatus detectors write) and the pixels as signed 32-bit counts with
``x-CBF_BYTE_OFFSET`` compression. DIALS (dxtbx ``FormatCBFMini``), XDS and fabio read such files.

The header declares ``_array_data.header_convention PILATUS_1.2``, the convention under which
fabio parses the ``# Key value`` lines into fields (``fabio.open(f).pilatus_headers["Beam_xy"]``;
under any other convention fabio hands over the raw text) and pyFAI and XDS take the values as a
Pilatus header. dxtbx also reads it as a Pilatus (``FormatCBFMiniPilatus``) and masks the gaps
between Pilatus modules, which needs an image of a Pilatus's size (487 × 195 modules with 7 and 17
pixel gaps: 487 × 195, 487 × 619, 1475 × 1679, 2463 × 2527 …); DIALS users of other sizes import
the NeXus output (``sim_core.io.nexus``), which also carries tilts and rotations. The ``# Detector:``
line does not name a Pilatus: the detector is a simulated one.

The values come from the same :class:`~sim_core.io.smv.SmvGeometry` as the SMV header: the beam
centre is where the direct beam meets the detector (``Fbeam``, ``Sbeam``) in pixels from the corner
of the first pixel (dxtbx's reading of ``Beam_xy``), the distance is the sample to that spot. A
miniCBF header describes a detector normal to the beam; ``Detector_2theta`` states a 2θ tilt (its
axis is not expressible), detector rotations are not expressible at all. The timestamp is fixed by default so that the same render gives the
same bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

import numpy as np

from ..units import RTD
from .smv import SmvGeometry

PathLike = Union[str, "os.PathLike[str]"]

#: ``_array_data.header_convention``: the only one whose header fabio parses into fields
HEADER_CONVENTION = "PILATUS_1.2"
#: the ``# Detector:`` line
DETECTOR_NAME = "nanoBragg simulated pixel array detector, S/N 00-0000"
#: the default timestamp line: fixed, so that identical renders give identical files
FIXED_TIMESTAMP = "1970-01-01T00:00:00.000"


def _f(x: float) -> str:
    """Ten significant digits: exact for the values configs hold, short for round numbers."""
    return "%.10g" % x


def minicbf_header(geom: SmvGeometry, *, exposure_s: float, sensor_thickness_m: float = 0.0,
                   count_cutoff: int = 65535, timestamp: str = FIXED_TIMESTAMP) -> str:
    """The ``# ...`` lines of the Pilatus-style header for ``geom`` (``\\n`` separated).

    Args:
        geom: the resolved geometry (pixel size, distance, wavelength, beam centre, phi0/osc, 2θ).
        exposure_s: the exposure time (``Exposure_time`` and ``Exposure_period``).
        sensor_thickness_m: ``# Silicon sensor, thickness``; dxtbx corrects parallax with it.
        count_cutoff: the largest trusted count (pixels at it are overloads).
        timestamp: the date line, ISO 8601 with milliseconds.
    """
    px = geom.pixel_size_m
    start = geom.phi0_rad * RTD
    osc = geom.osc_rad * RTD
    lines = [
        f"Detector: {DETECTOR_NAME}",
        timestamp,
        f"Pixel_size {_f(px)} m x {_f(px)} m",
        f"Silicon sensor, thickness {_f(sensor_thickness_m)} m",
        f"Exposure_time {_f(exposure_s)} s",
        f"Exposure_period {_f(exposure_s)} s",
        "Tau = 0 s",
        f"Count_cutoff {int(count_cutoff)} counts",
        "N_excluded_pixels = 0",
        f"Wavelength {_f(geom.wavelength_m * 1e10)} A",
        f"Detector_distance {_f(geom.distance_m)} m",
        f"Beam_xy ({_f(geom.fbeam_m / px)}, {_f(geom.sbeam_m / px)}) pixels",
        f"Start_angle {_f(start)} deg.",
        f"Angle_increment {_f(osc)} deg.",
        f"Detector_2theta {_f(geom.twotheta_rad * RTD)} deg.",
        f"Phi {_f(start)} deg.",
        f"Phi_increment {_f(osc)} deg.",
        "N_oscillations 1",
    ]
    return "\n".join("# " + line for line in lines)


def write_cbf(path: PathLike, counts: np.ndarray, geom: SmvGeometry, *, exposure_s: float,
              sensor_thickness_m: float = 0.0, count_cutoff: int = 65535,
              timestamp: str = FIXED_TIMESTAMP) -> Path:
    """Write ``counts`` (slow, fast) as a byte-offset miniCBF at ``path``, atomically.

    The counts are stored as int32; values outside its range are refused. fabio names the CIF data
    block after the file, so the file is written under its final name in a private temporary folder
    beside ``path`` and then renamed: a reader never sees half a file, and the bytes do not depend
    on a temporary name.
    """
    from fabio.cbfimage import CbfImage

    img = np.asarray(counts)
    if img.shape != (geom.spixels, geom.fpixels):
        raise ValueError(f"image shape {img.shape} does not match the geometry's "
                         f"{(geom.spixels, geom.fpixels)} (slow, fast)")
    if img.dtype.kind not in "iu":
        raise ValueError(f"CBF counts must be integers, got {img.dtype}")
    info = np.iinfo(np.int32)
    if img.size and (img.min() < info.min or img.max() > info.max):
        raise ValueError("CBF counts must fit in 32-bit signed integers")
    header = {
        "_array_data.header_convention": HEADER_CONVENTION,
        "_array_data.header_contents": minicbf_header(
            geom, exposure_s=exposure_s, sensor_thickness_m=sensor_thickness_m,
            count_cutoff=count_cutoff, timestamp=timestamp),
    }
    frame = CbfImage(data=np.ascontiguousarray(img, dtype=np.int32), header=header)
    target = Path(path)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        frame.write(str(folder / target.name))
        os.replace(folder / target.name, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return target


__all__ = ["HEADER_CONVENTION", "DETECTOR_NAME", "FIXED_TIMESTAMP", "minicbf_header", "write_cbf"]
