"""The numpy reading of a detector description (what the API answers /geometry with) gives the
d and 2θ that sim_core's own geometry gives, flat and curved, tilted and not."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from sim_core.config import load_config
from sim_core.geometry.description import described_resolution
from sim_core.geometry.detector import build_detector
from sim_core.geometry.resolution import beam_direction, describe_detector, pixel_resolution
from sim_core.lab_frame import resolve_frame

DETECTORS = {
    "flat": {"fast_pixels": 40, "slow_pixels": 30, "distance_mm": 80},
    "tilted": {"fast_pixels": 40, "slow_pixels": 30, "distance_mm": 80, "twotheta_deg": 12,
               "rotx_deg": 3, "roty_deg": -2, "rotz_deg": 5},
    "curved": {"fast_pixels": 40, "slow_pixels": 30, "distance_mm": 80, "curved": True},
}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_described_resolution_matches_sim_core(name):
    cfg = load_config({"crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}},
                       "structure_factors": {"default_F": 1}, "beam": {"wavelength_A": 1.3},
                       "detector": DETECTORS[name]})
    frame = resolve_frame(cfg)
    det, beam = build_detector(cfg.detector, frame), beam_direction(frame)
    desc = describe_detector(det, beam, 1.3)
    slow, fast = np.meshgrid(np.arange(30), np.arange(40), indexing="ij")
    d_ref, tt_ref = pixel_resolution(det, beam, 1.3, slow.ravel(), fast.ravel())
    d, tt = described_resolution(desc, slow.ravel(), fast.ravel())
    np.testing.assert_allclose(tt, tt_ref.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d, d_ref.numpy(), rtol=1e-12)


def test_the_simulate_docstring_runs():
    import sim_core.simulate as module
    assert doctest.testmod(module).failed == 0
