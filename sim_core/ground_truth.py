"""The ground truth of a rendered image: its true crystal, its reflections, a DIALS experiment list.

For a method developer the truth of a simulated image is what an indexing or integration program
should find: the crystal's real-space matrix in the lab frame, the reflections whose spots are on the
detector with their predicted positions, and the same as a dxtbx experiment list that DIALS reads.

Everything is in the simulator's lab frame (``sim_core.lab_frame``: the sample at the origin, metres
in the geometry, Angstrom and millimetres here), at the crystal of the image's middle φ (a still: its
only φ), without the mosaic domains' rotations:

- **the crystal**: ``real_space_A`` (rows a, b, c in Angstrom) and its inverse ``reciprocal_inv_A``
  (columns a*, b*, c*), so that the diffraction vector of ``hkl`` is ``q = reciprocal_inv_A @ hkl``
  and the fractional index of a vector ``q`` is ``real_space_A @ q``; also as nanoBragg's ``-mat``
  file (MOSFLM's layout: the A matrix, reciprocal vectors times the wavelength, as columns; the
  misset line; the U matrix; the cell).
- **the reflections**: with ``s0 = beam / lambda`` (beam: the unit incident direction), reflection
  ``hkl`` has ``q = reciprocal_inv_A @ hkl``, ``d = 1 / |q|``, excitation error
  ``|s0 + q| - 1 / lambda`` (1/Angstrom; positive outside the Ewald sphere) and is predicted where
  the ray from the sample along ``s0 + q`` meets the detector plane (the point of the Ewald sphere
  nearest the reciprocal lattice point, where a still's spot peaks). Positions are in pixels from the
  first pixel's outer corner, ``fast_px, slow_px``: pixel ``(s, f)`` covers ``[f, f + 1)`` and its
  centre is at ``f + 0.5``, as in the traces. ``F`` is the structure factor the render uses at that
  node; ``intensity`` is the image summed over the spot: over every pixel whose centre indexes
  nearest to ``hkl`` (``ceil(x - 0.5)``, the renderer's rounding), each pixel counted once.
- **which reflections**: those that index nearest to some pixel centre (so the table is bounded by
  the detector's pixels, its reach, not by the resolution sphere), ``hkl != 000`` (the direct beam),
  not beyond ``sampling.dmin_A``, predicted on the detector, and with ``|excitation_error|`` within
  the reach of a spot (:func:`excitation_limit`: the width of the crystal's shape transform plus what
  the mosaic spread, the bandwidth and the divergence add).

A curved detector is refused (its pixels are not on a plane).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .output_formats import CRYSTAL_MATRIX, REFLECTIONS, TRUTH

#: the columns of reflections.csv, in order
REFLECTION_COLUMNS = ("h", "k", "l", "d_A", "fast_px", "slow_px", "excitation_error", "F",
                      "intensity")
#: pixels whose indices are computed at once (memory, not speed)
_CHUNK = 1 << 20


@dataclass
class ImageTruth:
    """The truth of one rendered image (see the module's description)."""

    #: the image's rows a, b, c (Angstrom) and columns a*, b*, c* (1/Angstrom), lab frame
    real_space_A: np.ndarray
    reciprocal_inv_A: np.ndarray
    wavelength_A: float
    #: unit incident beam direction
    beam_direction: np.ndarray
    #: column name -> array, sorted by decreasing intensity
    reflections: dict[str, np.ndarray]
    #: dxtbx models of the image (to_dict layouts)
    beam_model: dict
    detector_model: dict

    @property
    def count(self) -> int:
        return int(self.reflections["h"].size)

    def crystal_model(self) -> dict:
        a, b, c = (list(map(float, v)) for v in self.real_space_A)
        return {"__id__": "crystal", "real_space_a": a, "real_space_b": b, "real_space_c": c,
                "space_group_hall_symbol": " P 1"}

    def record(self) -> dict:
        """The JSON record of the image's truth (what :func:`experiment_list` assembles)."""
        return {
            "wavelength_A": self.wavelength_A,
            "real_space_A": {k: list(map(float, v)) for k, v in zip("abc", self.real_space_A)},
            "reciprocal_inv_A": {k: list(map(float, v)) for k, v in
                                 zip(("a_star", "b_star", "c_star"), self.reciprocal_inv_A.T)},
            "reflections": self.count,
            "beam": self.beam_model,
            "detector": self.detector_model,
            "crystal": self.crystal_model(),
        }

    def mosflm_text(self) -> str:
        return mosflm_matrix_text(self.reciprocal_inv_A, self.wavelength_A)

    def reflections_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(REFLECTION_COLUMNS)
        cols = [self.reflections[c] for c in REFLECTION_COLUMNS]
        for row in zip(*cols):
            w.writerow([int(x) if i < 3 else repr(float(x)) for i, x in enumerate(row)])
        return out.getvalue()


# torch is imported where a tensor is made: the API assembles experiment lists without it
def _np(t) -> np.ndarray:
    import torch

    return t.detach().to("cpu", torch.float64).numpy() if isinstance(t, torch.Tensor) \
        else np.asarray(t, dtype=np.float64)


def true_crystal(exp) -> np.ndarray:
    """Rows a, b, c (Angstrom, lab frame) of the crystal at the middle φ of the image."""
    import torch

    from .geometry.rotations import axis_rotation_matrix

    cr = exp.crystal
    A0 = np.stack([_np(cr.a), _np(cr.b), _np(cr.c)]) * 1e10
    phi = exp.scan.phi_start_rad + exp.scan.osc_range_rad / 2.0
    R = _np(axis_rotation_matrix(exp.goniometer.axis.to(torch.float64), float(phi)))
    return A0 @ R.T


def excitation_limit(exp, q_inv_A: np.ndarray) -> np.ndarray:
    """How far from the Ewald sphere (1/Angstrom) a reflection of ``|q|`` still makes a spot: the
    half-width of the crystal's shape transform along its shortest edge (``1 / (N |a|)``, the first
    zero of the square crystal's), plus ``|q|`` times the mosaic spread (radians) and half the
    divergence, plus ``|q|² λ / 2`` times the relative bandwidth."""
    cr, s, bm = exp.crystal, exp.sampling, exp.config.beam
    edge = min(float(np.linalg.norm(_np(v))) * 1e10 * n
               for v, n in ((cr.a, cr.Na), (cr.b, cr.Nb), (cr.c, cr.Nc)))
    div = max(bm.hdiv_range_mrad or 0.0, bm.vdiv_range_mrad or 0.0) * 1e-3
    lam = bm.wavelength_A
    return (1.0 / edge + q_inv_A * (s.mosaic_spread + div / 2.0)
            + 0.5 * q_inv_A ** 2 * lam * bm.dispersion_pct / 100.0)


def _detector(exp):
    det = exp.detector
    if det.curved:
        raise ConfigError("ground truth needs a flat detector: its pixels are predicted on a "
                          "plane (detector.curved)", field="detector.curved")
    return (_np(det.pix0), _np(det.fdet), _np(det.sdet), _np(det.odet),
            float(det.pixel_size), det.fpixels, det.spixels)


@lru_cache(maxsize=4)
def _pixel_directions(detector: tuple, start: int, rows: int) -> np.ndarray:
    """Unit directions of the pixel centres of rows ``start`` to ``start + rows`` of ``detector``
    (pix0, fdet, sdet, pixel size, fast and slow pixels): every image of a dataset has the same
    detector, so they are made once (read-only)."""
    pix0, f, s, px, F, S = detector
    pix0, f, s = np.array(pix0), np.array(f), np.array(s)
    along_fast = ((np.arange(F) + 0.5) * px)[:, None] * f
    slow = ((np.arange(start, min(S, start + rows)) + 0.5) * px)[:, None, None] * s
    pos = (pix0 + along_fast[None, :, :] + slow).reshape(-1, 3)
    dirs = pos / np.sqrt(np.einsum("ij,ij->i", pos, pos))[:, None]
    dirs.setflags(write=False)
    return dirs


def _sum_by_index(idx: np.ndarray, weights: np.ndarray, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(keys, sums): the distinct rows of ``idx`` (N, 3), encoded as ``(h * width + k) * width + l``
    in increasing order, and ``weights`` summed over the rows of each (in row order).

    The indices a detector sees span a small box: counted in that box (a bincount) rather than by
    sorting every pixel's key, which a still's ground truth would otherwise spend most of its time
    on; the keys and the sums are the same either way."""
    lo = idx.min(axis=0)
    ext = idx.max(axis=0) - lo + 1
    box = int(ext[0] * ext[1] * ext[2])
    if box > max(1 << 16, 4 * idx.shape[0]):  # a sparse box: sort instead
        key = (idx[:, 0] * width + idx[:, 1]) * width + idx[:, 2]
        u, inv = np.unique(key, return_inverse=True)
        return u, np.bincount(inv, weights=weights, minlength=u.size)
    rel = idx - lo
    local = (rel[:, 0] * ext[1] + rel[:, 1]) * ext[2] + rel[:, 2]
    present = np.flatnonzero(np.bincount(local, minlength=box))
    sums = np.bincount(local, weights=weights, minlength=box)[present]
    h, rest = np.divmod(present, ext[1] * ext[2])
    k, l_ = np.divmod(rest, ext[2])
    return ((h + lo[0]) * width + (k + lo[1])) * width + (l_ + lo[2]), sums


def _pixel_hkl_sums(exp, image: np.ndarray, real: np.ndarray, lam: float, beam: np.ndarray):
    """(keys, sums, span, width): the rounded hkl of the pixel centres, each once, encoded as
    ``((h + span) * width + k + span) * width + l + span``, and the image summed over the pixels
    of each."""
    pix0, f, s, _, px, F, S = _detector(exp)
    flat = np.asarray(image, dtype=np.float64).reshape(-1)
    keys_parts, sums_parts = [], []
    # the indices reachable from the detector bound the encoding
    corners = np.array([pix0 + px * (i * F * f + j * S * s) for i in (0, 1) for j in (0, 1)])
    d = corners / np.linalg.norm(corners, axis=1, keepdims=True)
    qmax = float(np.linalg.norm(d[:, None, :] - d[None, :, :], axis=-1).max() +
                 np.linalg.norm(d - beam, axis=1).max()) / lam
    span = int(math.ceil(qmax * np.linalg.norm(real, axis=1).max())) + 2
    width = 2 * span + 1
    # fractional indices of a pixel centre: real @ (d - beam) / lambda, d its unit direction
    M = np.ascontiguousarray(real.T / lam)
    offset = (beam / lam) @ real.T
    rows = max(1, _CHUNK // F)
    detector = (tuple(pix0), tuple(f), tuple(s), px, F, S)
    for start in range(0, S, rows):
        dirs = _pixel_directions(detector, start, rows)
        idx = np.ceil(dirs @ M - offset - 0.5).astype(np.int64) + span
        weights = flat[start * F:start * F + idx.shape[0]]
        u, sums = _sum_by_index(idx, weights, width)
        keys_parts.append(u)
        sums_parts.append(sums)
    keys = np.concatenate(keys_parts)
    sums = np.concatenate(sums_parts)
    u, inv = np.unique(keys, return_inverse=True)
    return u, np.bincount(inv, weights=sums, minlength=u.size), span, width


def predict_reflections(exp, image: np.ndarray, *, limit_inv_A: float | None = None
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(columns, real-space matrix, reciprocal matrix) of the image ``image`` rendered from ``exp``.

    ``limit_inv_A`` replaces :func:`excitation_limit` (the largest |excitation error| listed).
    """
    import torch

    pix0, f, s, o, px, F, S = _detector(exp)
    lam = float(exp.config.beam.wavelength_A)
    beam = _np(exp.beam.direction)
    real = true_crystal(exp)
    recip = np.linalg.inv(real)
    keys, sums, span, width = _pixel_hkl_sums(exp, image, real, lam, beam)
    l_ = keys % width - span
    k_ = (keys // width) % width - span
    h_ = keys // (width * width) - span
    hkl = np.stack([h_, k_, l_], axis=1)
    keep = np.any(hkl != 0, axis=1)
    hkl, sums = hkl[keep], sums[keep]
    q = hkl.astype(np.float64) @ recip.T
    qlen = np.linalg.norm(q, axis=1)
    d_A = 1.0 / qlen
    s1 = beam / lam + q
    s1len = np.linalg.norm(s1, axis=1)
    eps = s1len - 1.0 / lam
    ray = s1 / s1len[:, None]
    toward = ray @ o
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float(pix0 @ o) / toward
        hit = ray * t[:, None] - pix0
        fast = hit @ f / px
        slow = hit @ s / px
    limit = excitation_limit(exp, qlen) if limit_inv_A is None else np.full_like(qlen,
                                                                                 limit_inv_A)
    dmin = exp.config.sampling.dmin_A
    ok = ((toward > 0) & (fast >= 0) & (fast < F) & (slow >= 0) & (slow < S)
          & (np.abs(eps) <= limit) & ((d_A >= dmin) if dmin > 0 else True))
    hkl, d_A, fast, slow, eps, sums = hkl[ok], d_A[ok], fast[ok], slow[ok], eps[ok], sums[ok]
    sf = exp.structure_factors
    hk = torch.as_tensor(hkl, dtype=torch.float64)
    F_ = sf.nearest(hk[:, 0], hk[:, 1], hk[:, 2]).numpy() if hkl.size else np.zeros(0)
    order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0], -sums))
    cols = {"h": hkl[:, 0], "k": hkl[:, 1], "l": hkl[:, 2], "d_A": d_A, "fast_px": fast,
            "slow_px": slow, "excitation_error": eps, "F": np.asarray(F_, dtype=np.float64),
            "intensity": sums}
    return {k: v[order] for k, v in cols.items()}, real, recip


