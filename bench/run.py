#!/usr/bin/env python3
"""Speed benchmark: the plain ``nanobragg`` command against the C nanoBragg, in one run.

    NB_C_BIN=/path/to/nanoBragg python -m bench.run           # everything, with the verdicts
    python -m bench.run --cases heavy_mosaic_phi --dtypes float32 --modes auto

For every case and dtype the whole command runs as a subprocess in a fresh copy of the case's folder
(start-up, file reading, rendering, noise and file writing included), once to warm up (numba and
file caches) and then ``--runs`` times; the table gives the median. Modes:

- ``cold``: ``NANOBRAGG_SERVER=off``: a fresh process that imports PyTorch and renders with the
  eager engine (what every command got before the render server started itself);
- ``auto``: plain ``nanobragg`` as a user runs it: the first command (timed apart, as ``first``)
  finds no server and starts one; after the server reports its kernels compiled, the commands are
  handed to it;
- ``busy``: ``auto`` again with two busy processes (``while 1: pass``) on the cores, and the C
  program measured under the same two.

The C program runs in the same session on the same commands, quiet and busy, with
OMP_NUM_THREADS = the number of usable cores unless the environment sets it; ours chooses its own
threads (an OMP_NUM_THREADS in the environment fixes them). The bench also measures the machine's
torch ``sin`` throughput (float32, float64) on those cores: a parallelepiped evaluation costs about
six sines, so sin/s ÷ 6 is the *sine bound* of evaluations/s, and the warm render's rate (from the
summary line, which includes building the experiment) is printed beside it; the verdict takes the
*warm render* measured at the end in the bench process itself: the compiled kernel alone
(``Engine.render`` after one untimed render), with the sine rate measured just before and after it,
so that both see the same load. Printed first: the CPU model, its vector
extension (and the one ATen uses), the load average before and after. Last: the acceptance
verdicts (the targets below). ``--json`` keeps every number.

This script builds nothing; NB_C_BIN (or --c-bin) must point at a C nanoBragg built elsewhere.
An evaluation is one (subpixel, layer, source, phi step, mosaic domain) of one pixel.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench.host import cpu_model, load_average, vector_extension

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
BENCH = GOLDEN / "_bench"

#: name -> (folder with the inputs, argument list)
CASES = {
    "heavy_mosaic_phi": (BENCH, (BENCH / "heavy_mosaic_phi.args.txt").read_text().split()),
    "supervisor_full": (BENCH, (BENCH / "supervisor_full.args.txt").read_text().split()),
    "simple_1024": (BENCH, (BENCH / "simple_1024.args.txt").read_text().split()),
}
DEFAULT_CASES = list(CASES)
#: service-sized jobs: golden cases (their float images are compared by the tests, not here)
for _name in ("mosflm_matrix", "divergence_dispersion", "detector_thickness"):
    CASES[_name] = (GOLDEN / _name, (GOLDEN / _name / "args.txt").read_text().split())

#: the acceptance of plain ``nanobragg`` (auto mode): C's time over ours at least this, by dtype
SPEED_TARGETS = {"heavy_mosaic_phi": {"float32": 4.0, "float64": 2.0},
                 "supervisor_full": {"float32": 3.0, "float64": 1.5}}
#: cases whose target is a time: ours at most this many times the C program's
TIME_TARGETS = {"simple_1024": 2.0}
#: warm float32 render over the sine bound
SINE_SHARE_TARGET = 0.80
#: with two busy processes, the ratio to C over the quiet ratio
BUSY_SHARE_TARGET = 0.70
#: sines per evaluation of the parallelepiped lattice factor (sin(N x) and sin(x), three axes)
SINES_PER_EVALUATION = 6


def _nanobragg() -> list[str]:
    exe = Path(sys.executable).parent / "nanobragg"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sim_core"]


def _server() -> list[str]:
    exe = Path(sys.executable).parent / "nanobragg-server"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sim_core.server"]


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


def measure(cmd, folder, env, runs, warm_up=True):
    if warm_up:
        run_measured(cmd, folder, env)
    walls, rss, outs = [], [], []
    for _ in range(runs):
        w, r, out = run_measured(cmd, folder, env)
        walls.append(w)
        rss.append(r)
        outs.append(out)
    return statistics.median(walls), max(rss), outs, walls


def _evaluations(out: str) -> int | None:
    m = re.search(r"evaluations per pixel, ([\d,]+) in all", out)
    return int(m.group(1).replace(",", "")) if m else None


def _render_seconds(out: str) -> float | None:
    m = re.search(r"rendered on \S+ in \S+: ([\d.]+) s", out)
    return float(m.group(1)) if m else None


def sine_rates(seconds: float = 1.0) -> dict[str, float]:
    """torch.sin evaluations per second on this process's threads, float32 and float64, on
    arguments spread like the kernel's (|x| up to tens of radians)."""
    import torch
    rates = {}
    for dtype in (torch.float32, torch.float64):
        x = (torch.rand(1 << 22, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
             * 60 - 30).to(dtype)
        out = torch.empty_like(x)
        torch.sin(x, out=out)
        best = 0.0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            for _ in range(5):
                torch.sin(x, out=out)
            best = max(best, 5 * x.numel() / (time.perf_counter() - t0))
        rates[str(dtype).removeprefix("torch.")] = best
    return rates


def machine() -> dict:
    import torch
    info = {"cpu": cpu_model(), "vector_extension": vector_extension(),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class BusyCores:
    """Two (``n``) processes that spin on the cores while the busy mode runs; stopped by their ids."""

    def __init__(self, n: int = 2):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                      for _ in range(self.n)]
        time.sleep(1.0)  # let the scheduler see them before anything is measured
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


class AutoServer:
    """The server a plain ``nanobragg`` starts on first use, in a folder of its own: the first
    command is timed, then the bench waits for the kernels; stopped at the end."""

    def __init__(self, env: dict):
        self.dir = tempfile.mkdtemp(prefix="bench-server-")
        self.env = dict(env, NANOBRAGG_SERVER="auto", NANOBRAGG_SERVER_DIR=self.dir)
        self.first_s: float | None = None
        self.ready_s: float | None = None

    def first_command(self, cmd: list[str], folder: Path) -> None:
        t0 = time.perf_counter()
        self.first_s, _, _ = run_measured(cmd, folder, self.env)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            st = subprocess.run(_server() + ["status"], env=self.env, capture_output=True,
                                text=True).stdout
            if re.search(r"kernels (ready|off|failed)", st):
                self.ready_s = time.perf_counter() - t0
                print(f"server: {st.strip()}; first command {self.first_s:.2f} s, ready "
                      f"{self.ready_s:.1f} s after it started", flush=True)
                return
            time.sleep(0.25)
        raise RuntimeError("the server started by the first command was not ready in 900 s")

    def stop(self) -> str:
        """Stop the server; returns its log (one line per served command, with its threads)."""
        subprocess.run(_server() + ["stop"], env=self.env, capture_output=True)
        log = Path(self.dir) / "server.log"
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


def _fmt(x, spec, none="-"):
    return format(x, spec) if x is not None else none


def verdicts(rows: list[dict], warm: list[dict]) -> list[tuple[bool | None, str]]:
    """(passed, line) for every acceptance item the rows allow judging (None: not measured)."""
    by = {(r["case"], r["dtype"], r["mode"]): r for r in rows}
    out = []

    def ratio(r):
        return r["c_wall_s"] / r["wall_s"] if r and r.get("c_wall_s") else None

    for case, dtypes in SPEED_TARGETS.items():
        for dtype, target in dtypes.items():
            x = ratio(by.get((case, dtype, "auto")))
            if x is None:
                continue
            out.append((x >= target, f"{case} {dtype}: plain nanobragg {x:.2f}x the C program's "
                        f"speed (target >= {target:g}x)"))
    for case, limit in TIME_TARGETS.items():
        for dtype in ("float32", "float64"):
            x = ratio(by.get((case, dtype, "auto")))
            if x is None:
                continue
            out.append((1 / x <= limit, f"{case} {dtype}: plain nanobragg takes {1 / x:.2f}x the "
                        f"C program's time (target <= {limit:g}x)"))
    for w in warm:
        if w["dtype"] != "float32":
            continue
        out.append((w["share"] >= SINE_SHARE_TARGET, f"{w['case']} float32: warm render "
                    f"{w['evals_per_s'] / 1e6:.0f} M evaluations/s = {w['share']:.0%} of the sine "
                    f"bound {w['sin_per_s'] / SINES_PER_EVALUATION / 1e6:.0f} M/s "
                    f"(target >= {SINE_SHARE_TARGET:.0%})"))
    for (case, dtype, mode), r in sorted(by.items()):
        if mode != "busy":
            continue
        quiet, busy = ratio(by.get((case, dtype, "auto"))), ratio(r)
        if quiet is None or busy is None:
            continue
        share = busy / quiet
        out.append((share >= BUSY_SHARE_TARGET, f"{case} {dtype}: with two busy processes "
                    f"{busy:.2f}x C = {share:.0%} of the quiet {quiet:.2f}x "
                    f"(target >= {BUSY_SHARE_TARGET:.0%})"))
    return out


#: warm renders timed per case and dtype (the best counts)
WARM_RUNS = 4


def warm_render(name: str, dtype: str, runs: int = WARM_RUNS) -> dict:
    """The compiled kernel's own rate in this process: the case's experiment built once, the
    kernels warmed, one untimed render, then the best of ``runs`` (``Engine.render`` alone, no
    experiment building or file writing); the sine rate measured just before and after."""
    import torch

    from sim_core import kernels
    from sim_core.engine import Engine
    from sim_core.experiment import build_experiment, local_files
    from sim_core.nanobragg_args import parse_nanobragg_args

    folder, case_args = CASES[name]
    cfg = parse_nanobragg_args(case_args + ["-compile", "on"], base_dir=folder).config
    exp = build_experiment(cfg, local_files(folder))
    dt = getattr(torch, dtype)
    kernels.warm_up("cpu", dtypes=(dt,))
    eng = Engine(exp, dtype=dt)
    eng.render()
    sin_before = sine_rates(0.5)[dtype]
    best = min(_timed(eng.render) for _ in range(runs))
    sin = (sin_before + sine_rates(0.5)[dtype]) / 2
    rate = exp.evaluations / best
    return {"case": name, "dtype": dtype, "render_s": best, "evals_per_s": rate,
            "sin_per_s": sin, "share": rate / (sin / SINES_PER_EVALUATION),
            "compiled": eng._fused is not None and not kernels._failed}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _measure_ours(name, folder, case_args, dtype, mode, env, args, c_time, c_rss) -> dict:
    """One row of the table: our command on ``name`` in ``dtype`` and ``mode``, printed."""
    cmd = _nanobragg() + case_args + ["-dtype", dtype, "-device", args.device, "-noprogress"]
    # the sine bound beside the warm render, in the same conditions
    sin_before = sine_rates(0.5) if mode == "auto" else None
    wall, rss, outs, walls = measure(cmd, folder, env, args.runs)
    sin_row = None
    if sin_before:
        sin_row = (sin_before[dtype] + sine_rates(0.5)[dtype]) / 2
    evals = _evaluations(outs[-1]) or 0
    renders = [r for r in map(_render_seconds, outs) if r]
    render = statistics.median(renders) if renders else None
    row = {"case": name, "dtype": dtype, "mode": mode, "evaluations": evals, "wall_s": wall,
           "walls_s": walls, "render_s": render, "evals_per_s": evals / wall,
           "peak_rss_bytes": rss, "c_wall_s": c_time, "c_peak_rss_bytes": c_rss,
           "sin_per_s": sin_row, "load": load_average()}
    # auto/busy: the memory is the server's, not this client's
    mem = f"{rss / 2**20:8.0f}" if mode == "cold" else f"{'-':>8s}"
    sin_col = f"{render and evals / render / (sin_row / SINES_PER_EVALUATION):5.0%}" \
        if sin_row and render else "    -"
    print(f"{name:18s} {dtype:8s} {mode:5s} {evals / 1e6:6.1f}M {wall:7.2f} "
          f"{_fmt(render, '7.2f', '      -')} {evals / wall / 1e6:7.1f} "
          f"{_fmt(render and evals / render / 1e6, '10.1f', '         -')} {sin_col} "
          f"{mem} {_fmt(c_time, '7.2f', '      -')} "
          f"{_fmt(c_time and c_time / wall, '6.2f', '     -')}", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=list(CASES))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "float64"],
                    choices=["float64", "float32"])
    ap.add_argument("--runs", type=int, default=3, help="measured runs after one warm-up")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--c-bin", default=os.environ.get("NB_C_BIN"), help="C nanoBragg to compare")
    ap.add_argument("--modes", nargs="*", default=["cold", "auto", "busy"],
                    choices=["cold", "auto", "busy"])
    ap.add_argument("--busy", type=int, default=2, help="spinning processes in the busy mode")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args(argv)

    env = dict(os.environ)  # the commands' environment, as the user's
    from sim_core.runtime import openmp_environment
    openmp_environment(os.environ)  # this process's warm renders wait as nanobragg's do
    env.pop("NANOBRAGG_SERVER", None)
    env_c = dict(env)
    env_c.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    info = machine()
    info["load_before"] = load_average()
    sines = sine_rates()
    info["sin_per_s"] = sines
    print("machine:", json.dumps(info))
    print("sine bound (torch.sin on %d threads / %d): float32 %.0f M/s -> %.0f M evaluations/s, "
          "float64 %.0f M/s -> %.0f M evaluations/s"
          % (info["torch_threads"], SINES_PER_EVALUATION, sines["float32"] / 1e6,
             sines["float32"] / 1e6 / SINES_PER_EVALUATION, sines["float64"] / 1e6,
             sines["float64"] / 1e6 / SINES_PER_EVALUATION), flush=True)
    auto = None
    if {"auto", "busy"} & set(args.modes):
        auto = AutoServer(env)
        name = args.cases[0]
        folder, case_args = CASES[name]
        auto.first_command(_nanobragg() + case_args + ["-dtype", args.dtypes[0], "-device",
                                                       args.device, "-noprogress"], folder)
        info["auto_first_command_s"] = auto.first_s
        info["auto_ready_s"] = auto.ready_s
    envs = {"cold": dict(env, NANOBRAGG_SERVER="off")}
    if auto is not None:
        envs["auto"] = envs["busy"] = auto.env
    rows = []
    c_cache: dict[tuple[str, bool], tuple[float, int]] = {}
    header = (f"{'case':18s} {'dtype':8s} {'mode':5s} {'evals':>7s} {'ours s':>7s} {'render':>7s} "
              f"{'M ev/s':>7s} {'render M/s':>10s} {'sin %':>5s} {'peak MB':>8s} {'C s':>7s} {'x C':>6s}")
    print(header)
    print("-" * len(header))
    try:
        # case by case (C quiet, cold, auto, then C and ours with the busy processes), so that
        # each comparison is taken minutes apart at most, whatever the machine's load does
        for name in args.cases:
            folder, case_args = CASES[name]
            for mode in args.modes:
                with BusyCores(args.busy) if mode == "busy" else contextlib.nullcontext():
                    c_time = c_rss = None
                    key = (name, mode == "busy")
                    if args.c_bin and key not in c_cache:  # quiet: once for cold and auto
                        c_cache[key] = measure([args.c_bin] + case_args, folder, env_c,
                                               args.runs)[:2]
                    if args.c_bin:
                        c_time, c_rss = c_cache[key]
                    for dtype in args.dtypes:
                        rows.append(_measure_ours(name, folder, case_args, dtype, mode,
                                                  envs[mode], args, c_time, c_rss))
    finally:
        if auto is not None:
            info["server_log"] = auto.stop()
            threads = re.findall(r", (\w+) threads$", info["server_log"], re.M)
            print("server's threads per command:", " ".join(threads))
    info["load_after"] = load_average()
    print(f"load average: {info['load_before']} before, {info['load_after']} after")
    warm = []
    if "auto" in args.modes and args.device != "cuda":
        print(f"\nwarm render (the compiled kernel alone, in this process, best of {WARM_RUNS}):")
        for name in args.cases:
            if name not in SPEED_TARGETS:
                continue
            for dtype in args.dtypes:
                w = warm_render(name, dtype)
                warm.append(w)
                print(f"  {name:18s} {dtype:8s} {w['render_s']:6.2f} s {w['evals_per_s'] / 1e6:7.1f} "
                      f"M evaluations/s = {w['share']:4.0%} of the sine bound "
                      f"{w['sin_per_s'] / SINES_PER_EVALUATION / 1e6:.0f} M/s"
                      f"{'' if w['compiled'] else ' (NOT compiled)'}", flush=True)
    judged = verdicts(rows, warm)
    if judged:
        print("\nacceptance (plain nanobragg = the auto mode, its server warm):")
        for ok, line in judged:
            print(f"  {'PASS' if ok else 'FAIL'}  {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": rows, "warm_render": warm,
                                         "verdicts": [{"pass": ok, "what": line}
                                                      for ok, line in judged]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
