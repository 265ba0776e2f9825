"""``nanobragg-trace-diff``: parsing, pairing, tolerances, report and exit codes."""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim_core.experiment import local_files
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import trace_pixels
from sim_core.trace_diff import compare, compare_text, format_report, main, parse_trace

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

C_TRACE = """\
TRACE_CONFIG: tracing pixel (spixel=5, fpixel=7)
some progress output of the C program
TRACE_C: pix0_vector_meters 0.1 0.0129 -0.0129
TRACE_C: hkl_frac 1.5 -0.25 0.001
TRACE_C: F_latt 100
TRACE_C: hkl_frac 2 -0.5 0.002
TRACE_C: F_latt 50
TRACE_C: I_pixel_final 154.652464271383
"""


def _py(text: str) -> str:
    return text.replace("TRACE_C:", "TRACE_PY:").replace("TRACE_CONFIG:", "TRACE_PY_CONFIG:")


# ---- parsing ------------------------------------------------------------------------------------

def test_parse_main_lines_and_occurrences():
    recs = parse_trace(C_TRACE)
    assert [(r.key, r.occurrence) for r in recs] == [
        ("pix0_vector_meters", 0), ("hkl_frac", 0), ("F_latt", 0), ("hkl_frac", 1),
        ("F_latt", 1), ("I_pixel_final", 0)]
    assert recs[1].values == [1.5, -0.25, 0.001]
    assert recs[1].prefix == "TRACE_C" and recs[1].family == "main"
    assert recs[1].line == 4
    assert {r.pixel for r in recs} == {(5, 7)}


def test_parse_ignores_other_lines_and_prefixes():
    text = ("hello\nTRACE_CONFIG: tracing pixel (spixel=1, fpixel=2)\nTRACE_OTHER: F_latt 3\n"
            "  12% done\rTRACE_C: F_latt 4\nTRACE_C:\nTRACE_Cfoo 1\n#TRACE_C: F_latt 9\n"
            "TRACE_PY: F_latt 5\n")
    recs = parse_trace(text)
    assert [(r.prefix, r.key, r.values, r.occurrence) for r in recs] == [
        ("TRACE_C", "F_latt", [4.0], 0), ("TRACE_PY", "F_latt", [5.0], 1)]
    assert parse_trace("no trace here\n") == []


def test_parse_phi_lines_by_tic_and_field():
    text = ("TRACE_PY_PHI phi_tic=0 phi_deg=0 h=1 k=2 l=3 F_latt=4 F_cell=5 I_term=400\n"
            "TRACE_PY_PHI phi_tic=1 phi_deg=0.1 h=1.5 k=2 l=3 F_latt=4 F_cell=5 I_term=400\n"
            "TRACE_C_PHI: phi_tic=0 phi_deg=0 h=1 k=2 l=3 F_latt=4 F_cell=5 I_term=400\n")
    recs = parse_trace(text)
    keys = [(r.key, r.occurrence) for r in recs]
    assert keys[:5] == [("PHI[phi_tic=0].phi_deg", 0), ("PHI[phi_tic=0].hkl", 0),
                        ("PHI[phi_tic=0].F_latt", 0), ("PHI[phi_tic=0].F_cell", 0),
                        ("PHI[phi_tic=0].I_term", 0)]
    assert ("PHI[phi_tic=1].hkl", 0) in keys and ("PHI[phi_tic=0].hkl", 1) in keys
    hkl = [r for r in recs if r.key == "PHI[phi_tic=1].hkl"][0]
    assert hkl.values == [1.5, 2.0, 3.0] and hkl.family == "phi" and hkl.line == 2
    assert {r.prefix for r in recs} == {"TRACE_PY_PHI", "TRACE_C_PHI"}
    # a phi line without h, k and l keeps its fields apart
    (r,) = parse_trace("TRACE_PY_PHI phi_tic=3 h=0.5\n")
    assert r.key == "PHI[phi_tic=3].h"