def beam_model(exp) -> dict:
    """The beam as dxtbx's ``Beam.to_dict``: ``direction`` points to the source, the polarization
    plane holds the E-vector (normal: beam x E), its fraction is (1 + Kahn factor) / 2."""
    bm = exp.beam
    return {"__id__": "monochromatic", "direction": [0.0 - float(x) for x in _np(bm.direction)],
            "wavelength": float(exp.config.beam.wavelength_A), "divergence": 0.0,
            "sigma_divergence": 0.0,
            "polarization_normal": [float(x) for x in _np(bm.vertical)],
            "polarization_fraction": (1.0 + float(bm.polarization)) / 2.0, "flux": 0.0,
            "transmission": 1.0, "probe": "x-ray", "sample_to_source_distance": 0.0}


def detector_model(exp) -> dict:
    """The detector as dxtbx's ``Detector.to_dict`` (one panel; origin: the first pixel's outer
    corner, millimetres; ``mu`` in 1/mm)."""
    pix0, f, s, _, px, F, S = _detector(exp)
    det_cfg = exp.config.detector
    att = det_cfg.absorption_length_um
    mu = 0.0 if not att else 1.0 / (att * 1e-3)
    panel = {"name": "Panel", "type": "SENSOR_PAD", "fast_axis": [float(x) for x in f],
             "slow_axis": [float(x) for x in s], "origin": [float(x) * 1e3 for x in pix0],
             "raw_image_offset": [0, 0], "image_size": [F, S], "pixel_size": [px * 1e3] * 2,
             "trusted_range": [-1.0, 65535.0], "thickness": det_cfg.thickness_um * 1e-3,
             "material": "", "mu": mu, "identifier": "", "mask": [], "gain": 1.0,
             "pedestal": 0.0, "px_mm_strategy": {"type": "SimplePxMmStrategy"}}
    return {"panels": [panel]}


