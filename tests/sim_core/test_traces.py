"""Per-pixel traces (``-trace_pixel``) against the C program's ``TRACE_C`` lines (golden cases).

Every golden case with a ``trace_c.log`` is traced in float64 on the CPU: each ``TRACE_C`` key and
occurrence must have a ``TRACE_PY`` twin whose numbers agree within 1e-6 of the line's largest
magnitude. The trace of a full render must also end on that pixel's value of the image, and tracing
must not change the image. One test runs the ``nanobragg`` console script end to end.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim_core.experiment import local_files
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import simulate, trace_pixels
from sim_core.trace_diff import compare, parse_trace, select_pixel

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TRACE_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "trace_c.log").is_file())
RTOL = 1e-6


def _meta(name: str) -> dict:
    return json.loads((GOLDEN / name / "meta.json").read_text())


def _args(name: str) -> list[str]:
    return (GOLDEN / name / "args.txt").read_text().split() + list(
        _meta(name).get("our_extra_args", []))


def _pixel(name: str) -> tuple[int, int]:
    s, f = _meta(name)["trace_pixel_slow_fast"]
    return int(s), int(f)


def _config(name: str, extra: tuple[str, ...] = ()):
    return parse_nanobragg_args(_args(name) + list(extra), base_dir=GOLDEN / name).config


def _script(name: str) -> str:
    """The installed console script ``name`` (next to this interpreter, or on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"console script {name} is not installed (pip install -e . / make setup)")
    return found


@functools.lru_cache(maxsize=None)
def _trace_text(name: str) -> str:
    """Our trace of the case's pixel, without the full render (float64, CPU)."""
    (tr,) = trace_pixels(_config(name), [_pixel(name)], local_files(GOLDEN / name),
                         device="cpu", dtype="float64")
    return tr.text


#: cases whose pixels depend on the pixels rendered before them (c-parity's phi carry-over, the
#: interpolation switch-off): rendered whole; the others in a window around the traced pixel
ORDER_DEPENDENT = {"phi0_carryover_c_parity", "hkl_interpolate_out_of_range"}
WINDOW = 8


@functools.lru_cache(maxsize=None)
def _render(name: str, traced: bool = True, whole: bool | None = None):
    """A render of the case in float64 on the CPU, with the trace of its pixel when ``traced``."""
    s, f = _pixel(name)
    whole = name in ORDER_DEPENDENT if whole is None else whole
    extra = () if whole else (
        "-roi", str(f - WINDOW), str(f + WINDOW), str(s - WINDOW), str(s + WINDOW))
    cfg = _config(name, extra)
    cfg.run.trace_pixels = [(s, f)] if traced else []
    return simulate(cfg, local_files(GOLDEN / name), device="cpu", dtype="float64")


def test_every_trace_case_is_collected():
    assert len(TRACE_CASES) >= 25
    assert "phi0_carryover_c_parity" in TRACE_CASES
    # the C traces hold main lines only: our per-phi lines have no C twin to compare with
    for name in TRACE_CASES:
        text = (GOLDEN / name / "trace_c.log").read_text()
        assert "TRACE_C:" in text and "_PHI" not in text


@pytest.mark.parametrize("name", TRACE_CASES)
def test_trace_matches_c_trace(name):
    c = parse_trace((GOLDEN / name / "trace_c.log").read_text())
    py = parse_trace(_trace_text(name))
    assert {r.pixel for r in c} == {r.pixel for r in py} == {_pixel(name)}
    rep = compare(c, py, rtol=RTOL, name_a="C", name_b="PY")
    # every TRACE_C key and occurrence has its TRACE_PY twin, and nothing else of the main family
    assert rep.only_in_a == [] and rep.only_in_b == [], (rep.only_in_a, rep.only_in_b)
    assert rep.occurrence_mismatches == []
    assert len(rep.pairs) == len(c)
    assert set(rep.skipped_families) == {"phi"}  # C has no per-phi lines
    assert [r.key for r in c] == [r.key for r in py if r.family == "main"]  # same order
    bad = [(p.key, p.occurrence, p.a.values, p.b.values, p.rel) for p in rep.pairs if p.exceeds]
    assert not bad, f"{name}: {len(bad)} lines beyond {RTOL}: {bad[:3]}"
    assert rep.ok and rep.max_rel <= RTOL


@pytest.mark.parametrize("name", TRACE_CASES)
def test_trace_of_render_ends_on_the_image_pixel(name):
    res = _render(name)
    (tr,) = res.traces
    s, f = _pixel(name)
    final = tr.value("I_pixel_final")
    assert np.float32(final) == res.image[s, f]
    assert tr.value("floatimage_accumulated") == float(res.image[s, f])
    # tracing inside the render and tracing alone (trace_pixels) give the same lines
    assert tr.text == _trace_text(name)
    # and the C program's value of that pixel
    assert math.isclose(final, _meta(name)["trace_value"], rel_tol=1e-4)


@pytest.mark.parametrize("name", ["phi0_carryover_c_parity", "hkl_interpolate_out_of_range",
                                  "oversample_flags", "mosaic_domains"])
def test_tracing_does_not_change_the_image(name):
    # order-dependent state (c-parity phi carry-over, here in a window whose first pixel sees the
    # fresh cell; the interpolation switch-off, whole image; the running oversample product; seeded
    # mosaic domains) must not leak from the traced pixel into the others
    whole = name == "hkl_interpolate_out_of_range"
    traced = _render(name, True, whole).image
    plain = _render(name, False, whole).image
    assert np.array_equal(traced, plain)
    assert np.count_nonzero(plain) > 100