def test_parse_non_numeric_tokens_and_specials():
    (r,) = parse_trace("TRACE_C: weird 1 nan -inf abc\n")
    assert r.values[0] == 1.0 and math.isnan(r.values[1]) and r.values[2] == -math.inf
    assert r.values[3] == "abc"


def test_pixels_restart_occurrences():
    text = C_TRACE + C_TRACE.replace("spixel=5, fpixel=7", "spixel=6, fpixel=7")
    recs = parse_trace(text)
    assert [r.occurrence for r in recs if r.key == "hkl_frac"] == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="several pixels"):
        compare(recs, recs)


# ---- comparison ---------------------------------------------------------------------------------

def test_identical_traces_pass_and_prefixes_pair_up():
    rep = compare_text(C_TRACE, _py(C_TRACE))
    assert rep.ok and rep.exit_code == 0
    assert rep.max_rel == 0 and rep.first_divergence is None
    assert len(rep.pairs) == 6 and not rep.skipped_families
    assert [k.key for k in rep.keys] == ["pix0_vector_meters", "hkl_frac", "F_latt",
                                         "I_pixel_final"]
    assert rep.key("hkl_frac").occurrences_a == rep.key("hkl_frac").compared == 2


def test_relative_difference_is_against_the_lines_largest_magnitude():
    b = _py(C_TRACE).replace("hkl_frac 2 -0.5 0.002", "hkl_frac 2 -0.5 0.0020001")
    rep = compare_text(C_TRACE, b, rtol=1e-6)
    k = rep.key("hkl_frac")
    # |d| = 1e-7 on the smallest value, 5e-8 of the line's largest (2)
    assert k.max_abs == pytest.approx(1e-7)
    assert k.max_rel == pytest.approx(5e-8)
    assert k.worst_occurrence == 1
    assert rep.ok
    assert not compare_text(C_TRACE, b, rtol=1e-8).ok


def test_rtol_and_atol():
    b = _py(C_TRACE).replace("F_latt 50", "F_latt 50.001")  # rel 2e-5, abs 1e-3
    assert not compare_text(C_TRACE, b).ok  # default rtol 1e-6
    assert compare_text(C_TRACE, b, rtol=3e-5).ok
    assert not compare_text(C_TRACE, b, rtol=1e-5).ok
    assert compare_text(C_TRACE, b, rtol=0, atol=2e-3).ok
    assert not compare_text(C_TRACE, b, rtol=0, atol=5e-4).ok
    # atol + rtol * magnitude together
    assert compare_text(C_TRACE, b, rtol=1e-5, atol=5e-4 + 1e-9).ok
    rep = compare_text(C_TRACE, b)
    k = rep.key("F_latt")
    assert (k.exceeding, k.compared, k.worst_occurrence) == (1, 2, 1)
    assert rep.first_divergence["key"] == "F_latt"
    assert rep.first_divergence["occurrence"] == 1
    assert rep.first_divergence["values_b"] == [50.001]
    with pytest.raises(ValueError):
        compare_text(C_TRACE, b, rtol=-1)


def test_first_divergence_follows_a_order():
    b = (_py(C_TRACE).replace("F_latt 100", "F_latt 101")
         .replace("pix0_vector_meters 0.1 0.0129 -0.0129", "pix0_vector_meters 0.1 0.0129 -0.013")
         .replace("I_pixel_final 154.652464271383", "I_pixel_final 155"))
    rep = compare_text(C_TRACE, b)
    assert rep.first_divergence["key"] == "pix0_vector_meters"
    assert [k.key for k in rep.exceeding_keys] == ["pix0_vector_meters", "F_latt",
                                                   "I_pixel_final"]
    # B's order of different keys does not matter for the pairing (that of one key's lines does)
    lines = b.splitlines()
    shuffled = "\n".join([lines[0], lines[-1]] + lines[3:-1] + [lines[2]]) + "\n"
    assert [r.key for r in parse_trace(shuffled)][0] == "I_pixel_final"
    rep2 = compare_text(C_TRACE, shuffled)
    assert rep2.first_divergence["key"] == "pix0_vector_meters"
    assert rep2.max_rel == rep.max_rel