def image_truth(result, *, limit_inv_A: float | None = None) -> ImageTruth:
    """The truth of a :class:`~sim_core.simulate.SimulationResult` (its experiment and image)."""
    exp = result.experiment
    cols, real, recip = predict_reflections(exp, result.image, limit_inv_A=limit_inv_A)
    return ImageTruth(real_space_A=real, reciprocal_inv_A=recip,
                      wavelength_A=float(exp.config.beam.wavelength_A),
                      beam_direction=_np(exp.beam.direction), reflections=cols,
                      beam_model=beam_model(exp), detector_model=detector_model(exp))


def mosflm_matrix_text(reciprocal_inv_A: np.ndarray, wavelength_A: float) -> str:
    """A MOSFLM matrix file of the crystal: the A matrix (columns a*, b*, c* times the wavelength),
    a zero misset, the U matrix (``A / lambda = U B`` with B upper triangular) and the cell.
    nanoBragg's ``-mat`` reads the first nine numbers; they are written to full precision."""
    A = reciprocal_inv_A * wavelength_A
    U, B = np.linalg.qr(reciprocal_inv_A)
    U = U * np.sign(np.diag(B))[None, :]
    real = np.linalg.inv(reciprocal_inv_A)
    lengths = np.linalg.norm(real, axis=1)

    def angle(i, j):
        return math.degrees(math.acos(float(real[i] @ real[j]) / lengths[i] / lengths[j]))

    cell = list(lengths) + [angle(1, 2), angle(0, 2), angle(0, 1)]
    lines = [" ".join(f"{x:.17g}" for x in row) for row in A]
    lines.append("0 0 0")
    lines += [" ".join(f"{x:.17g}" for x in row) for row in U]
    lines.append(" ".join(f"{x:.10g}" for x in cell))
    lines.append("0 0 0")
    return "\n".join(lines) + "\n"


