"""The verification report's logic (sim_core.verification) on the C program's golden case
phi0_carryover_c_parity: our render and trace against the C float image and TRACE_C log."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from sim_core.experiment import local_files
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import simulate
from sim_core.verification import EXPECTED_KEYS, Side, build_report, format_markdown, trace_stats
from tests.golden import load_case

CASE = "phi0_carryover_c_parity"


@functools.lru_cache(maxsize=None)
def _ours(phi_mode: str, dtype: str = "float64"):
    case = load_case(CASE)
    cfg = parse_nanobragg_args(case.args + ["-phi_mode", phi_mode], base_dir=case.folder).config
    cfg.run.trace_pixels = [case.trace_pixel]
    res = simulate(cfg, local_files(case.folder), device="cpu", dtype=dtype)
    return np.asarray(res.image), res.traces[0].text


def _reference() -> Side:
    case = load_case(CASE)
    return Side("reference", "reference", image=case.reference(),
                traces={case.trace_pixel: (case.folder / "trace_c.log").read_text()},
                expects_phi_lines=False)


def _render(phi_mode: str, dtype: str = "float64") -> Side:
    image, trace = _ours(phi_mode, dtype)
    return Side(f"cpu:{dtype}", "render", "cpu", dtype, phi_mode, image=image,
                traces={(65, 65): trace})


def test_c_parity_render_meets_every_criterion_against_the_c_program():
    rep = build_report([_render("c-parity"), _reference()], pixels=[(65, 65)], phi_steps=5,
                       phi_mode="c-parity")
    assert rep["verdict"] == "pass", rep["criteria"]
    names = [c["name"] for c in rep["criteria"]]
    assert names == ["every side ran", "traces present for every pixel with the expected keys",
                     "one TRACE_PY_PHI line per phi step", "image: reference against cpu:float64",
                     "traces: reference against cpu:float64"]
    ours = rep["sides"][0]["traces"]["65,65"]
    # the C program chose oversample 6 for this crystal: 36 blocks of 5 φ lines
    assert ours["blocks"] == 36 and ours["phi_lines"] == 180 and ours["missing_keys"] == []
    # the C trace's final intensity is the golden image's value at the traced pixel
    assert rep["sides"][1]["traces"]["65,65"]["final_intensity"] == pytest.approx(318514.59375,
                                                                                    rel=1e-6)
    comp = rep["comparisons"][0]
    assert comp["image"]["max_rel"] < 1e-6 and comp["image_tolerance"] == 1e-4
    assert comp["first_divergence"] is None and comp["traces"][0]["lines"] > 100


def test_default_phi_mode_names_the_first_diverging_key():
    rep = build_report([_render("default"), _reference()], pixels=[(65, 65)], phi_steps=5)
    assert rep["verdict"] == "fail"
    failed = {c["name"] for c in rep["criteria"] if not c["ok"]}
    assert failed == {"image: reference against cpu:float64",
                      "traces: reference against cpu:float64"}
    fd = rep["comparisons"][0]["first_divergence"]
    assert fd["key"] == "rot_a_angstroms" and fd["occurrence"] == 0 and fd["pixel"] == [65, 65]
    md = format_markdown(rep)
    assert "**first diverging key: `rot_a_angstroms`**" in md
    assert "**Verdict: FAIL** (3 of 5 criteria met)" in md
    assert "✘ traces: reference against cpu:float64" in md


def test_a_side_that_did_not_run_fails_plainly_and_float32_traces_are_not_judged():
    f64, f32 = _render("c-parity"), _render("c-parity", "float32")
    cuda = Side("cuda:float64", "render", "cuda", "float64", ran=False,
                reason="not run: no CUDA worker")
    rep = build_report([f64, f32, cuda], pixels=[(65, 65)], phi_steps=5)
    first = rep["criteria"][0]
    assert first == {"name": "every side ran", "ok": False, "value": "2 of 3",
                     "threshold": "3 of 3", "detail": "cuda:float64: not run: no CUDA worker"}
    by_name = {c["name"]: c for c in rep["criteria"]}
    img = by_name["image: cpu:float32 against cpu:float64"]
    assert img["ok"] and img["threshold"] == 1e-3 and 0 < img["value"] < 1e-5
    tr = by_name["traces: cpu:float32 against cpu:float64"]
    assert tr["ok"] and "not judged" in tr["detail"]
    assert "✘ not run: no CUDA worker" in format_markdown(rep)
    # judged on request: float32's lattice factors are far from 1e-12
    rep = build_report([f64, f32], pixels=[(65, 65)], phi_steps=5, trace_tolerance=1e-12)
    assert rep["verdict"] == "fail"


def test_trace_stats_counts_lines_and_missing_keys():
    _, text = _ours("c-parity")
    st = trace_stats(text, (65, 65), 5)
    assert st["blocks"] == 36 and st["phi_lines"] == st["phi_lines_expected"] == 180
    cut = "\n".join(l for l in text.splitlines() if "F_latt_b" not in l)
    assert trace_stats(cut, (65, 65), 5)["missing_keys"] == ["F_latt_b"]
    assert set(EXPECTED_KEYS) <= {l.split()[1] for l in text.splitlines()
                                  if l.startswith("TRACE_PY:")}