def test_keys_on_one_side_and_occurrence_mismatches():
    b = _py(C_TRACE).replace("TRACE_PY: pix0_vector_meters 0.1 0.0129 -0.0129\n", "")
    b = b.replace("TRACE_PY: F_latt 50\n", "") + "TRACE_PY: extra_key 1\n"
    rep = compare_text(C_TRACE, b)
    assert [k.key for k in rep.only_in_a] == ["pix0_vector_meters"]
    assert [k.key for k in rep.only_in_b] == ["extra_key"]
    assert [(k.key, k.occurrences_a, k.occurrences_b) for k in rep.occurrence_mismatches] == [
        ("F_latt", 2, 1)]
    assert not rep.exceeding_keys  # what is paired agrees
    assert not rep.ok and rep.exit_code == 1
    assert rep.first_divergence["key"] == "pix0_vector_meters"
    assert rep.first_divergence["reason"] == "missing in B"
    allowed = compare_text(C_TRACE, b, allow_missing=True)
    assert allowed.ok and allowed.first_divergence is None
    assert allowed.only_in_a  # still reported
    # only extra keys in B: the first of them is named
    rep3 = compare_text(C_TRACE, _py(C_TRACE) + "TRACE_PY: extra_key 1\n")
    assert rep3.first_divergence["key"] == "extra_key"
    assert rep3.first_divergence["reason"] == "missing in A"


def test_value_count_and_token_mismatches_fail():
    b = _py(C_TRACE).replace("hkl_frac 1.5 -0.25 0.001", "hkl_frac 1.5 -0.25")
    rep = compare_text(C_TRACE, b, rtol=1.0)
    assert not rep.ok and rep.first_divergence["reason"] == "3 values against 2"
    assert math.isinf(rep.key("hkl_frac").max_rel)
    assert compare_text("TRACE_C: x 1 nan\n", "TRACE_PY: x 1 nan\n").ok
    assert not compare_text("TRACE_C: x 1 nan\n", "TRACE_PY: x 1 2\n", rtol=1).ok
    assert not compare_text("TRACE_C: x 1 inf\n", "TRACE_PY: x 1 -inf\n", rtol=1).ok
    assert compare_text("TRACE_C: x a 0\n", "TRACE_PY: x a 0\n").ok
    assert not compare_text("TRACE_C: x a\n", "TRACE_PY: x b\n", rtol=1).ok
    assert compare_text("TRACE_C: x 0 0\n", "TRACE_PY: x 0 -0\n", rtol=0).ok


def test_a_family_missing_on_one_side_is_not_compared():
    phi = "TRACE_PY_PHI phi_tic=0 phi_deg=0 h=1 k=2 l=3 F_latt=4 F_cell=5 I_term=400\n"
    rep = compare_text(C_TRACE, _py(C_TRACE) + phi)
    assert rep.ok and list(rep.skipped_families) == ["phi"]
    assert not rep.only_in_b
    # present on both sides: compared, by tic and field
    a = _py(C_TRACE) + phi
    b = _py(C_TRACE) + phi.replace("h=1 ", "h=1.1 ").replace("I_term=400", "I_term=401")
    rep = compare_text(a, b)
    assert not rep.ok
    assert [k.key for k in rep.exceeding_keys] == ["PHI[phi_tic=0].hkl", "PHI[phi_tic=0].I_term"]
    assert rep.key("PHI[phi_tic=0].hkl").max_rel == pytest.approx(0.1 / 3)


