"""The GPU check's bars and its text report (standard library only)."""

from __future__ import annotations

import statistics
import textwrap

SPEED_BAR = 1e9
BUDGET_SPENT = "not run: the budget was spent"


def _items(report: dict, section: str) -> list[dict]:
    return report.get("sections", {}).get(section, {}).get("items", [])


def _ran(report: dict, section: str) -> bool:
    """Whether the section's process ran (finished, broke or ran out of time)."""
    return report.get("sections", {}).get(section, {}).get("status") in ("ran", "error",
                                                                         "timed out")


def _bar(name: str, held, detail: str) -> dict:
    return {"name": name, "held": held, "detail": detail}


def _verdict(items: list[dict], on_cuda: bool, judged_on_cpu: bool = False):
    """False if an item failed; True if all passed (on CUDA, or where the CPU run is judged);
    None when nothing was judged."""
    if any(i.get("ok") is False for i in items):
        return False
    if not items:
        return None
    if on_cuda or judged_on_cpu:
        return all(i.get("ok") is not False for i in items)
    return None


def judge(report: dict) -> list[dict]:
    """Every bar of the check: held True / False, or None (not judged here, with the reason)."""
    on_cuda = report["device"] == "cuda"
    bars = []
    setup = report.get("setup", {})
    bars.append(_bar("set-up: an interpreter with the project and its dependencies",
                     setup.get("python") is not None, setup.get("route", "")))
    if setup.get("python") is None:
        return bars
    dry = "" if on_cuda else "dry run: no CUDA device"

    def section_bar(name, section, held, detail):
        if not _ran(report, section):
            status = report.get("sections", {}).get(section, {}).get("status", "not run")
            bars.append(_bar(name, None, status))
        else:
            bars.append(_bar(name, held, detail))

    tests = _items(report, "tests")
    counts = tests[0] if tests else {}
    section_bar("CUDA-marked tests pass", "tests", _verdict(tests, on_cuda),
                f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
                f"{counts.get('errors', 0)} errors, {counts.get('skipped', 0)} skipped"
                + (f" ({dry})" if dry else ""))
    par = _items(report, "parity")
    worst_img = max((i.get("image_rel", 0) or 0 for i in par), default=0.0)
    worst_tr = max((t.get("rel", 0) or 0 for i in par for t in i.get("traces", [])), default=0.0)
    section_bar("float64 CPU/CUDA parity <= 1e-10 relative (image and every trace key)", "parity",
                _verdict(par, on_cuda),
                f"{len(par)} cases; largest image {_g(worst_img)}, largest trace key "
                f"{_g(worst_tr)}" + (f" ({dry}: CPU against CPU)" if dry else ""))
    bench = _items(report, "bench")
    heavy = [i for i in bench if i.get("case") == "heavy_mosaic_phi"
             and i.get("dtype") == "float32" and i.get("memory_budget_mb", 1024) <= 1024
             and i.get("evals_per_s")]
    best = max(heavy, key=lambda i: i["evals_per_s"], default=None)
    if best is None:
        section_bar("heavy_mosaic_phi float32 > 1,000 M evaluations/s", "bench", None,
                    "not measured")
    else:
        section_bar("heavy_mosaic_phi float32 > 1,000 M evaluations/s", "bench",
                    (best["evals_per_s"] > SPEED_BAR) if on_cuda else None,
                    f"best {best['evals_per_s'] / 1e6:,.0f} M/s ({best['mode']})"
                    + (f" ({dry}, reduced size: not judged)" if dry else ""))
    compiled = [i for i in bench if i.get("mode") == "compiled"
                and i.get("memory_budget_mb", 1024) <= 1024]
    section_bar("compiled kernels run compiled and agree with the eager engine", "bench",
                _verdict(compiled, on_cuda, judged_on_cpu=True) if compiled else None,
                f"{sum(1 for i in compiled if i.get('ok'))} of {len(compiled)} combinations"
                if compiled else "no compiled combination ran")
    svc = _items(report, "service")
    jobs = [i for i in svc if i.get("name", "").startswith("job ")]
    section_bar("every service job correct (artifacts verified; images equal a CPU render)",
                "service", _verdict(svc, on_cuda, judged_on_cpu=True),
                f"{sum(1 for j in jobs if j.get('ok'))} of {len(jobs)} jobs correct")
    broken = [s["name"] for s in report.get("sections", {}).values()
              if s.get("status") in ("error", "timed out", BUDGET_SPENT)]
    bars.append(_bar("every section ran and finished inside its time box without an error",
                     not broken, ", ".join(f"{b}: {report['sections'][b]['status']}"
                                           for b in broken) or "all finished"))
    return bars


