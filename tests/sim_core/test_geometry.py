"""Resolved geometry, sampling and sources against what the C program printed for each golden case."""

import math
import re

import numpy as np
import pytest
import torch

from sim_core.experiment import build_experiment, local_files
from sim_core.geometry.rotations import axis_rotation_matrix, rotate_axis, rotate_xyz
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.sampling import resolve_sampling
from tests.golden import case_names, load_case


def c_values(text: str, key: str) -> list[float]:
    m = re.search(re.escape(key) + r"\s*([-+0-9.eE]+)\s*([-+0-9.eE]+)?\s*([-+0-9.eE]+)?", text)
    assert m, key
    return [float(x) for x in m.groups() if x is not None]


def experiment(name):
    case = load_case(name)
    parsed = parse_nanobragg_args(case.our_args, base_dir=case.folder)
    return case, build_experiment(parsed.config, local_files(case.folder))


@pytest.mark.parametrize("name", case_names())
def test_detector_matches_c_stdout(name):
    case, exp = experiment(name)
    out = (case.folder / "c_stdout.log").read_text()
    det = exp.detector
    assert f"{det.convention} convention selected" in out
    assert ("pivoting detector around sample" in out) == (det.pivot == "sample")
    pairs = {
        "Fbeam=": [det.Fbeam], "Sbeam=": [det.Sbeam], "Fclose=": [det.Fclose],
        "Sclose=": [det.Sclose], "Xbeam=": [det.Xbeam], "Ybeam=": [det.Ybeam],
        "DIRECTION_OF_DETECTOR_X-AXIS=": det.fdet, "DIRECTION_OF_DETECTOR_Y-AXIS=": det.sdet,
        "DIRECTION_OF_DETECTOR_Z-AXIS=": det.odet, "INCIDENT_BEAM_DIRECTION=": exp.beam.direction,
        "spindle ROTATION_AXIS=": exp.goniometer.axis, "dials origin=": det.dials_origin_mm,
    }
    for key, ours in pairs.items():
        want = c_values(out, key)
        got = [float(x) for x in ours]
        # %g prints six significant digits
        assert got == pytest.approx(want, rel=2e-5, abs=2e-6), key
    m = re.search(r"distance=([-0-9.e+]+) detsize=([-0-9.e+]+)x([-0-9.e+]+)\s+pixel=([-0-9.e+]+) "
                  r"meters \((\d+)x(\d+) pixels\)", out)
    assert float(det.distance) == pytest.approx(float(m.group(1)), rel=1e-5)
    assert (det.fpixels, det.spixels) == (int(m.group(5)), int(m.group(6)))


@pytest.mark.parametrize("name", case_names())
def test_sampling_matches_c_stdout(name):
    case, exp = experiment(name)
    out = (case.folder / "c_stdout.log").read_text()
    assert f"created a total of {exp.beam.sources.count} sources" in out
    assert f"created a total of {exp.sampling.mosaic_domains} mosaic domains" in out
    assert f"  {exp.sampling.phi_steps} phi steps from" in out
    assert f"  {exp.oversample}x{exp.oversample} pixel oversample steps" in out
    m = re.search(r"sensor is ([-0-9.e+]+) m thick in (\d+) layers with mu= ([-0-9.e+]+)", out)
    assert exp.sampling.thickness.steps == int(m.group(2))
    assert exp.sampling.thickness.range == pytest.approx(float(m.group(1)), rel=1e-5)
    assert exp.sampling.detector_mu == pytest.approx(float(m.group(3)), rel=1e-5)
    cr = exp.crystal
    m = re.search(r"xtal: (\d+)x(\d+)x(\d+) cells", out)
    assert (cr.Na, cr.Nb, cr.Nc) == tuple(int(x) for x in m.groups())


@pytest.mark.parametrize("name", ["triclinic_misset", "mosflm_matrix", "custom_vectors",
                                  "dmin_roi"])
def test_cell_vectors_match_c_stdout(name):
    case, exp = experiment(name)
    out = (case.folder / "c_stdout.log").read_text()
    block = out.split("real-space cell vectors (Angstrom):")[1].split("\n")[2:5]
    rows = np.array([[float(x) for x in line.split()[1:]] for line in block])  # X, Y, Z rows
    ours = torch.stack((exp.crystal.a, exp.crystal.b, exp.crystal.c)).T.numpy() * 1e10
    np.testing.assert_allclose(ours, rows, atol=2e-8)
    recip = out.split("reciprocal-space cell vectors (Angstrom^-1):")[1].split("\n")[2:5]
    rrows = np.array([[float(x) for x in line.split()[1:]] for line in recip])
    stars = torch.stack((exp.crystal.a_star, exp.crystal.b_star, exp.crystal.c_star)).T.numpy()
    np.testing.assert_allclose(stars, rrows, atol=2e-8)