def test_report_text_and_json_are_consistent():
    b = _py(C_TRACE).replace("F_latt 50", "F_latt 50.001") + "TRACE_PY: extra_key 1\n"
    rep = compare_text(C_TRACE, b, name_a="c.log", name_b="py.log")
    text = format_report(rep)
    assert "first divergent key: F_latt (occurrence 1; A line 7, B line 7)" in text
    assert "only in B (py.log): extra_key x1" in text
    assert text.rstrip().endswith("FAIL: 1 keys exceed the tolerance; keys or occurrences on one "
                                  "side only")
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["ok"] is False and d["exit_code"] == 1
    assert d["first_divergence"]["key"] == "F_latt"
    assert d["exceeding_keys"] == ["F_latt"]
    assert d["only_in_b"] == [{"key": "extra_key", "occurrences": 1}]
    assert d["worst_key"] == "F_latt"
    assert {k["key"]: k["max_rel"] for k in d["keys"]}["F_latt"] == pytest.approx(1e-3 / 50.001)
    # non-finite numbers become strings, so that the JSON stays standard
    bad = compare_text("TRACE_C: x 1 2\n", "TRACE_PY: x 1\n").to_dict()
    assert bad["max_rel"] == "inf"
    json.dumps(bad, allow_nan=False)


# ---- command line -------------------------------------------------------------------------------

