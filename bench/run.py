#!/usr/bin/env python3
"""Speed benchmark: our ``nanobragg`` against the C nanoBragg on the same command lines.

    python -m bench.run                       # all cases, ours only
    NB_C_BIN=/path/to/nanoBragg python -m bench.run --runs 5
    python -m bench.run --cases heavy_mosaic_phi --dtypes float32

For every case and dtype the whole command runs as a subprocess in a fresh copy of the case's folder
(start-up, file reading, rendering, noise and file writing included), once to warm up (numba and
file caches) and then ``--runs`` times. Our command runs in two modes: ``cold`` (a fresh process
that imports PyTorch, as a single command would) and ``served`` (handed to a warm
``nanobragg-server``, as in a script that runs many commands). Printed per case: the median wall time, evaluations per
second from it, the render-only time our summary reports, the peak resident memory, and with
``NB_C_BIN`` the C program's median time on the same command in the same session and the ratio.
An evaluation is one (subpixel, layer, source, phi step, mosaic domain) of one pixel.

This script builds nothing; NB_C_BIN must point at a C nanoBragg built elsewhere. The C program
runs with the OMP_NUM_THREADS of the environment (default here: the number of CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.host import cpu_model

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
BENCH = GOLDEN / "_bench"

#: name -> (folder with the inputs, argument list)
CASES = {
    "heavy_mosaic_phi": (BENCH, (BENCH / "heavy_mosaic_phi.args.txt").read_text().split()),
    "supervisor_full": (BENCH, (BENCH / "supervisor_full.args.txt").read_text().split()),
    "simple_1024": (BENCH, (BENCH / "simple_1024.args.txt").read_text().split()),
}
#: service-sized jobs: golden cases (their float images are compared by the tests, not here)
for _name in ("mosflm_matrix", "divergence_dispersion", "detector_thickness"):
    CASES[_name] = (GOLDEN / _name, (GOLDEN / _name / "args.txt").read_text().split())


def _nanobragg() -> list[str]:
    exe = Path(sys.executable).parent / "nanobragg"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sim_core"]


def run_measured(cmd: list[str], folder: Path, env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, from wait4) and stdout of one run in a fresh copy of ``folder``."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp) / "w"
        shutil.copytree(folder, work)
        out_path = Path(tmp) / "stdout.txt"
        err_path = Path(tmp) / "stderr.txt"
        with open(out_path, "w") as fo, open(err_path, "w") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fo, stderr=fe)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
        out = out_path.read_text()
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n"
                               f"{err_path.read_text()[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out


def measure(cmd, folder, env, runs):
    run_measured(cmd, folder, env)  # warm-up
    walls, rss, out = [], [], ""
    for _ in range(runs):
        w, r, out = run_measured(cmd, folder, env)
        walls.append(w)
        rss.append(r)
    return statistics.median(walls), max(rss), out, walls


def _evaluations(out: str) -> int | None:
    m = re.search(r"evaluations per pixel, ([\d,]+) in all", out)
    return int(m.group(1).replace(",", "")) if m else None


def _render_seconds(out: str) -> float | None:
    m = re.search(r"rendered on \S+ in \S+: ([\d.]+) s", out)
    return float(m.group(1)) if m else None


def machine() -> dict:
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    if cpu_model():
        info["cpu"] = cpu_model()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--dtypes", nargs="*", default=["float64", "float32"],
                    choices=["float64", "float32"])
    ap.add_argument("--runs", type=int, default=3, help="measured runs after one warm-up")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--c-bin", default=os.environ.get("NB_C_BIN"), help="C nanoBragg to compare")
    ap.add_argument("--modes", nargs="*", default=["cold", "served"], choices=["cold", "served"])
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    server_dir = tempfile.mkdtemp(prefix="bench-server-")
    envs = {"cold": dict(env, NANOBRAGG_SERVER="off"),
            "served": dict(env, NANOBRAGG_SERVER="auto", NANOBRAGG_SERVER_DIR=server_dir)}
    if "served" in args.modes:
        server = str(Path(_nanobragg()[0]).parent / "nanobragg-server")
        subprocess.run([server, "start", "--idle", "3600"], env=envs["served"], check=True)
    info = machine()
    print("machine:", json.dumps(info))
    rows = []
    header = (f"{'case':24s} {'dtype':8s} {'mode':6s} {'evals':>8s} {'ours s':>8s} {'render s':>8s} "
              f"{'M eval/s':>9s} {'peak MB':>8s} {'C s':>7s} {'C M/s':>7s} {'x C':>6s}")
    print(header)
    print("-" * len(header))
    for name in args.cases:
        folder, case_args = CASES[name]
        c_time = c_rss = None
        if args.c_bin:
            c_time, c_rss, _, _ = measure([args.c_bin] + case_args, folder, env, args.runs)
        for dtype in args.dtypes:
            for mode in args.modes:
                cmd = _nanobragg() + case_args + ["-dtype", dtype, "-device", args.device,
                                                  "-noprogress"]
                wall, rss, out, walls = measure(cmd, folder, envs[mode], args.runs)
                evals = _evaluations(out) or 0
                render = _render_seconds(out)
                row = {"case": name, "dtype": dtype, "mode": mode, "evaluations": evals,
                       "wall_s": wall, "walls_s": walls, "render_s": render,
                       "evals_per_s": evals / wall, "peak_rss_bytes": rss, "c_wall_s": c_time,
                       "c_peak_rss_bytes": c_rss}
                rows.append(row)
                ratio = f"{c_time / wall:6.2f}" if c_time else "     -"
                c_cols = (f"{c_time:7.2f} {evals / c_time / 1e6:7.1f}" if c_time else
                          f"{'-':>7s} {'-':>7s}")
                # served: the memory is the server's, not this client's
                mem = f"{rss / 2**20:8.0f}" if mode == "cold" else f"{'-':>8s}"
                print(f"{name:24s} {dtype:8s} {mode:6s} {evals / 1e6:7.1f}M {wall:8.2f} "
                      f"{(render or 0):8.2f} {evals / wall / 1e6:9.1f} {mem} {c_cols} "
                      f"{ratio}", flush=True)
    if "served" in args.modes:
        subprocess.run([server, "stop"], env=envs["served"], capture_output=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