def experiment_list(records: list[dict], image_files: list[str]) -> dict:
    """A dxtbx ExperimentList (the JSON of ``experiments.expt``): one still experiment per image,
    its crystal, beam and detector from the image's :meth:`ImageTruth.record`, its image set the
    one file ``image_files[i]`` (relative to the .expt file). Equal beams and detectors are one
    model shared by the experiments."""
    if len(records) != len(image_files):
        raise ValueError(f"{len(records)} truth records but {len(image_files)} image files")
    out = {"__id__": "ExperimentList", "experiment": [], "imageset": [], "beam": [],
           "detector": [], "goniometer": [], "scan": [], "crystal": [], "profile": [],
           "scaling_model": []}
    index: dict[tuple[str, str], int] = {}

    def model(kind: str, value: dict) -> int:
        key = (kind, json.dumps(value, sort_keys=True))
        if key not in index:
            index[key] = len(out[kind])
            out[kind].append(value)
        return index[key]

    for i, (rec, name) in enumerate(zip(records, image_files)):
        out["imageset"].append({"__id__": "ImageSet", "images": [name], "mask": "", "gain": "",
                                "pedestal": "", "dx": "", "dy": "", "params": {}})
        out["crystal"].append(rec["crystal"])
        out["experiment"].append({
            "__id__": "Experiment", "identifier": f"{name}",
            "beam": model("beam", rec["beam"]), "detector": model("detector", rec["detector"]),
            "crystal": i, "imageset": i})
    return out


def write_image_truth(truth: ImageTruth, folder: Path | str, *, number: int | None = None,
                      extra: dict | None = None) -> dict[str, Path]:
    """Write ``reflections.csv``, ``crystal.mat`` and ``truth.json`` (the record, with ``extra``)
    into ``folder``, numbered as image ``number`` of a dataset; returns kind -> path."""
    from .outputs import _atomic
    from .series import numbered_name

    folder = Path(folder)
    files = {"reflections": (REFLECTIONS, truth.reflections_csv()),
             "crystal matrix": (CRYSTAL_MATRIX, truth.mosflm_text()),
             "truth": (TRUTH, json.dumps({**(extra or {}), **truth.record()}, indent=1)
                       + "\n")}
    paths = {}
    for kind, (name, text) in files.items():
        path = folder / (name if number is None else numbered_name(name, number))
        _atomic(path, lambda p, text=text: Path(p).write_text(text))
        paths[kind] = path
    return paths


__all__ = ["REFLECTION_COLUMNS", "ImageTruth", "true_crystal", "excitation_limit",
           "predict_reflections", "beam_model", "detector_model", "image_truth",
           "mosflm_matrix_text", "experiment_list", "write_image_truth"]