def _g(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}"


def _n(x) -> str:
    """An evaluation count: 4,096 or 13.8M."""
    if not x:
        return "-"
    return f"{x:,}" if x < 1e6 else f"{x / 1e6:.1f}M"


def _s(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _mark(ok) -> str:
    return {True: "PASS", False: "FAIL", None: " -- "}[ok]


def _header(report: dict) -> list[str]:
    m = report.get("machine", {})
    info = report.get("setup", {}).get("info", {}) or {}
    if report["device"] == "cuda":
        dev = (f"CUDA: {info.get('device_name') or m.get('gpu', '?')}, driver "
               f"{m.get('driver', '?')}, compute capability {info.get('capability', '?')}, "
               f"{info.get('multiprocessors', '?')} SMs, {info.get('device_memory_gib', '?')} GiB; "
               f"CUDA {info.get('torch_cuda', '?')} (torch {info.get('torch', '?')}), "
               f"triton {info.get('triton', '-')}")
    else:
        dev = ("CPU DRY RUN: no CUDA device was used; every section ran on the CPU at reduced "
               f"sizes{' (--quick)' if report.get('quick') else ''}; torch {info.get('torch', '?')}")
    return [
        f"bragg-service GPU check, {report['started_at']}, {report.get('elapsed_s', 0):.0f} s "
        f"(budget {report.get('budget_s', 0):.0f} s)",
        f"device: {dev}",
        f"host: Python {info.get('python', '?')} ({info.get('executable', '?')}), "
        f"{m.get('cpus', '?')} CPUs ({m.get('cpu', '?')}), {m.get('platform', '?')}",
        f"set-up: {report.get('setup', {}).get('route', '?')} "
        f"({report.get('setup', {}).get('elapsed_s', 0):.1f} s)",
    ]


def _tests(sec: dict) -> list[str]:
    out = []
    for i in sec.get("items", []):
        out.append(f"  pytest -m cuda over {i.get('files', '?')} files: {i.get('passed', 0)} "
                   f"passed, {i.get('failed', 0)} failed, {i.get('errors', 0)} errors, "
                   f"{i.get('skipped', 0)} skipped")
        out += [f"  failed: {f}" for f in i.get("failures", [])]
    return out


def _parity(sec: dict) -> list[str]:
    out = [f"  {'case':38s} {'pixels':>10s} {'image rel':>10s} {'sum rel':>9s} "
           f"{'trace rel':>10s}  {'worst trace key':24s} ok"]
    for i in sec.get("items", []):
        S, F = i.get("shape_slow_fast", ["?", "?"])
        tr = (i.get("traces") or [{}])[0]
        out.append(f"  {i['name']:38s} {f'{F}x{S}':>10s} {_g(i.get('image_rel')):>10s} "
                   f"{_g(i.get('sum_rel')):>9s} {_g(tr.get('rel')):>10s}  "
                   f"{str(tr.get('worst_key') or '-'):24s} {_mark(i.get('ok'))}")
    out.append("  every trace key, largest relative difference (PHI[*]: over the phi steps):")
    for i in sec.get("items", []):
        for tr in i.get("traces", []):
            s, f = tr.get("pixel_slow_fast", ["?", "?"])
            keys = tr.get("keys", [])
            equal = [k for k in keys if k["rel"] == 0]
            pairs = "  ".join(f"{k['key']} {_g(k['rel'], 2)}" for k in keys if k["rel"] != 0)
            out.append(f"  - {i['name']}, pixel (slow {s}, fast {f}): {len(keys)} keys, "
                       f"{len(equal)} exactly equal" + (", the others:" if pairs else ""))
            out += textwrap.wrap(pairs, 100, initial_indent="      ",
                                 subsequent_indent="      ")
            if tr.get("first_divergence"):
                out.append(f"      first divergence: {tr['first_divergence']}")
    return out


def _bench(sec: dict) -> list[str]:
    out = [f"  {'case':18s} {'dtype':8s} {'mode':22s} {'evals':>8s} {'median s':>9s} "
           f"{'M eval/s':>9s} {'peak MiB':>9s} {'first s':>8s} {'vs eager':>9s} ok"]
    for i in sec.get("items", []):
        if "case" not in i:
            continue
        mode = i["mode"] + (" 8 GiB" if i.get("memory_budget_mb", 1024) > 1024 else "")
        peak = i.get("peak", {})
        out.append(
            f"  {i['case']:18s} {i['dtype']:8s} {mode:22s} {_n(i.get('evaluations')):>8s} "
            f"{_s(i.get('median_s')):>9s} {i.get('evals_per_s', 0) / 1e6:9.1f} "
            f"{peak.get('bytes', 0) / 2**20:9.0f} {_s(i.get('first_render_s')):>8s} "
            f"{_g(i.get('rel_to_eager')):>9s} {_mark(i.get('ok'))}"
            + (f"  ({i['problem']})" if i.get("problem") else ""))
    kinds = {i.get("peak", {}).get("kind") for i in sec.get("items", []) if "case" in i}
    if kinds:
        out.append(f"  peak: {', '.join(sorted(k for k in kinds if k))} (cuda_max_allocated: "
                   "device memory of the timed renders; process_peak_rss: the section's "
                   "process)")
    for i in sec.get("items", []):
        if i.get("name") == "first image of a fresh process":
            out.append(f"  first image of a fresh process: {_s(i.get('wall_s'))} s wall for "
                       f"`{i.get('command', '')[:60]}...`: {i.get('summary', '')}")
    return out


def _service(sec: dict) -> list[str]:
    out = []
    info = sec.get("info", {})
    jobs = [i for i in sec.get("items", []) if i.get("name", "").startswith("job ")]
    for i in sec.get("items", []):
        if i.get("name") == "fresh worker":
            out.append(f"  fresh worker (`bragg up`): /readyz after {_s(i.get('ready_s'))} s, "
                       f"first job finished after {_s(i.get('first_job_finished_s'))} s "
                       f"{_mark(i.get('ok'))}")
    out.append(f"  {'job':28s} {'dtype':8s} {'pixels':>10s} {'evals':>8s} {'queued s':>9s} "
               f"{'run s':>7s} {'submit->fin s':>13s} {'files':>5s} {'vs CPU':>8s} ok")
    for j in jobs:
        shape = j.get("shape_slow_fast") or ["?", "?"]
        out.append(f"  {j.get('label', '?')[:28]:28s} {j.get('dtype', '?'):8s} "
                   f"{f'{shape[1]}x{shape[0]}':>10s} {_n(j.get('evaluations')):>8s} "
                   f"{_s(j.get('queued_s')):>9s} {_s(j.get('run_s')):>7s} "
                   f"{_s(j.get('submit_to_finished_s')):>13s} {str(j.get('artifacts', '-')):>5s} "
                   f"{_g(j.get('image_rel_to_cpu')):>8s} {_mark(j.get('ok'))}"
                   + (f"  ({j['error']})" if j.get("error") else ""))
    times = [j["submit_to_finished_s"] for j in jobs if j.get("submit_to_finished_s") is not None]
    if times:
        out.append(f"  submit -> finished over {len(times)} jobs: median {statistics.median(times):.3f}"
                   f" s, max {max(times):.3f} s; all {info.get('jobs', '?')} submitted -> last "
                   f"finished {_s(info.get('all_submitted_to_last_finished_s'))} s")
    for i in sec.get("items", []):
        if i.get("name") == "series of 24 images":
            out.append(f"  series of 24 images: {i.get('status')}, "
                       f"{i.get('float_images', '?')} float images, submit -> finished "
                       f"{_s(i.get('submit_to_finished_s'))} s, checksum failures "
                       f"{i.get('checksum_failures', '?')} {_mark(i.get('ok'))}"
                       + (f"  ({i['error']})" if i.get("error") else ""))
        if i.get("name") == "supervisor verification":
            out.append(f"  supervisor verification ({' vs '.join(i.get('sides', []))}, pixels "
                       f"{i.get('pixels', '?')}): {i.get('status')}, verdict "
                       f"{i.get('verdict', '?')}, image Δ relative {_g(i.get('image_rel'))} "
                       f"(absolute {_g(i.get('image_abs'))}, tolerance {_g(i.get('tolerance'))}),"
                       f" trace Δ {_g(i.get('trace_rel'))}, TRACE_PY_PHI lines "
                       f"{i.get('phi_lines', '?')}, submit -> finished "
                       f"{_s(i.get('submit_to_finished_s'))} s {_mark(i.get('ok'))}"
                       + (f"  (failed: {'; '.join(i['failed'])})" if i.get("failed") else "")
                       + (f"  ({i['error']})" if i.get("error") else ""))
    return out


FORMATTERS = {"tests": _tests, "parity": _parity, "bench": _bench, "service": _service}


def format_report(report: dict) -> str:
    lines = _header(report)
    bars = report.get("bars", [])
    failed = [b for b in bars if b["held"] is False]
    judged = [b for b in bars if b["held"] is not None]
    if failed:
        verdict = f"FAIL: {len(failed)} of {len(judged)} judged bars failed"
    elif report["device"] == "cuda":
        verdict = f"PASS: all {len(judged)} judged bars held"
    else:
        verdict = (f"DRY RUN OK: everything that could run on the CPU worked ({len(judged)} "
                   "bars judged); the CUDA figures are still to be measured")
    lines += ["", f"RESULT: {verdict}", "", "bars:"]
    lines += [f"  [{_mark(b['held'])}] {b['name']}: {b['detail']}" for b in bars]
    not_run = []
    for n, (name, sec) in enumerate(report.get("sections", {}).items(), 1):
        head = (f"{n}. {sec.get('title', name)}: {sec.get('status')}"
                + (f" in {sec['elapsed_s']:.1f} s (time box {sec['time_box_s']:.0f} s)"
                   if "elapsed_s" in sec else ""))
        lines += ["", head]
        if sec.get("items"):
            lines += FORMATTERS[name](sec)
        for nr in sec.get("not_run", []):
            not_run.append(f"{sec.get('title', name)}: {nr['what']}: {nr['why']}")
        for note in sec.get("notes", []):
            lines.append("  note: " + note.replace("\n", "\n    "))
        for e in sec.get("errors", []):
            lines.append(f"  ERROR: {e.get('error')}")
        if sec.get("log_tail"):
            lines.append(f"  log tail ({sec.get('log')}):")
            lines += ["    " + x for x in sec["log_tail"].splitlines()[-25:]]
        if not sec.get("items") and sec.get("status") not in ("ran",):
            not_run.append(f"{sec.get('title', name)}: {sec.get('status')}")
    for t in report.get("setup", {}).get("tried", []):
        lines.append(f"set-up tried: {t}")
    lines += ["", "not run here:" if not_run else "not run here: nothing"]
    lines += [f"  - {x}" for x in not_run]
    return "\n".join(lines) + "\n"