@pytest.mark.parametrize("name", ["phi_oscillation", "mosaic_domains", "phi0_carryover_c_parity"])
def test_per_phi_lines(name):
    recs = parse_trace(_trace_text(name))
    exp = _render(name).experiment
    main = [r for r in recs if r.family == "main"]
    phi = [r for r in recs if r.family == "phi"]
    steps = exp.sampling.phi_steps
    blocks = [r for r in main if r.key == "hkl_frac"]
    assert blocks and steps == len(exp.scan.phi_values_rad)
    text_phi = [ln for ln in _trace_text(name).splitlines() if ln.startswith("TRACE_PY_PHI ")]
    assert len(text_phi) == len(blocks) * steps
    # one run of phi_tic = 0..steps-1 per block, after the block's F_cell line
    tics = [int(ln.split()[1].split("=")[1]) for ln in text_phi]
    assert tics == list(range(steps)) * len(blocks)
    by = {(r.key, r.occurrence): r.values for r in recs}
    for n in range(len(blocks)):
        # phi step 0, mosaic domain 0 is what the block's own lines show
        assert by[("PHI[phi_tic=0].hkl", n)] == by[("hkl_frac", n)]
        assert by[("PHI[phi_tic=0].F_latt", n)] == by[("F_latt", n)]
        assert by[("PHI[phi_tic=0].F_cell", n)] == by[("F_cell", n)]
        for t in range(steps):
            fl = by[(f"PHI[phi_tic={t}].F_latt", n)][0]
            fc = by[(f"PHI[phi_tic={t}].F_cell", n)][0]
            assert math.isclose(by[(f"PHI[phi_tic={t}].I_term", n)][0], fc * fc * fl * fl,
                                rel_tol=1e-13)  # %.15g rounding of the factors
    for t, rad in enumerate(exp.scan.phi_values_rad):
        degs = {r.values[0] for r in phi if r.key == f"PHI[phi_tic={t}].phi_deg"}
        assert len(degs) == 1 and math.isclose(degs.pop(), math.degrees(rad), abs_tol=1e-12)


def test_trace_blocks_follow_layers_and_subpixels():
    # detector_thickness: one block per (thickness layer, subpixel) of the first source
    name = "detector_thickness"
    recs = parse_trace(_trace_text(name))
    res = _render(name)
    s = res.experiment.sampling
    n_blocks = s.thickness.steps * res.experiment.oversample ** 2
    assert n_blocks > 1
    assert sum(r.key == "pix0_vector_meters" for r in recs) == n_blocks
    assert sum(r.key == "I_pixel_final" for r in recs) == 1


def test_nanobragg_console_script_writes_the_trace_file(tmp_path):
    name = "cubic_default_F"
    case = tmp_path / name
    shutil.copytree(GOLDEN / name, case)
    s, f = _pixel(name)
    exe = _script("nanobragg")
    proc = subprocess.run([exe, *_args(name), "-trace_pixel", str(s), str(f),
                           "-trace_pixel", "3", "250", "-trace_file", "trace_py.log"],
                          cwd=case, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "TRACE_PY" not in proc.stdout  # the lines went to the file
    assert "wrote trace_py.log (traces)" in proc.stdout
    text = (case / "trace_py.log").read_text()
    assert text.startswith(f"TRACE_PY_CONFIG: tracing pixel (spixel={s}, fpixel={f})\n")
    assert "TRACE_PY_CONFIG: tracing pixel (spixel=3, fpixel=250)" in text
    recs = parse_trace(text)
    assert {r.pixel for r in recs} == {(s, f), (3, 250)}
    rep = compare(parse_trace((case / "trace_c.log").read_text()), select_pixel(recs, (s, f)),
                  rtol=RTOL)
    assert rep.ok and not rep.only_in_a and not rep.only_in_b
    # the float image it wrote holds the traced value
    img = np.fromfile(case / "float.bin", dtype="<f4").reshape(256, 256)
    final = [r for r in select_pixel(recs, (s, f)) if r.key == "I_pixel_final"][0].values[0]
    assert img[s, f] == np.float32(final)


def test_nanobragg_cli_prints_traces_before_its_summary(tmp_path, monkeypatch, capsys):
    from sim_core.cli import main
    name = "cubic_default_F"
    shutil.copytree(GOLDEN / name, tmp_path / name)
    monkeypatch.chdir(tmp_path / name)
    s, f = _pixel(name)
    assert main([*_args(name), "-trace_pixel", str(s), str(f), "-noprogress"]) == 0
    out = capsys.readouterr().out
    assert out.index("TRACE_PY_CONFIG:") < out.index("TRACE_PY: I_pixel_final") < out.index(
        "max_I =")
    assert [(r.key, r.occurrence, r.values) for r in parse_trace(out)] == [
        (r.key, r.occurrence, r.values) for r in parse_trace(_trace_text(name))]


def test_trace_pixel_outside_the_detector_is_an_error():
    from sim_core.errors import ConfigError
    cfg = _config("cubic_default_F")
    with pytest.raises(ConfigError, match="outside"):
        trace_pixels(cfg, [(256, 0)], local_files(GOLDEN / "cubic_default_F"))
