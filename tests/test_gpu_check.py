"""The GPU check (scripts/gpu-check.py): its CPU dry run end to end, and the pieces that decide
what the report says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import cases, orchestrate, setup_env
from bench.gpu_check.cuda_tests import junit_counts
from bench.gpu_check.report import format_report, judge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """``gpu-check.py --device cpu --quick``: every section on the CPU at tiny sizes."""
    work = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, BRAGG_COMPILE="off")  # compiling is measured on the GPU machine
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu-check.py"), "--device", "cpu",
                        "--quick", "--no-make", "--python", sys.executable, "--work", str(work),
                        "--report", str(work / "report.txt"), "--json", str(work / "report.json")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    return r, json.loads((work / "report.json").read_text()), (work / "report.txt").read_text()


def test_dry_run_passes_and_reports_every_section(dry_run):
    r, rep, text = dry_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert rep["device"] == "cpu" and rep["dry_run"] and rep["ok"]
    assert rep["setup"]["route"].endswith("as it is")
    assert rep["setup"]["info"]["torch"]
    for name in orchestrate.ORDER:
        sec = rep["sections"][name]
        assert sec["status"] == "ran" and sec["items"], (name, sec.get("log_tail"))
        assert not any(i["ok"] is False for i in sec["items"]), name
    # what could not run is said, with the reason
    not_run = text.split("not run here:")[1]
    for what in ("CUDA-marked tests", "CPU against CUDA comparison", "compiled kernels",
                 "speed bar"):
        assert what in not_run
    # the supervisor scenario as one verification job: its report meets every criterion
    ver = [i for sec in rep["sections"].values() for i in sec["items"]
           if i.get("name") == "supervisor verification"]
    assert len(ver) == 1 and ver[0]["ok"] and ver[0]["verdict"] == "pass", ver
    assert ver[0]["sides"] == ["cpu:float64", "cpu:float32"] and ver[0]["pixels"][0] == [685, 1039]
    assert set(ver[0]["phi_lines"]) == {10}
    assert "supervisor verification (cpu:float64 vs cpu:float32" in text
    # the service renders series: the 24-image one runs and its dataset verifies
    series = [i for sec in rep["sections"].values() for i in sec["items"]
              if i.get("name") == "series of 24 images"]
    assert len(series) == 1 and series[0]["ok"], series
    assert series[0]["float_images"] == 24 and series[0]["checksum_failures"] == []
    assert "CPU DRY RUN" in text and "RESULT: DRY RUN OK" in text
    assert text.strip() in r.stdout  # the report is printed too
    held = {b["name"]: b["held"] for b in rep["bars"]}
    assert held["heavy_mosaic_phi float32 > 1,000 M evaluations/s"] is None  # not on the CPU
    assert held["every service job correct (artifacts verified; images equal a CPU render)"]


def test_dry_run_figures_are_sane(dry_run):
    _, rep, text = dry_run
    tests = rep["sections"]["tests"]["items"][0]
    assert tests["skipped"] >= 8 and tests["failed"] == tests["errors"] == 0
    parity = rep["sections"]["parity"]["items"]
    assert [i["name"] for i in parity] == list(cases.PARITY_CASES) + [
        "supervisor_full at phi=0, c-parity"]
    for i in parity:  # both sides on the CPU: identical
        assert i["image_rel"] == 0 and i["image_max"] > 0
        (tr,) = i["traces"]
        assert tr["rel"] == 0 and len(tr["keys"]) > 40 and not tr["structural_mismatch"]
    assert "PHI[*].F_latt" in {k["key"] for k in parity[-1]["traces"][0]["keys"]}
    bench = [i for i in rep["sections"]["bench"]["items"] if "case" in i]
    assert {(i["case"], i["dtype"], i["mode"]) for i in bench} == {
        (c, d, "eager") for c in cases.BENCH_CASES for d in ("float32", "float64")}
    for i in bench:
        assert i["evaluations"] > 0 and i["evals_per_s"] > 0 and i["peak"]["bytes"] > 0
    heavy = next(i for i in bench if i["case"] == "heavy_mosaic_phi")
    assert heavy["evaluations"] == 32 * 32 * 4 * 50  # 1024/32 pixels a side, 4 subpixels, 50 steps
    first = next(i for i in rep["sections"]["bench"]["items"]
                 if i["name"] == "first image of a fresh process")
    assert first["exit_code"] == 0 and first["wall_s"] > 0
    svc = rep["sections"]["service"]["items"]
    fresh = next(i for i in svc if i["name"] == "fresh worker")
    assert 0 < fresh["ready_s"] <= fresh["first_job_finished_s"]
    jobs = [i for i in svc if i["name"].startswith("job ")]
    assert len(jobs) == 20 and all(j["ok"] and j["verified"] for j in jobs)
    assert all(j["artifacts"] == 6 and j["submit_to_finished_s"] > 0 for j in jobs)
    compared = [j for j in jobs if "image_rel_to_cpu" in j]
    assert len(compared) >= 4 and all(j["image_rel_to_cpu"] <= 1e-6 for j in compared)
    assert "submit -> finished over 20 jobs" in text


def test_a_section_past_its_time_box_is_stopped_and_reported(tmp_path):
    env = setup_env.base_env()
    ctx = {"device": "cpu", "quick": True, "work": str(tmp_path)}
    sec = orchestrate.run_section("tests", sys.executable, env, ctx, 1.0, tmp_path)
    assert sec["status"] == "timed out" and sec["elapsed_s"] < 30
    rep = {"device": "cuda", "setup": {"python": sys.executable, "route": "x"},
           "sections": {"tests": sec}, "started_at": "t"}
    bars = judge(rep)
    assert bars[-1]["held"] is False and "tests: timed out" in bars[-1]["detail"]


def test_setup_names_what_is_missing(tmp_path):
    got = setup_env.choose("cpu", tmp_path, python=sys.executable, allow_make=False)
    assert got["python"] == sys.executable and not got["info"]["missing"]
    info = dict(got["info"], cuda_available=False)
    assert "sees no CUDA device" in setup_env._why(info, "cuda")
    assert "cannot import rq" in setup_env._why(dict(info, missing=["rq (x)"]), "cpu")
    got = setup_env.choose("cpu", tmp_path, python=str(tmp_path / "nope"), allow_make=False,
                           wheels=tmp_path)
    assert got["python"] is None and "none in" in " ".join(got["tried"])


def _report(device, items_by_section):
    rep = {"device": device, "started_at": "t", "elapsed_s": 1, "budget_s": 2, "quick": False,
           "setup": {"python": "py", "route": "r", "info": {}}, "machine": {},
           "sections": {n: {"name": n, "title": n, "status": "ran", "items": items}
                        for n, items in items_by_section.items()}}
    rep["bars"] = judge(rep)
    return rep


def test_bars_on_cuda():
    def heavy(rate, ok=None, mode="eager"):
        return {"name": "h", "case": "heavy_mosaic_phi", "dtype": "float32", "mode": mode,
                "evals_per_s": rate, "ok": ok, "evaluations": 1, "memory_budget_mb": 1024}
    good = _report("cuda", {"tests": [{"ok": True, "passed": 9}],
                            "parity": [{"name": "p", "ok": True, "image_rel": 1e-15,
                                        "traces": []}],
                            "bench": [heavy(4e8), heavy(1.5e9, True, "compiled")],
                            "service": [{"name": "job a", "ok": True}]})
    assert all(b["held"] for b in good["bars"]), good["bars"]
    assert "\nRESULT: PASS: all 7 judged bars held\n" in format_report(good)
    slow = _report("cuda", {"bench": [heavy(9e8), heavy(9.5e8, True, "compiled")]})
    speed = next(b for b in slow["bars"] if b["name"].startswith("heavy_mosaic_phi"))
    assert speed["held"] is False and "950 M/s (compiled)" in speed["detail"]
    bad = _report("cuda", {"parity": [{"name": "p", "ok": False, "image_rel": 1e-6,
                                       "traces": []}],
                           "bench": [heavy(2e9), heavy(2e9, False, "compiled")]})
    assert "FAIL: 2 of" in format_report(bad)
    spent = _report("cuda", {"tests": [{"ok": True, "passed": 9}]})
    spent["sections"]["service"] = {"name": "service", "title": "s", "items": [],
                                    "status": "not run: the budget was spent"}
    last = judge(spent)[-1]
    assert last["held"] is False and "service: not run" in last["detail"]


def test_bars_on_the_cpu_dry_run_are_not_judged_unless_something_broke():
    rep = _report("cpu", {"parity": [{"name": "p", "ok": None, "image_rel": 0, "traces": []}],
                          "bench": [{"case": "heavy_mosaic_phi", "dtype": "float32",
                                     "mode": "eager", "evals_per_s": 1e6, "ok": None}],
                          "service": [{"name": "job a", "ok": True}]})
    held = {b["name"].split()[0]: b["held"] for b in rep["bars"]}
    assert held["float64"] is None and held["heavy_mosaic_phi"] is None and held["every"]


def test_shrink_keeps_the_detector_and_pins_one_subpixel():
    args = cases.bench_args("supervisor_full")
    small = cases.shrink(args, 4)
    val = {f: small[small.index(f) + 1] for f in ("-detpixels_x", "-detpixels_y", "-pixel")}
    assert val == {"-detpixels_x": "615", "-detpixels_y": "631", "-pixel": "0.688"}
    assert small.count("-oversample") == 1 and small[small.index("-oversample") + 1] == "1"
    heavy = cases.shrink(cases.bench_args("heavy_mosaic_phi"), 32)
    assert heavy[heavy.index("-oversample") + 1] == "2"  # its own -oversample stays
    assert cases.shrink(args, 1) == args
    assert cases.set_flag(["-phi", "0.05", "-N", "3"], "-phi", 0) == ["-N", "3", "-phi", "0"]
    phi0 = cases.supervisor_phi0_args()
    assert phi0[phi0.index("-phi") + 1] == "0" and phi0[-2:] == ["-phi_mode", "c-parity"]


def test_service_jobs_are_twenty_mixed_ones():
    for quick, device in ((True, "cpu"), (False, "cuda")):
        jobs = cases.service_jobs(quick, device)
        assert len(jobs) == 20 and len({j["label"] for j in jobs}) == 20
        assert {j["dtype"] for j in jobs} == {"float32", "float64"}
        assert sum(j["compare"] for j in jobs) >= 4
    full = cases.service_jobs(False, "cuda")
    assert cases.bench_args("supervisor_full") == full[-1]["args"]


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="a" name="ok"/>'
                   '<testcase classname="a" name="bad"><failure message="x"/></testcase>'
                   '<testcase classname="a" name="s"><skipped message="no CUDA"/></testcase>'
                   '<testcase classname="a" name="s2"><skipped message="no CUDA"/></testcase>'
                   '</testsuite></testsuites>')
    c = junit_counts(xml)
    assert (c["passed"], c["failed"], c["skipped"]) == (1, 1, 2)
    assert c["failures"] == ["a::bad"] and c["skips"] == {"no CUDA": 2}


def test_a_compiled_run_that_fell_back_to_eager_is_flagged(monkeypatch):
    """sim_core.kernels swaps in the eager kernel when compiling fails; the speed section must
    not report that as a compiled figure."""
    from bench.gpu_check import speed
    from sim_core import kernels

    monkeypatch.delenv("BRAGG_COMPILE", raising=False)
    monkeypatch.setattr(kernels, "kernel", lambda kind, compiled: kernels._EAGER[kind])
    args = cases.shrink(cases.bench_args("heavy_mosaic_phi"), 64)
    fields, image = speed.measure("heavy_mosaic_phi", args, "float32", "compiled", "cpu", 1)
    assert fields["ran_compiled"] is False and "compiled kernel not used" in fields["problem"]
    assert image.shape == (16, 16) and fields["evals_per_s"] > 0