def test_rotations_follow_nanobragg_order():
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    # x then y then z, right handed
    r = rotate_xyz(v, math.pi / 2, 0.0, 0.0)
    assert r.tolist() == pytest.approx([1.0, -3.0, 2.0])
    r = rotate_xyz(v, 0.0, math.pi / 2, 0.0)
    assert r.tolist() == pytest.approx([3.0, 2.0, -1.0])
    r = rotate_xyz(v, 0.0, 0.0, math.pi / 2)
    assert r.tolist() == pytest.approx([-2.0, 1.0, 3.0])
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert rotate_axis(v, axis, math.pi / 2).tolist() == pytest.approx([-2.0, 1.0, 3.0])
    R = axis_rotation_matrix(axis, torch.tensor([0.3, -1.1], dtype=torch.float64))
    for i, phi in enumerate((0.3, -1.1)):
        assert (R[i] @ v).tolist() == pytest.approx(rotate_axis(v, axis, phi).tolist())


def _cfg(scan=None, **crystal):
    from sim_core.config import load_config
    return load_config({"crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}, **crystal},
                        "scan": scan or {}, "structure_factors": {"default_F": 1}})


@pytest.mark.parametrize("given,expected", [
    ({}, (1, 0.0, 0.0)),                                       # nothing: one step
    ({"osc_range_deg": 1.0}, (2, 1.0, 0.5)),                   # osc only: two steps of osc/2
    ({"phi_step_deg": 0.2}, (2, 0.2, 0.2)),                    # step only: osc = step, 2 steps
    ({"osc_range_deg": 1.0, "phi_step_deg": 0.3}, (4, 1.0, 0.3)),  # ceil(osc/step)
    ({"phi_steps": 4}, (4, 1.0, 0.25)),                        # steps only: osc 1 degree
    ({"phi_steps": 5, "osc_range_deg": 0.5}, (5, 0.5, 0.1)),
    ({"phi_steps": 0}, (1, 1.0, 1.0)),                         # 0 steps counts as 1
])
def test_phi_rules(given, expected):
    s = resolve_sampling(_cfg(given))
    steps, osc, step = expected
    assert s.phi_steps == steps
    assert math.degrees(s.osc) == pytest.approx(osc)
    assert math.degrees(s.phi_step) == pytest.approx(step)


def test_thickness_split_uses_n_minus_one_steps():
    from sim_core.config import load_config
    cfg = load_config({"crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}},
                       "structure_factors": {"default_F": 1},
                       "detector": {"thickness_um": 300, "thickness_steps": 4}})
    s = resolve_sampling(cfg)
    # nanoBragg spreads 4 layers over 0..300 um: a step of 100 um, not 75
    assert s.thickness.steps == 4 and s.thickness.step == pytest.approx(100e-6)
    assert s.detector_mu == pytest.approx(1 / 300e-6)


def test_mosaic_domain_rules():
    s = resolve_sampling(_cfg(mosaic_spread_deg=0.5))
    assert s.mosaic_domains == 10  # finite spread, no count: 10 domains
    s = resolve_sampling(_cfg(mosaic_domains=5))
    assert s.mosaic_domains == 1 and s.mosaic_spread == 0.0  # count without spread
    s = resolve_sampling(_cfg(mosaic_spread_deg=0.0, mosaic_domains=7))
    assert s.mosaic_domains == 1


def test_custom_convention_default_twotheta_axis_is_nanobraggs_initial_value():
    """nanoBragg initialises twotheta_axis to (0, 1, 0); only the named conventions replace it
    (found by comparing random custom-vector command lines with the C program)."""
    from sim_core.nanobragg_args import parse_nanobragg_args
    cfg = parse_nanobragg_args(["-cell", "50", "-default_F", "1", "-fdet_vector", "0", "0", "1",
                                "-twotheta", "10", "-detpixels", "8"]).config
    det = build_experiment(cfg).detector
    assert det.twotheta_axis.tolist() == [0.0, 1.0, 0.0]
    # the detector normal turned by 10 degrees about +y, from +x towards -z
    assert det.odet.tolist() == pytest.approx([math.cos(math.radians(10)), 0.0,
                                               -math.sin(math.radians(10))])
