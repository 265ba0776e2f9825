"""The render loop: chunking does not change the image, progress, cancel, memory budget, errors."""

import numpy as np
import pytest
import torch

from sim_core.engine import Engine, SequenceState
from sim_core.errors import InputFileError, RenderCancelled
from sim_core.experiment import build_experiment, local_files
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import simulate
from tests.golden import load_case, meets_bar


def experiment(name, *extra):
    case = load_case(name)
    parsed = parse_nanobragg_args(case.our_args + list(extra), base_dir=case.folder)
    return case, build_experiment(parsed.config, local_files(case.folder))


# cases that exercise each order-dependent path: orientations, recurrence, interpolation fallback,
# c-parity carry-over, thickness layers, several sources with dmin
@pytest.mark.parametrize("name", ["mosaic_domains", "oversample_flags", "hkl_interpolate_out_of_range",
                                  "phi0_carryover_c_parity", "detector_thickness",
                                  "divergence_dispersion", "dmin_roi"])
@pytest.mark.parametrize("target", [1, 7, 200, 5000])
def test_chunking_does_not_change_the_image(name, target):
    case = load_case(name)
    s, f = case.trace_pixel
    # a small window around the traced pixel (which sits on a peak) keeps the tiny chunks fast
    roi = [str(max(f - 3, 0)), str(f + 3), str(max(s - 2, 0)), str(s + 2)]
    _, exp = experiment(name, "-roi", *roi)
    ref, _ = Engine(exp).render()
    small, stats = Engine(exp, target_chunk_evals=target).render()
    if target < stats.evaluations:
        assert stats.blocks > 1
    assert float(ref.max()) > 0
    # blocks change only the order of floating-point sums and products
    np.testing.assert_allclose(small.numpy(), ref.numpy(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("name,target", [("phi0_carryover_c_parity", 4000),
                                         ("hkl_interpolate_out_of_range", 50)])
def test_whole_image_in_small_chunks_meets_the_bar(name, target):
    """The order-dependent events (first loop, interpolation fallback) survive chunking."""
    case, exp = experiment(name)
    image, stats = Engine(exp, target_chunk_evals=target).render()
    assert stats.chunks > 10
    ok, m = meets_bar(image.numpy(), case.reference())
    assert ok and m["max_diff"] < 1e-6, m  # equal up to the float32 rounding of the reference


def test_plan_respects_the_memory_budget():
    _, exp = experiment("divergence_dispersion", "-mosaic", "0.5", "-mosaic_domains", "40",
                        "-phisteps", "30", "-osc", "1")
    eng = Engine(exp, memory_budget_mb=16, target_chunk_evals=1 << 40)
    pixels, loops, orients = eng.plan(10**6)
    evals = pixels * loops * orients
    assert evals * eng.bytes_per_evaluation() <= 16 << 20
    assert exp.evaluations_per_pixel > evals  # one pixel alone is over budget: loops are split
    assert loops < eng.L


def test_progress_reaches_one_and_cancel_stops_between_chunks():
    _, exp = experiment("hkl_nearest", "-roi", "96", "159", "96", "159")
    seen = []
    Engine(exp, target_chunk_evals=1 << 12).render(progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(RenderCancelled):
        Engine(exp, target_chunk_evals=1 << 12).render(cancel=cancel)
    assert len(calls) == 3


def test_missing_and_malformed_input_files(tmp_path):
    args = ["-cell", "40", "50", "60", "90", "90", "90", "-hkl", "missing.hkl", "-detpixels", "8"]
    cfg = parse_nanobragg_args(args).config
    with pytest.raises(InputFileError, match="missing.hkl"):
        simulate(cfg, local_files(tmp_path))
    (tmp_path / "bad.hkl").write_text("0 0 0 10\n1 0 0 12\n1 x 0 3\n")
    cfg = parse_nanobragg_args(args[:7] + ["-hkl", "bad.hkl"]).config
    with pytest.raises(InputFileError) as exc:
        simulate(cfg, local_files(tmp_path))
    assert exc.value.line == 3
    assert "bad.hkl line 3" in str(exc.value)


def test_roi_and_mask_leave_other_pixels_zero(tmp_path):
    _, exp = experiment("cubic_default_F", "-roi", "10", "20", "30", "40")
    image, stats = Engine(exp).render()
    img = image.numpy()
    assert stats.pixels == 11 * 11
    assert (img[30:41, 10:21] > 0).all()
    img[30:41, 10:21] = 0
    assert not img.any()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["mosaic_domains", "detector_thickness", "hkl_interpolate"])
def test_cuda_matches_cpu_in_float64(name):
    _, exp = experiment(name)
    cpu, _ = Engine(exp, device="cpu").render()
    gpu, _ = Engine(exp, device="cuda").render()
    a, b = cpu.numpy(), gpu.cpu().numpy()
    assert np.abs(a - b).max() / np.abs(a).max() <= 1e-10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["cubic_default_F", "mosflm_matrix", "dmin_roi",
                                  "divergence_dispersion"])
def test_cuda_render_loop_never_waits_for_the_device(name, dtype):
    """No host synchronisation (``.item()``, a copy to the host, a data-dependent shape) in the
    loop of a render without order-dependent modes: it would stall the GPU once per block."""
    _, exp = experiment(name)
    eng = Engine(exp, device="cuda", dtype=dtype, target_chunk_evals=1 << 14)
    order = exp.render_pixels()[:4096]
    pixels = torch.as_tensor(order, device="cuda")
    ranks = torch.arange(order.size, device="cuda")
    plan = eng.plan(order.size)
    state = SequenceState()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for start in range(0, order.size, plan[0]):
            eng.render_chunk(pixels[start:start + plan[0]], ranks[start:start + plan[0]], state,
                             plan)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_float32_builds_a_float64_twin_only_for_order_dependent_modes():
    """The twin decides order-dependent events in float64; a plain render has none to decide, so
    it must not pay for a second engine (a float64 copy of the HKL grid on the device)."""
    _, exp = experiment("mosflm_matrix", "-roi", "120", "130", "120", "130")
    eng = Engine(exp, dtype=torch.float32)
    eng.render()
    assert getattr(eng, "_twin", None) is None
    _, exp = experiment("hkl_interpolate_out_of_range", "-roi", "60", "66", "60", "66")
    eng = Engine(exp, dtype=torch.float32)
    image, _ = eng.render()
    assert eng._twin.dtype == torch.float64 and float(image.max()) > 0


def test_oversample_polar_overrides_nopolar_as_in_nanobragg():
    """The C program recomputes the polarization for every subpixel with -oversample_polar even
    when -nopolar reset it to 1 (found by comparing random command lines with the C program)."""
    extra = ["-oversample", "2", "-oversample_polar", "-roi", "60", "70", "60", "70"]
    _, both = experiment("polarization_kahn", *extra, "-nopolar")
    _, polar = experiment("polarization_kahn", *extra)
    _, plain = experiment("polarization_kahn", *extra[:2], "-nopolar", *extra[3:])
    a, b, c = (Engine(e).render()[0].numpy() for e in (both, polar, plain))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3 * np.abs(c).max()
