"""Section ``bench``: render speed of heavy_mosaic_phi and supervisor_full on the device, in
float32 and float64, eager and compiled (torch.compile: Triton on CUDA, C++ on the CPU).

Per combination: one untimed render (for the compiled kernel it includes compiling), then timed
renders (device synchronised around each); evaluations per second from the median, the peak device
memory of the timed renders, and for the compiled kernel its agreement with the eager image and
whether it really ran compiled (``sim_core.kernels`` falls back to eager for good when a compiled
kernel fails to build). Bar: heavy_mosaic_phi float32 over 1,000 M evaluations per second on CUDA.
Last, the time to the first image of a fresh process (import, device start, render, files).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cases import BENCH, BENCH_CASES, bench_args, set_flag, shrink

BAR_CASE, BAR_DTYPE, BAR_EVALS_PER_S = "heavy_mosaic_phi", "float32", 1e9
#: compiled against eager: float64 to rounding; float32 as nanobragg-parity's float32 default
AGREEMENT = {"float64": 1e-10, "float32": 1e-4}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> dict:
    if device == "cuda":
        import torch
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated())}
    return {"kind": "process_peak_rss",
            "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}


def _rel(a, b) -> float:
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = float(np.abs(a).max()) if a.size else 0.0
    d = float(np.abs(a - b).max()) if a.size else 0.0
    return d / m if m > 0 else (0.0 if d == 0 else float("inf"))


def measure(name: str, args: list[str], dtype: str, mode: str, device: str, repeats: int):
    """(item fields, image as numpy) of one combination."""
    import torch

    from sim_core import kernels
    from sim_core.engine import Engine
    from sim_core.experiment import build_experiment, local_files
    from sim_core.nanobragg_args import parse_nanobragg_args

    cfg = parse_nanobragg_args(set_flag(args, "-compile", "on" if mode == "compiled" else "off"),
                               base_dir=BENCH).config
    exp = build_experiment(cfg, local_files(BENCH))
    eng = Engine(exp, device=device, dtype=getattr(torch, dtype),
                 memory_budget_mb=cfg.run.memory_budget_mb)
    fields = {"case": name, "dtype": dtype, "mode": mode, "shape_slow_fast": list(exp.shape),
              "memory_budget_mb": cfg.run.memory_budget_mb}
    if mode == "compiled" and eng._fused is None:
        fields["problem"] = "the fused kernel does not apply to this case"
    with torch.no_grad():
        _sync(device)
        t0 = time.perf_counter()
        image, stats = eng.render()
        _sync(device)
        fields["first_render_s"] = time.perf_counter() - t0
        _reset_peak(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            image, stats = eng.render()
            _sync(device)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    fields.update(evaluations=stats.evaluations, chunks=stats.chunks,
                  chunk_pixels=stats.chunk_pixels, render_s=times, median_s=med,
                  evals_per_s=stats.evaluations / med if med > 0 else 0.0, peak=_peak(device))
    if mode == "compiled":
        ran_compiled = (eng._fused is not None and eng._fused is not kernels._EAGER.get(
            getattr(eng, "_fused_kind", ""), None) and not kernels._failed)
        fields["ran_compiled"] = ran_compiled
        fields["compile_s"] = max(0.0, fields["first_render_s"] - med)
        if not ran_compiled:
            fields["problem"] = fields.get("problem") or (
                "torch.compile failed; sim_core.kernels fell back to the eager engine (see the "
                "section log)" if kernels._failed else "compiled kernel not used")
    return fields, image.detach().cpu().numpy()


def first_image(device: str, quick: bool, work: Path) -> dict:
    """Wall time of ``nanobragg`` in a fresh process (the cold start a new worker pays)."""
    args = bench_args("simple_1024")
    if quick:
        args = shrink(args, 4)
    folder = Path(tempfile.mkdtemp(prefix="first-image-", dir=work))
    env = dict(os.environ, NANOBRAGG_SERVER="off")
    cmd = [sys.executable, "-m", "sim_core", *args, "-device", device, "-dtype", "float32",
           "-nonoise", "-noprogress"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in r.stdout.splitlines() if x.startswith("rendered on")), "")
    return {"name": "first image of a fresh process", "command": "nanobragg " + " ".join(args),
            "wall_s": wall, "summary": line, "exit_code": r.returncode,
            "ok": None if r.returncode == 0 else False,
            "log_tail": "" if r.returncode == 0 else (r.stderr or r.stdout)[-1500:]}


def run(ctx: dict, emit) -> None:
    import torch

    from sim_core import kernels

    device, quick = ctx["device"], ctx["quick"]
    repeats = 1 if quick or device != "cuda" else 3
    factor = 32 if quick else (1 if device == "cuda" else 4)
    modes = ["eager", "compiled"]
    if kernels.disabled():
        modes = ["eager"]
        emit.not_run("compiled kernels", "BRAGG_COMPILE=off in the environment")
    if device != "cuda":
        emit.not_run("speed bar (heavy_mosaic_phi float32 > 1,000 M evaluations/s)",
                     "no CUDA device: CPU figures at reduced size are shown, not judged")
    emit.info(torch=torch.__version__, repeats=repeats, shrink_factor=factor,
              compile_threads=os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"))
    for name in BENCH_CASES:
        args = shrink(bench_args(name), factor)
        for dtype in ("float32", "float64"):
            eager_image = None
            for mode in modes:
                t0 = time.perf_counter()
                fields, image = measure(name, args, dtype, mode, device, repeats)
                ok = None
                if mode == "eager":
                    eager_image = image
                else:
                    fields["rel_to_eager"] = _rel(eager_image, image)
                    fields["agreement_bar"] = AGREEMENT[dtype]
                    ok = bool(fields.get("ran_compiled")) and (
                        fields["rel_to_eager"] <= AGREEMENT[dtype])
                if name == BAR_CASE and dtype == BAR_DTYPE and device == "cuda":
                    fields["speed_bar"] = BAR_EVALS_PER_S
                emit.item(name=f"{name} {dtype} {mode}", ok=ok,
                          elapsed_s=time.perf_counter() - t0, **fields)
    if device == "cuda" and not quick and "compiled" in modes:
        # does the GPU want bigger chunks than the default 1 GiB memory budget gives?
        args = set_flag(bench_args(BAR_CASE), "-memory_mb", 8192)
        fields, _ = measure(BAR_CASE, args, BAR_DTYPE, "compiled", device, repeats)
        emit.item(name=f"{BAR_CASE} {BAR_DTYPE} compiled, 8 GiB budget", ok=None, **fields)
    emit.item(**first_image(device, quick, Path(ctx["work"])))
