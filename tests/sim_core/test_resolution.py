"""Pixel centres, 2θ and resolution d against the C program's traces, and the plain-number detector
description (what the web page's viewer computes with) against sim_core."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sim_core.experiment import build_experiment, local_files
from sim_core.geometry.resolution import describe_detector, pixel_resolution
from sim_core.nanobragg_args import parse_nanobragg_args
from tests.golden import load_case

# tilted, two-theta, curved, sample-pivot and custom-vector detectors; one sensor layer each
CASES = ["detector_rotations_twotheta", "dials_convention", "xds_convention", "curved_detector",
         "pivot_sample_close_distance", "custom_vectors", "adxv_convention", "cubic_default_F"]


def _c_lines(text: str, key: str) -> np.ndarray:
    rows = re.findall(r"^TRACE_C: " + re.escape(key) + r" (.+)$", text, flags=re.M)
    return np.array([[float(x) for x in r.split()] for r in rows])


def c_pixel_centre(case) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre position m, incident unit vector, wavelength Å) of the traced pixel from the C trace.

    The trace shows one block per subpixel: with an odd oversampling the middle block is the
    pixel's centre; with an even one (flat detectors) the mean of the subpixel positions is.
    """
    text = (case.folder / "trace_c.log").read_text()
    pos = _c_lines(text, "pixel_pos_meters")
    n = len(pos)
    over = math.isqrt(n)
    assert over * over == n
    centre = pos[n // 2] if over % 2 else pos.mean(axis=0)
    return centre, _c_lines(text, "incident_vec")[0], _c_lines(text, "lambda_angstroms")[0][0]


def built(name):
    case = load_case(name)
    cfg = parse_nanobragg_args(case.our_args, base_dir=case.folder).config
    return case, cfg, build_experiment(cfg, local_files(case.folder))


@pytest.mark.parametrize("name", CASES)
def test_resolution_matches_the_c_trace(name):
    case, cfg, exp = built(name)
    centre, incident, lam = c_pixel_centre(case)
    cos2t = float(np.dot(centre / np.linalg.norm(centre), incident))
    c_two_theta = math.degrees(math.acos(cos2t))
    c_d = lam / (2.0 * math.sin(math.radians(c_two_theta) / 2.0))
    s, f = case.trace_pixel
    d, tt = pixel_resolution(exp.detector, cfg.beam.wavelength_A, [s], [f])
    # the C program prints %.15g; its positions round-trip to ~1e-15 m
    assert float(tt[0]) == pytest.approx(c_two_theta, rel=1e-9, abs=1e-9)
    assert float(d[0]) == pytest.approx(c_d, rel=1e-9)


def _from_description(g: dict, s: float, f: float) -> tuple[float, float]:
    """The documented recipe of ``describe_detector``, as the web page's viewer follows it."""
    px = g["pixel_size_m"]
    p = (np.array(g["pix0_m"]) + (f + 0.5) * px * np.array(g["fdet"])
         + (s + 0.5) * px * np.array(g["sdet"]))
    if g["curved"]:
        def rot(v, axis, phi):
            axis = np.asarray(axis)
            return (axis * np.dot(axis, v) * (1 - math.cos(phi)) + v * math.cos(phi)
                    + np.cross(axis, v) * math.sin(phi))
        dist = g["distance_m"]
        p = rot(rot(dist * np.array(g["beam"]), g["sdet"], p[1] / dist), g["fdet"], p[2] / dist)
    cos2t = np.dot(p, g["beam"]) / np.linalg.norm(p)
    tt = math.acos(max(-1.0, min(1.0, cos2t)))
    return g["wavelength_A"] / (2 * math.sin(tt / 2)), math.degrees(tt)


@pytest.mark.parametrize("name", ["detector_rotations_twotheta", "curved_detector",
                                  "custom_vectors", "xds_convention"])
def test_the_description_gives_the_same_numbers(name):
    _, cfg, exp = built(name)
    g = describe_detector(exp.detector, cfg.beam.wavelength_A)
    S, F = g["shape"]
    pixels = [(0, 0), (S - 1, F - 1), (S // 3, 2 * F // 3), (S - 1, 0)]
    d, tt = pixel_resolution(exp.detector, cfg.beam.wavelength_A,
                             [p[0] for p in pixels], [p[1] for p in pixels])
    for i, (s, f) in enumerate(pixels):
        dd, tt2 = _from_description(g, s, f)
        assert dd == pytest.approx(float(d[i]), rel=1e-12)
        assert tt2 == pytest.approx(float(tt[i]), rel=1e-12)


def test_beam_centre_has_infinite_d():
    _, cfg, exp = built("cubic_default_F")
    g = describe_detector(exp.detector, cfg.beam.wavelength_A)
    bc = g["beam_center_px"]
    # the default MOSFLM beam centre sits on a pixel corner's half-pixel shift: find the pixel
    s, f = int(bc["slow"]), int(bc["fast"])
    d, tt = pixel_resolution(exp.detector, cfg.beam.wavelength_A, [s], [f])
    assert float(tt[0]) < math.degrees(exp.detector.pixel_size / exp.detector.distance)
    assert torch.isfinite(d).all()
    d0, tt0 = pixel_resolution(exp.detector, cfg.beam.wavelength_A,
                               torch.tensor([bc["slow"] - 0.5]), torch.tensor([bc["fast"] - 0.5]))
    assert float(tt0[0]) == pytest.approx(0.0, abs=1e-6) and math.isinf(float(d0[0]))