def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_main_exit_codes(tmp_path, capsys):
    a = _write(tmp_path, "a.log", C_TRACE)
    same = _write(tmp_path, "b.log", _py(C_TRACE))
    diff = _write(tmp_path, "c.log", _py(C_TRACE).replace("F_latt 50", "F_latt 51"))
    assert main([a, same]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main([a, diff]) == 1
    out = capsys.readouterr().out
    assert "first divergent key: F_latt (occurrence 1" in out and "FAIL" in out
    assert main([a, diff, "--rtol", "0.05"]) == 0
    assert main([a, diff, "--atol", "1"]) == 0
    capsys.readouterr()
    # usage and file errors: 2
    assert main([a, str(tmp_path / "missing.log")]) == 2
    assert "cannot read B" in capsys.readouterr().err
    empty = _write(tmp_path, "empty.log", "nothing to see\n")
    assert main([a, empty]) == 2
    assert "no trace lines" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([a])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([a, same, "--rtol", "abc"])
    assert exc.value.code == 2
    assert main([a, same, "--rtol", "-1"]) == 2


def test_main_json_and_failures_only(tmp_path, capsys):
    a = _write(tmp_path, "a.log", C_TRACE)
    b = _write(tmp_path, "b.log", _py(C_TRACE).replace("F_latt 50", "F_latt 51"))
    assert main([a, b, "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["first_divergence"]["key"] == "F_latt" and d["rtol"] == 1e-6 and d["atol"] == 0
    assert d["a"]["name"] == a and d["a"]["pixels"] == [[5, 7]]
    assert [k["key"] for k in d["keys"]] == ["pix0_vector_meters", "hkl_frac", "F_latt",
                                            "I_pixel_final"]
    assert main([a, b, "--failures-only"]) == 1
    out = capsys.readouterr().out
    assert "F_latt" in out and "hkl_frac " not in out


def test_main_selects_a_pixel(tmp_path, capsys):
    two = C_TRACE + C_TRACE.replace("spixel=5, fpixel=7", "spixel=6, fpixel=7").replace(
        "F_latt 100", "F_latt 7")
    multi = _write(tmp_path, "multi.log", _py(two))
    a = _write(tmp_path, "a.log", C_TRACE)
    assert main([a, multi]) == 2
    assert "choose one with --pixel" in capsys.readouterr().err
    assert main([a, multi, "--pixel", "5", "7"]) == 0
    assert main([multi, multi, "--pixel", "6", "7"]) == 0
    capsys.readouterr()
    assert main([a, multi, "--pixel", "6", "7"]) == 2  # a.log traces (5, 7) only
    assert "a.log: no lines of pixel (6, 7) (it traces (5, 7))" in capsys.readouterr().err
    assert main([a, multi, "--pixel", "9", "9"]) == 2
    capsys.readouterr()
    single6 = _write(tmp_path, "six.log", C_TRACE.replace("spixel=5", "spixel=6").replace(
        "F_latt 100", "F_latt 7"))
    assert main([single6, multi, "--pixel", "6", "7"]) == 0
    assert main([a, single6]) == 1  # one pixel each: compared, with a note
    assert "note: A traces pixel (5, 7), B traces pixel (6, 7)" in capsys.readouterr().out
    # a file without CONFIG header is taken as the pixel asked for
    bare = _write(tmp_path, "bare.log", "TRACE_C: F_latt 100\n")
    assert main([bare, multi, "--pixel", "5", "7", "--allow-missing"]) == 0


# ---- golden cases -------------------------------------------------------------------------------

def _meta(name):
    return json.loads((GOLDEN / name / "meta.json").read_text())


@functools.lru_cache(maxsize=None)
def _our_trace(name: str, extra: tuple[str, ...] = ()) -> str:
    case = GOLDEN / name
    args = (case / "args.txt").read_text().split() + list(extra)
    cfg = parse_nanobragg_args(args, base_dir=case).config
    (tr,) = trace_pixels(cfg, [tuple(_meta(name)["trace_pixel_slow_fast"])], local_files(case),
                         device="cpu", dtype="float64")
    return tr.text


def test_golden_c_trace_against_ours_passes(tmp_path, capsys):
    name = "mosflm_matrix"
    ours = _write(tmp_path, "trace_py.log", _our_trace(name))
    assert main([str(GOLDEN / name / "trace_c.log"), ours]) == 0
    out = capsys.readouterr().out
    assert "note: phi lines not compared" in out and "PASS" in out


PHI0 = "phi0_carryover_c_parity"


def test_phi0_c_parity_against_the_default_mode_names_the_first_divergence(tmp_path, capsys):
    c_log = str(GOLDEN / PHI0 / "trace_c.log")
    assert _meta(PHI0)["our_extra_args"] == ["-phi_mode", "c-parity"]
    default = _write(tmp_path, "default.log", _our_trace(PHI0))
    parity = _write(tmp_path, "parity.log", _our_trace(PHI0, ("-phi_mode", "c-parity")))
    assert main([c_log, parity]) == 0
    capsys.readouterr()
    assert main([c_log, default]) == 1
    out = capsys.readouterr().out
    # the c-parity defect: phi = 0 reuses the previous pass's rotated cell; the detector lines,
    # the reciprocal vectors (not rotated in the trace) and F_cell agree
    assert ("first divergent key: rot_a_angstroms (occurrence 0; A line 15, B line 15): "
            "exceeds tolerance") in out
    assert main([c_log, default, "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["first_divergence"]["key"] == "rot_a_angstroms"
    assert d["first_divergence"]["occurrence"] == 0
    assert d["exceeding_keys"][:4] == ["rot_a_angstroms", "rot_b_angstroms", "rot_c_angstroms",
                                       "hkl_frac"]
    assert "scattering_vec_A_inv" not in d["exceeding_keys"]
    assert "F_cell" not in d["exceeding_keys"]
    assert d["exceeding_keys"][-1] == "floatimage_accumulated"


def test_console_script_runs(tmp_path):
    here = Path(sys.executable).parent / "nanobragg-trace-diff"
    exe = str(here) if here.is_file() else shutil.which("nanobragg-trace-diff")
    if not exe:
        pytest.fail("console script nanobragg-trace-diff is not installed (pip install -e .)")
    ours = _write(tmp_path, "trace_py.log", _our_trace("cubic_default_F"))
    c_log = str(GOLDEN / "cubic_default_F" / "trace_c.log")
    proc = subprocess.run([exe, c_log, ours, "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["ok"] and d["compared_lines"] == 40 and d["skipped_families"] == {
        "phi": f"{c_log} has no phi lines ({ours} has)"}
    proc = subprocess.run([exe, ours], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage" in proc.stderr
