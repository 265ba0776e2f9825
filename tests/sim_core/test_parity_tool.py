"""``nanobragg-parity``: CPU against CUDA (float64), and float32 against float64 on one device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sim_core import parity
from sim_core.errors import ArgumentError
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.parity import main, run_parity, split_argv

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
HAS_CUDA = torch.cuda.is_available()


def _meta(name):
    return json.loads((GOLDEN / name / "meta.json").read_text())


def _args(name, *, pixel=True) -> list[str]:
    meta = _meta(name)
    out = (GOLDEN / name / "args.txt").read_text().split() + list(meta.get("our_extra_args", []))
    if pixel:
        out += ["-trace_pixel", *map(str, meta["trace_pixel_slow_fast"])]
    return out


# a small, quick command: the cubic case on a 64x64 detector, traced at its brightest pixel
SMALL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2",
         "-N", "5", "-distance", "100", "-detpixels", "64", "-nonoise"]


def test_split_argv():
    ours, theirs = split_argv(["--compare", "dtypes", "-N", "5", "--json", "--rtol=1e-3",
                               "-distance", "-100", "--", "--json", "-x"])
    assert ours == ["--compare", "dtypes", "--json", "--rtol=1e-3"]
    assert theirs == ["-N", "5", "-distance", "-100", "--json", "-x"]
    with pytest.raises(ArgumentError, match="--bogus"):
        split_argv(["--bogus", "-N", "5"])


def test_same_device_and_dtype_is_identical():
    cfg = parse_nanobragg_args(SMALL).config
    rep = run_parity(cfg, None, sides=(("cpu", "float64"), ("cpu", "float64")))
    assert rep.ok and rep.image_rel == 0 and rep.image_max_abs == 0
    assert rep.rtol == 1e-10 and rep.trace_judged
    ((pixel, tr),) = rep.traces
    # no -trace_pixel: the brightest pixel of the reference render is traced
    assert rep.a.image[pixel] == rep.a.image.max()
    assert tr.ok and tr.max_rel == 0 and len(tr.pairs) > 40
    assert rep.a.image.dtype == np.float64  # kept in the render's precision


def test_dtypes_mode_on_a_golden_case(capsys):
    name = "mosflm_matrix"
    code = main(["--compare", "dtypes", "--dir", str(GOLDEN / name), "--json", *_args(name)])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["ok"] and d["exit_code"] == 0
    assert (d["a"]["label"], d["b"]["label"]) == ("cpu-float64", "cpu-float32")
    assert d["rtol"] == 1e-3 and d["trace_judged"] is False
    assert 0 < d["image"]["rel"] < 1e-3  # float32 drifts, within the README's bar
    assert d["image"]["sum_rel"] < 1e-3
    (tr,) = d["traces"]
    assert tr["pixel_slow_fast"] == _meta(name)["trace_pixel_slow_fast"]
    assert 0 < tr["rel"] < 1e-3 and tr["lines"] > 200
    assert d["shape_slow_fast"] == _meta(name)["shape_slow_fast"]


def test_dtypes_mode_tolerances_and_text_report(capsys):
    assert main(["--compare", "dtypes", "--rtol", "1e-12", *SMALL]) == 1
    out = capsys.readouterr().out
    assert "cpu-float64 (A) against cpu-float32 (B), 64x64 pixels" in out
    assert "EXCEEDS" in out and out.rstrip().endswith("FAIL")
    # the float32 trace is shown, not judged, unless --trace-rtol asks for it
    assert main(["--compare", "dtypes", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "shown, not judged" in out and out.rstrip().endswith("PASS")
    assert main(["--compare", "dtypes", "--trace-rtol", "1e-12", *SMALL]) == 1
    assert "first divergent key" in capsys.readouterr().out
    assert main(["--compare", "dtypes", "--no-trace", *SMALL]) == 0
    assert "trace: none" in capsys.readouterr().out


def test_save_writes_images_and_traces(tmp_path, capsys):
    from sim_core.trace_diff import main as trace_diff
    out = tmp_path / "out"
    assert main(["--compare", "dtypes", "--save", str(out), *SMALL,
                 "-trace_pixel", "31", "32"]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["image_cpu-float32.f64.bin", "image_cpu-float64.f64.bin",
                     "trace_cpu-float32_31_32.log", "trace_cpu-float64_31_32.log"]
    img = np.fromfile(out / "image_cpu-float64.f64.bin", dtype="<f8").reshape(64, 64)
    assert img.max() > 0
    a, b = out / "trace_cpu-float64_31_32.log", out / "trace_cpu-float32_31_32.log"
    assert trace_diff([str(a), str(b), "--rtol", "1e-3"]) == 0
    assert trace_diff([str(a), str(b), "--rtol", "1e-12"]) == 1


def test_no_cuda_exits_3(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(SMALL) == 3
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and "--compare dtypes" in err
    assert main(["--compare", "dtypes", "--device", "cuda", *SMALL]) == 3
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(parity.DeviceError):
        run_parity(parse_nanobragg_args(SMALL).config, None)


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["--compare", "dtypes"]) == 2  # no nanoBragg flags
    assert main(["--bogus", *SMALL]) == 2
    assert main(["--compare", "neither", *SMALL]) == 2
    assert main(["--rtol", "-1", *SMALL]) == 2
    assert main(["--compare", "dtypes", "-no_such_flag", "1"]) == 2
    assert main(["--compare", "dtypes", *SMALL, "-trace_pixel", "64", "0"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "--compare" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["cubic_default_F", "phi0_carryover_c_parity",
                                  "hkl_interpolate_out_of_range", "mosaic_domains"])
def test_cpu_and_cuda_agree_in_float64(name, capsys):
    code = main(["--dir", str(GOLDEN / name), "--json", *_args(name)])
    d = json.loads(capsys.readouterr().out)
    assert (d["a"]["device"], d["b"]["device"]) == ("cpu", "cuda")
    assert d["a"]["dtype"] == d["b"]["dtype"] == "float64"
    assert d["image"]["rel"] <= 1e-10, d["image"]
    (tr,) = d["traces"]
    assert tr["rel"] <= 1e-10, tr
    assert code == 0 and d["ok"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cpu_and_cuda_agree_at_the_brightest_pixel(capsys):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "cpu-float64 (A) against cuda-float64 (B)" in out and "trace pixel" in out
