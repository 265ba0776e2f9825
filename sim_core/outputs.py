"""The files of a render: nanoBragg's float, SMV int, SMV noise and PGM images, a miniCBF image, an
NXmx NeXus file and a PNG preview.

Each writer takes a :class:`~sim_core.simulate.SimulationResult`. Files are written to a temporary
name in the target folder and renamed, so that a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .config import get_field
from .io.cbf import write_cbf
from .io.floatimage import write_float_image
from .io.nexus import frame_pixels, write_nexus
from .io.pgm import auto_pgm_scale, write_pgm
from .io.png import write_png_preview
from .io.smv import SmvGeometry, auto_int_scale, int_image, write_smv
from .noise import NoiseResult, poisson_noise
from .output_formats import BY_KEY, OUTPUT_FORMATS, numbered_name


@dataclass
class OutputReport:
    paths: dict[str, Path]
    int_scale: float | None = None
    pgm_scale: float | None = None
    noise: NoiseResult | None = None


def smv_geometry(result) -> SmvGeometry:
    exp = result.experiment
    det = exp.detector
    s = exp.sampling
    return SmvGeometry(
        fpixels=det.fpixels, spixels=det.spixels, pixel_size_m=float(det.pixel_size),
        distance_m=float(det.distance),
        wavelength_m=float(result.config.beam.wavelength_A) * 1e-10,
        xbeam_m=float(det.Xbeam), ybeam_m=float(det.Ybeam), fbeam_m=float(det.Fbeam),
        sbeam_m=float(det.Sbeam), detsize_s_m=float(det.detsize_s),
        dials_origin_mm=tuple(float(x) for x in det.dials_origin_mm), orgx=float(det.ORGX),
        orgy=float(det.ORGY), close_distance_m=float(det.close_distance), phi0_rad=s.phi0,
        osc_rad=s.osc, twotheta_rad=float(det.twotheta))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_path(path: Path):
    """A temporary path beside ``path`` (rename it onto ``path`` once complete)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def _atomic(path: Path, write) -> Path:
    tmp = atomic_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def int_scale_of(result) -> float:
    return result.config.outputs.int_scale or auto_int_scale(result.image_stats.max_I)


def write_cbf_file(result, path: Path | str, counts) -> Path:
    """Write ``counts`` (the int or noise image of ``result``) as a miniCBF at ``path``.

    The header takes the SMV header's geometry, the exposure time (``beam.exposure_s``) and the
    sensor thickness (``detector.thickness_um``); the count cutoff is 65535, where the SMV images
    clamp.
    """
    cfg = result.config
    return write_cbf(path, counts, smv_geometry(result), exposure_s=float(cfg.beam.exposure_s),
                     sensor_thickness_m=float(cfg.detector.thickness_um or 0.0) * 1e-6)


def write_outputs(result, directory: Path | str, files: Mapping[str, Optional[str]], *,
                  cbf_counts: str = "int", nexus_image: Optional[str] = None) -> OutputReport:
    """Write the files ``files`` names into ``directory``: output key (a row of
    ``sim_core.output_formats``: float, smv, noise, pgm, cbf, png, hkl, nexus, reflections) -> file
    name; keys missing or None are skipped. The report's ``paths`` has the same keys.

    The ``cbf`` file holds the counts of the int image (``cbf_counts="int"``) or of the noise image
    (``"noise"``, drawn with the config's seed, the same pixels as the noise file). The ``nexus``
    file is an NXmx file of this one image holding the float image, the int image or the noise
    image (``nexus_image``; None: ``outputs.nexus_image``).
    """
    if cbf_counts not in ("int", "noise"):
        raise ValueError(f"cbf_counts must be 'int' or 'noise', not {cbf_counts!r}")
    unknown = set(files) - set(BY_KEY)
    if unknown:
        raise ValueError(f"no output format {sorted(unknown)}; the formats are {sorted(BY_KEY)}")
    want = {k: v for k, v in files.items() if v}
    nexus_image = nexus_image or result.config.outputs.nexus_image
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.config.outputs
    exp = result.experiment
    paths: dict[str, Path] = {}
    report = OutputReport(paths=paths)
    image = result.image
    roi = exp.roi
    if "float" in want:
        paths["float"] = _atomic(out / want["float"], lambda p: write_float_image(p, image))
    scale = int_scale_of(result)
    report.int_scale = scale
    geom = smv_geometry(result)
    ints = None
    if ("smv" in want or ("cbf" in want and cbf_counts == "int")
            or ("nexus" in want and nexus_image == "int")):
        ints = int_image(image, scale, cfg.adc_offset, roi)
    if "smv" in want:
        paths["smv"] = _atomic(out / want["smv"], lambda p: write_smv(p, ints, geom))
    if "pgm" in want:
        pscale = cfg.pgm_scale or auto_pgm_scale(result.image_stats.rmsd, scale)
        report.pgm_scale = pscale
        paths["pgm"] = _atomic(out / want["pgm"], lambda p: write_pgm(p, image, pscale, roi))
    if ("noise" in want or ("cbf" in want and cbf_counts == "noise")
            or ("nexus" in want and nexus_image == "noise")):
        report.noise = poisson_noise(image, result.config.noise.seed, adc_offset=cfg.adc_offset,
                                     roi=roi, rng=exp.rng)
    if "noise" in want:
        noisy = report.noise.image
        paths["noise"] = _atomic(out / want["noise"], lambda p: write_smv(p, noisy, geom))
    if "cbf" in want:
        counts = ints if cbf_counts == "int" else report.noise.image
        paths["cbf"] = write_cbf_file(result, out / want["cbf"], counts)
    if "nexus" in want:
        pixels = ints if nexus_image == "int" else \
            frame_pixels(result, nexus_image, noise=report.noise)
        paths["nexus"] = write_nexus(out / want["nexus"], [pixels], result.config,
                                     image=nexus_image, experiment=exp)
    if "png" in want:
        paths["png"] = _atomic(out / want["png"], lambda p: write_png_preview(p, image))
    if "hkl" in want and exp.hkl_grid is not None:
        from .io.hkl import write_hkl
        paths["hkl"] = _atomic(out / want["hkl"], lambda p: write_hkl(p, exp.hkl_grid))
    if "reflections" in want:
        from .ground_truth import image_truth
        text = image_truth(result).reflections_csv()
        paths["reflections"] = _atomic(out / want["reflections"], lambda p: Path(p).write_text(text))
    return report


def write_nanobragg_files(result, directory: Path | str = ".", *,
                          number: int | None = None) -> OutputReport:
    """The files the C program would write for this config, under its names (and the miniCBF of
    ``outputs.cbf_file``, the NeXus file of ``outputs.nexus_file``): every format whose config
    field names a file; ``number``: image ``number`` of a series, each name numbered
    (``intimage_00003.img``) and no NeXus file (the series' one file holds every image: see
    :class:`~sim_core.io.nexus.NexusWriter`)."""
    files = {}
    for f in OUTPUT_FORMATS:
        name = get_field(result.config, f.config_field) if f.config_field else None
        if name and (number is None or f.per_image):
            files[f.key] = name if number is None else numbered_name(name, number)
    return write_outputs(result, directory, files)


__all__ = ["write_outputs", "write_nanobragg_files", "write_cbf_file", "smv_geometry",
           "OutputReport", "atomic_path", "int_scale_of"]
