"""The GPU check's driver (standard library only, so that it runs before the project is installed).

Sets up an interpreter (setup_env), then runs each section in its own process group under a time
box, collects what each wrote (section.Emitter), judges the bars, and writes one report (text, and
JSON beside it with ``--json``). Exit status: 0 when every bar held (on the CPU dry run: when
everything that could run worked), 1 when a bar or a check failed or a section broke or ran out of
time, 2 when no usable interpreter could be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..host import cpu_model
from . import setup_env
from .report import BUDGET_SPENT, format_report, judge

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("tests", "parity", "bench", "service")
TITLES = {"tests": "CUDA-marked tests", "parity": "CPU/CUDA parity (float64)",
          "bench": "render speed", "service": "the service on the device"}
#: seconds per section: (on CUDA, on the CPU dry run)
TIME_BOX = {"setup": (150, 900), "tests": (150, 180), "parity": (90, 240), "bench": (210, 600),
            "service": (180, 400)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu-check", description="Check and benchmark bragg-service on a CUDA machine in one "
        "run (docs/performance.md, section GPU); --device cpu is a dry run on the CPU.")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cuda: the real check; cpu: dry run at reduced sizes; auto: cuda where "
                        "nvidia-smi exists (default)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and one repetition (the test suite's dry run)")
    p.add_argument("--only", default=",".join(ORDER),
                   help=f"comma-separated sections to run (default {','.join(ORDER)})")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole check, set-up included (default 450 on CUDA)")
    p.add_argument("--report", type=Path, default=None,
                   help="the report file (default <work>/gpu-check-report.txt)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--work", type=Path, default=None,
                   help="scratch folder (default: a new folder under the system temp)")
    p.add_argument("--python", default=None, help="interpreter to use as it is (no set-up)")
    p.add_argument("--wheels", type=Path, default=None,
                   help="folder of carried wheels (default .whl in the repository)")
    p.add_argument("--no-make", action="store_true", help="never fall back to `make setup`")
    return p


def _say(msg: str) -> None:
    print(msg, flush=True)


def machine_facts() -> dict:
    facts = {"host_python": platform.python_version(), "platform": platform.platform(),
             "cpus": os.cpu_count(), "cpu": cpu_model()}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                                "clocks.max.sm,temperature.gpu,utilization.gpu",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=30)
            facts["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
            fields = [x.strip() for x in r.stdout.split("\n")[0].split(",")]
            if len(fields) >= 2:
                facts["gpu"], facts["driver"] = fields[0], fields[1]
        except (OSError, subprocess.SubprocessError) as exc:
            facts["nvidia_smi"] = f"failed: {exc}"
    return facts


def run_section(name: str, python: str, env: dict, ctx: dict, timeout: float, work: Path) -> dict:
    """Run one section's process under ``timeout``; what it emitted, its status and log tail."""
    out = work / f"{name}.jsonl"
    out.unlink(missing_ok=True)
    ctx = dict(ctx, out=str(out))
    ctx_path = work / f"{name}.ctx.json"
    ctx_path.write_text(json.dumps(ctx))
    log = work / f"{name}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "bench.gpu_check.section", name, str(ctx_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def pump():
        with open(log, "wb") as fh:
            for raw in iter(proc.stdout.readline, b""):
                fh.write(raw)
                fh.flush()
                sys.stdout.write(f"  {name:7s}| {raw.decode(errors='replace')}")
                sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _say(f"gpu-check: {name} ran out of its {timeout:.0f} s; stopping it")
        for sig, grace in ((signal.SIGTERM, 25), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(5)
    records = []
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    errors = [r for r in records if r["type"] == "error"]
    status = ("timed out" if timed_out else "error" if errors or proc.returncode else "ran")
    return {"name": name, "title": TITLES[name], "status": status,
            "exit_code": proc.returncode, "time_box_s": timeout,
            "elapsed_s": time.perf_counter() - t0,
            "items": [r for r in records if r["type"] == "item"],
            "not_run": [r for r in records if r["type"] == "not_run"],
            "notes": [r["text"] for r in records if r["type"] == "note"],
            "info": {k: v for r in records if r["type"] == "info" for k, v in r.items()
                     if k != "type"},
            "errors": errors, "log": str(log),
            "log_tail": tail if (timed_out or errors or proc.returncode) else ""}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.time()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(ORDER))
    if unknown:
        print(f"gpu-check: unknown sections {unknown} (known: {', '.join(ORDER)})",
              file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if shutil.which("nvidia-smi") else "cpu"
    on_cuda = device == "cuda"
    budget = args.budget or (450.0 if on_cuda else 1800.0)
    deadline = time.monotonic() + budget
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    report_path = args.report or work / "gpu-check-report.txt"
    _say(f"gpu-check: device {device}{' (dry run)' if not on_cuda else ''}"
         f"{', quick' if args.quick else ''}; budget {budget:.0f} s; work folder {work}")

    report = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
              "device": device, "dry_run": not on_cuda, "quick": args.quick,
              "budget_s": budget, "machine": machine_facts(), "sections": {}}
    box = TIME_BOX["setup"][0 if on_cuda else 1]
    chosen = setup_env.choose(device, work, python=args.python, wheels=args.wheels,
                              allow_make=not args.no_make,
                              timeout=min(box, deadline - time.monotonic()), log=_say)
    report["setup"] = {k: v for k, v in chosen.items() if k != "env"}
    report["setup"]["time_box_s"] = box
    if chosen["python"] is None:
        report["setup"]["status"] = "failed"
        for name in ORDER:
            report["sections"][name] = {"name": name, "title": TITLES[name], "items": [],
                                        "status": "not run: no usable interpreter (set-up)"}
    else:
        report["setup"]["status"] = "ran"
        ctx = {"device": device, "quick": args.quick, "work": str(work)}
        for name in ORDER:
            if name not in only:
                report["sections"][name] = {"name": name, "title": TITLES[name],
                                            "status": "skipped (--only)", "items": []}
                continue
            left = deadline - time.monotonic()
            if left < 15:
                report["sections"][name] = {"name": name, "title": TITLES[name],
                                            "status": BUDGET_SPENT, "items": []}
                continue
            timeout = min(TIME_BOX[name][0 if on_cuda else 1], left)
            _say(f"gpu-check: {TITLES[name]} (time box {timeout:.0f} s)")
            report["sections"][name] = run_section(name, chosen["python"], chosen["env"], ctx,
                                                   timeout, work)
    report["elapsed_s"] = time.time() - t_start
    report["bars"] = judge(report)
    report["ok"] = all(b["held"] is not False for b in report["bars"])
    text = format_report(report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print("\n" + text, flush=True)
    _say(f"gpu-check: report written to {report_path}"
         + (f" and {args.json}" if args.json else ""))
    if chosen["python"] is None:
        return 2
    return 0 if report["ok"] else 1
