"""The fused kernel (sim_core.kernels) gives the eager engine's images, compiled or not."""

import numpy as np
import pytest
import torch

from sim_core import kernels
from sim_core.engine import Engine
from sim_core.geometry.pixels import loop_geometry
from sim_core.experiment import build_experiment, local_files
from sim_core.nanobragg_args import parse_nanobragg_args
from tests.golden import load_case, meets_bar


def engine(name, *extra, dtype=torch.float64, device="cpu"):
    case = load_case(name)
    cfg = parse_nanobragg_args(case.our_args + list(extra), base_dir=case.folder).config
    return case, Engine(build_experiment(cfg, local_files(case.folder)), dtype=dtype,
                        device=device)


@pytest.fixture(autouse=True)
def compile_allowed(monkeypatch):
    monkeypatch.delenv("BRAGG_COMPILE", raising=False)


@pytest.mark.parametrize("name,kind", [("cubic_default_F", "constant"), ("mosflm_matrix", "grid"),
                                       ("dmin_roi", "grid"), ("phi_oscillation", "grid")])
def test_fused_arithmetic_matches_the_engine(name, kind, monkeypatch):
    """The kernel's eager form, swapped in for the engine's own loop, gives the same image."""
    case, ref_engine = engine(name, "-compile", "off")
    ref, _ = ref_engine.render()
    monkeypatch.setattr(kernels, "kernel", lambda k, compiled: kernels._EAGER[k])
    _, fused_engine = engine(name, "-compile", "on")
    assert fused_engine._fused is kernels._EAGER[kind]
    got, _ = fused_engine.render()
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-12, atol=0)
    assert meets_bar(got.numpy(), case.reference())[0]


def test_modes_that_need_the_full_engine_do_not_fuse():
    for name in ("oversample_flags", "hkl_interpolate", "round_xtal", "phi0_carryover_c_parity"):
        _, eng = engine(name, "-compile", "on")
        assert eng._fused is None, name
    _, eng = engine("cubic_default_F", "-compile", "off")
    assert eng._fused is None
    _, eng = engine("cubic_default_F")  # auto: too small to be worth it, even when warmed
    assert eng._fused is None


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("BRAGG_COMPILE", "off")
    _, eng = engine("cubic_default_F", "-compile", "on")
    assert eng._fused is None


def test_compiled_kernel_matches_eager():
    """torch.compile of the kernel (Inductor, C++ on the CPU) against the eager engine; the
    warm-up compiles it, after which "auto" uses it for big renders."""
    kernels.warm_up("cpu", dtypes=(torch.float64,))
    assert ("grid", str(torch.float64), "cpu") in kernels._ready or kernels._failed
    _, off = engine("mosflm_matrix", "-compile", "off")
    ref, _ = off.render()
    _, on = engine("mosflm_matrix", "-compile", "on")
    if on._fused is kernels._EAGER["grid"]:
        pytest.skip("torch.compile is not available here")
    got, _ = on.render()
    assert not kernels._failed, "the compiled kernel failed and fell back to eager"
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-10, atol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["cubic_default_F", "mosflm_matrix"])
def test_compiled_kernel_on_cuda_matches_eager(name, dtype):
    """torch.compile on CUDA (Triton) against the eager engine on the same device."""
    _, off = engine(name, "-compile", "off", dtype=dtype, device="cuda")
    ref, _ = off.render()
    _, on = engine(name, "-compile", "on", dtype=dtype, device="cuda")
    got, _ = on.render()
    assert not kernels._failed, "the compiled kernel failed on CUDA and fell back to eager"
    assert on._fused is not kernels._EAGER[on._fused_kind]
    a, b = ref.cpu().numpy(), got.cpu().numpy()
    assert np.abs(a - b).max() / np.abs(a).max() <= (1e-10 if dtype == torch.float64 else 1e-4)


def _geometry_inputs(eng):
    pixels = torch.arange(0, eng.F_pixels * 7, 3)
    return eng.frame, pixels, eng.F_pixels, torch.arange(eng.L)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["custom_vectors", "triclinic_misset"])
def test_compiled_geometry_is_the_eager_geometry(name, dtype):
    """The compiled per-pixel geometry of a fused render (one float64 loop) gives the eager
    geometry's values: to the last bit after the cast to float32; in float64 to the last bits,
    since its square root is the correctly rounded one (the C program's) where ATen's vectorised
    float64 sqrt is off by one unit for a few percent of values. And the warm-up's compilation
    serves a real detector's frame as it is (a guard that failed would compile again in the
    middle of a served command)."""
    kernels.warm_up("cpu", dtypes=(dtype,))
    _, eng = engine(name, "-compile", "on", dtype=dtype)
    assert kernels.compiled_geometry_fits(eng.frame, eng.L)
    if kernels._failed:
        pytest.skip("torch.compile is not available here")
    assert eng._fused_geometry is not kernels._EAGER["geometry"]
    args = (*_geometry_inputs(eng), dtype)
    if not hasattr(torch.compiler, "set_stance"):  # torch < 2.6
        pytest.skip("this torch cannot refuse to recompile")
    with torch.compiler.set_stance("fail_on_recompile"):
        got = kernels.call(eng._fused_geometry, "geometry", *args)
    want = kernels.loop_terms(*args)
    frame, pixels, fpixels, loops = args[:4]
    g = loop_geometry(frame, (pixels % fpixels).double(), (pixels // fpixels).double(), loops)
    assert torch.equal(want[0], g.q.to(dtype))  # the eager terms are the engine's geometry
    for name_, a, b in zip(("q", "omega", "capture", "polar", "skip"), got, want):
        assert a.dtype == b.dtype, name_
        if dtype == torch.float32 or name_ == "skip":
            assert torch.equal(a, b), name_
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13, atol=0, err_msg=name_)


def test_geometry_the_warm_up_did_not_compile_stays_eager():
    """Frames outside the compiled variant (several subpixels, a Kahn factor, dmin, a curved
    detector, thickness) take the eager geometry."""
    for name in ("polarization_kahn", "dmin_roi", "curved_detector", "detector_thickness",
                 "divergence_dispersion", "nopolar_point_pixel"):
        _, eng = engine(name, "-compile", "on")
        assert not kernels.compiled_geometry_fits(eng.frame, eng.L), name
        assert eng._fused_geometry is None, name
