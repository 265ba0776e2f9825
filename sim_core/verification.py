"""A verification report: several renders (or references) of one command, compared image by image
and trace by trace, with exit criteria.

Plain functions on plain data, so that the job service (``jobs/kinds/verification.py``) and tests
can build a report from whatever the sides are — a render by a worker, an uploaded float image and
C trace log, an earlier job's files:

    sides = [Side("cpu:float64", "render", "cpu", "float64", image=img_a, traces={(65, 65): txt_a}),
             Side("reference", "reference", image=c_image, traces={(65, 65): trace_c})]
    report = build_report(sides, pixels=[(65, 65)], phi_steps=5)
    report["verdict"], format_markdown(report)

Every side is compared with the first side that ran (its *reference*, A). Tolerances, as
``nanobragg-parity`` uses them, unless given: image ``max|A-B| / max|A|`` ≤ 1e-10 between two
float64 renders, 1e-4 between two float32 renders, 1e-3 between float64 and float32; against an
uploaded reference (a float32 file of the C program, which computes in double) 1e-4, the golden
cases' agreement. Traces: the image tolerance, 1e-6 against a reference trace (the C program prints
some lines with six significant digits); a float32 render's traces are shown but not judged unless
``trace_tolerance`` is given (a value near a zero of ``F_latt`` has no useful relative precision in
float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .trace_diff import _jsonable, compare, parse_trace, short_number

#: keys a trace of a pixel must hold (square crystal shape): the solid angle, the lattice factors,
#: the intensities before and after scaling and polarization, the rotated real and reciprocal cell
EXPECTED_KEYS = ("omega_pixel_sr", "rot_a_angstroms", "rot_b_angstroms", "rot_c_angstroms",
                 "rot_a_star_A_inv", "rot_b_star_A_inv", "rot_c_star_A_inv", "F_latt_a",
                 "F_latt_b", "F_latt_c", "F_latt", "I_before_scaling", "polar", "I_pixel_final")
#: the first line of each block of a trace (one block per sensor layer × subpixel)
_BLOCK_KEY = "pix0_vector_meters"


@dataclass
class Side:
    """One side of a verification, as the report sees it."""

    name: str  # "cpu:float64", "reference", "job 3f2a…"
    source: str  # "render" | "reference" | "job"
    device: str = ""
    dtype: str = ""
    phi_mode: str = ""
    #: False: the side did not run (its ``reason`` says why, e.g. "not run: no CUDA worker")
    ran: bool = True
    reason: str = ""
    image: Optional[np.ndarray] = None  # (slow, fast)
    traces: dict = field(default_factory=dict)  # (slow, fast) -> trace text
    job: str = ""
    environment: dict = field(default_factory=dict)
    #: per-pixel trace expected (a render traces every pixel; an upload only what it holds)
    expects_traces: bool = True
    #: the trace holds per-φ lines (ours); the C program's golden traces have none
    expects_phi_lines: bool = True


def pair_tolerance(a: Side, b: Side) -> float:
    """The default image tolerance of comparing ``b`` against ``a`` (see the module doc)."""
    if "reference" in (a.source, b.source):
        return 1e-4
    dts = {a.dtype or "float64", b.dtype or "float64"}
    if dts == {"float64"}:
        return 1e-10
    return 1e-3 if len(dts) > 1 else 1e-4


def trace_stats(text: str, pixel: tuple[int, int], phi_steps: int) -> dict:
    """Line counts, per-φ line counts, the final intensity and the expected keys it lacks, of one
    pixel's trace."""
    recs = [r for r in parse_trace(text) if r.pixel in (tuple(pixel), None)]
    main = [r for r in recs if r.family == "main"]
    phi_lines = len({r.line for r in recs if r.family == "phi"})
    keys = {r.key for r in main}
    final = next((r.values[0] for r in main if r.key == "I_pixel_final" and r.values), None)
    blocks = sum(1 for r in main if r.key == _BLOCK_KEY)
    return {"lines": len(main), "phi_lines": phi_lines, "blocks": blocks,
            "phi_lines_expected": blocks * phi_steps,
            "final_intensity": _jsonable(final) if isinstance(final, float) else final,
            "missing_keys": [k for k in EXPECTED_KEYS if k not in keys]}


def _image_diff(a: np.ndarray, b: np.ndarray) -> dict:
    ia = np.asarray(a, dtype=np.float64)
    ib = np.asarray(b, dtype=np.float64)
    if ia.shape != ib.shape:
        return {"shape_a": list(ia.shape), "shape_b": list(ib.shape), "max_abs": math.inf,
                "max_rel": math.inf, "where_slow_fast": None,
                "problem": f"image shapes differ: {ia.shape} against {ib.shape}"}
    diff = np.abs(ia - ib)
    flat = int(np.nanargmax(diff)) if diff.size and not np.isnan(diff).all() else 0
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    max_a = float(np.nanmax(np.abs(ia))) if ia.size else 0.0
    rel = max_abs / max_a if max_a > 0 else (0.0 if max_abs == 0 else math.inf)
    sa, sb = float(ia.sum()), float(ib.sum())
    return {"max_abs": max_abs, "max_rel": rel, "max_a": max_a,
            "where_slow_fast": list(divmod(flat, ia.shape[1])) if ia.ndim == 2 else None,
            "sum_a": sa, "sum_b": sb,
            "sum_rel": abs(sa - sb) / abs(sa) if sa else (0.0 if sb == 0 else math.inf)}


def _criterion(name: str, ok: bool, value, threshold, detail: str = "") -> dict:
    return {"name": name, "ok": bool(ok), "value": value, "threshold": threshold,
            "detail": detail}


def build_report(sides: list[Side], *, pixels, phi_steps: int, tolerance: Optional[float] = None,
                 trace_tolerance: Optional[float] = None, phi_mode: str = "",
                 command: Optional[list[str]] = None) -> dict:
    """The report (``report.json``'s content) of ``sides``; ``verdict`` is "pass" when every
    criterion is met."""
    pixels = [tuple(p) for p in pixels]
    out_sides = []
    for s in sides:
        entry = {"name": s.name, "source": s.source, "device": s.device, "dtype": s.dtype,
                 "phi_mode": s.phi_mode, "ran": s.ran, "reason": s.reason, "job": s.job,
                 "environment": s.environment, "traces": {}}
        if s.image is not None:
            img = np.asarray(s.image, dtype=np.float64)
            entry["image"] = {"shape_slow_fast": list(img.shape), "sum": float(img.sum()),
                              "max": float(img.max()) if img.size else 0.0}
        for p, text in s.traces.items():
            entry["traces"][f"{p[0]},{p[1]}"] = trace_stats(text, p, phi_steps)
        out_sides.append(entry)

    criteria = []
    not_run = [s for s in sides if not s.ran]
    criteria.append(_criterion(
        "every side ran", not not_run, f"{len(sides) - len(not_run)} of {len(sides)}",
        f"{len(sides)} of {len(sides)}",
        "; ".join(f"{s.name}: {s.reason or 'not run'}" for s in not_run)))

    ran = [s for s in sides if s.ran]
    traced = [s for s in ran if s.expects_traces or s.traces]
    missing = []
    for s in traced:
        for p in pixels:
            if p not in s.traces:
                missing.append(f"{s.name}: no trace of pixel {p}")
                continue
            lacks = trace_stats(s.traces[p], p, phi_steps)["missing_keys"]
            if lacks:
                missing.append(f"{s.name} pixel {p}: lacks " + ", ".join(lacks))
    if traced and pixels:
        criteria.append(_criterion(
            "traces present for every pixel with the expected keys", not missing,
            f"{len(traced)} sides x {len(pixels)} pixels" if not missing else
            f"{len(missing)} missing", "every side, every pixel, keys " + ", ".join(EXPECTED_KEYS),
            "; ".join(missing)))

    phi_bad = []
    phi_counts = []
    for s in traced:
        if not s.expects_phi_lines:
            continue
        for p in pixels:
            if p in s.traces:
                st = trace_stats(s.traces[p], p, phi_steps)
                phi_counts.append(st["phi_lines"])
                if st["phi_lines"] != st["phi_lines_expected"] or not st["blocks"]:
                    phi_bad.append(f"{s.name} pixel {p}: {st['phi_lines']} lines, expected "
                                   f"{st['phi_lines_expected']} ({st['blocks']} blocks x "
                                   f"{phi_steps} steps)")
    if phi_counts:
        criteria.append(_criterion(
            "one TRACE_PY_PHI line per phi step", not phi_bad,
            f"{min(phi_counts)}..{max(phi_counts)} per pixel" if min(phi_counts) != max(phi_counts)
            else f"{phi_counts[0]} per pixel", f"{phi_steps} per block", "; ".join(phi_bad)))

    comparisons = []
    ref = ran[0] if ran else None
    for s in ran[1:]:
        rtol = tolerance if tolerance is not None else pair_tolerance(ref, s)
        float32 = "float32" in (ref.dtype if ref.source != "reference" else "",
                                s.dtype if s.source != "reference" else "")
        judged = trace_tolerance is not None or not float32
        if trace_tolerance is not None:
            trtol = trace_tolerance
        elif "reference" in (ref.source, s.source):
            trtol = 1e-6
        else:
            trtol = rtol
        comp = {"a": ref.name, "b": s.name, "image_tolerance": rtol, "trace_tolerance": trtol,
                "traces_judged": judged, "image": None, "traces": []}
        if ref.image is not None and s.image is not None:
            d = _image_diff(ref.image, s.image)
            d["ok"] = d.get("problem") is None and d["max_rel"] <= rtol
            comp["image"] = d
            criteria.append(_criterion(
                f"image: {s.name} against {ref.name}", d["ok"], _jsonable(d["max_rel"]),
                rtol, d.get("problem") or (
                    f"max|A-B| {d['max_abs']:.3g} at (slow, fast) {tuple(d['where_slow_fast'])}, "
                    f"relative to max|A| {d['max_a']:.6g}")))
        worst = 0.0
        trace_ok = True
        first = None
        for p in pixels:
            if p not in ref.traces or p not in s.traces:
                continue
            rep = compare([r for r in parse_trace(ref.traces[p]) if r.pixel in (p, None)],
                          [r for r in parse_trace(s.traces[p]) if r.pixel in (p, None)],
                          trtol, name_a=ref.name, name_b=s.name)
            worst = max(worst, rep.max_rel)
            trace_ok = trace_ok and rep.ok
            if first is None and rep.first_divergence:
                first = dict(rep.first_divergence, pixel=list(p))
            comp["traces"].append({
                "pixel_slow_fast": list(p), "ok": rep.ok, "lines": len(rep.pairs),
                "max_rel": _jsonable(rep.max_rel), "max_abs": _jsonable(rep.max_abs),
                "worst_key": rep.worst_key.key if rep.worst_key else None,
                "first_divergence": rep.first_divergence,
                "skipped_families": rep.skipped_families,
                "keys": [{"key": k.key, "lines_a": k.occurrences_a, "lines_b": k.occurrences_b,
                          "max_abs": _jsonable(k.max_abs), "max_rel": _jsonable(k.max_rel),
                          "exceeds": k.exceeds} for k in rep.keys if k.compared]})
        comp["first_divergence"] = first
        if comp["traces"]:
            detail = ("" if first is None else
                      f"first diverging key: {first['key']} (occurrence {first['occurrence']}, "
                      f"pixel {tuple(first['pixel'])}): {first['reason']}")
            if not judged:
                detail = "float32: shown, not judged (give a trace tolerance to judge it)" + (
                    "; " + detail if detail else "")
            criteria.append(_criterion(f"traces: {s.name} against {ref.name}",
                                       trace_ok or not judged, _jsonable(worst), trtol, detail))
        comparisons.append(comp)

    return {"verdict": "pass" if all(c["ok"] for c in criteria) else "fail",
            "pixels": [list(p) for p in pixels], "phi_mode": phi_mode, "phi_steps": phi_steps,
            "tolerance": tolerance, "trace_tolerance": trace_tolerance,
            "command": list(command or []), "sides": out_sides, "comparisons": comparisons,
            "criteria": criteria}


def format_markdown(report: dict, *, title: str = "Verification report") -> str:
    """``report.md``: the report for people."""
    L = [f"# {title}", ""]
    verdict = report["verdict"]
    met = sum(c["ok"] for c in report["criteria"])
    L.append(f"**Verdict: {'PASS' if verdict == 'pass' else 'FAIL'}** ({met} of "
             f"{len(report['criteria'])} criteria met)")
    L.append("")
    if report.get("command"):
        L += ["Command:", "", "```", "nanobragg " + " ".join(report["command"]), "```", ""]
    L.append("- pixels traced (slow, fast): " + (", ".join(
        f"({s}, {f})" for s, f in report["pixels"]) or "none"))
    L.append(f"- φ mode: {report.get('phi_mode') or 'default'}; φ steps: {report['phi_steps']}")
    L.append("")
    L += ["## Sides", "", "| side | source | device | dtype | φ mode | ran | image sum | job |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in report["sides"]:
        ran = "yes" if s["ran"] else f"✘ {s['reason'] or 'not run'}"
        L.append(f"| {s['name']} | {s['source']} | {s['device'] or '-'} | {s['dtype'] or '-'} | "
                 f"{s['phi_mode'] or '-'} | {ran} | "
                 f"{short_number(s['image']['sum']) if s.get('image') else '-'} | {s['job'] or '-'} |")
    L.append("")
    rows = [(s["name"], p, t) for s in report["sides"] for p, t in s["traces"].items()]
    if rows:
        L += ["### Traces", "", "| side | pixel | TRACE lines | TRACE_PY_PHI lines | final "
              "intensity | missing keys |", "| --- | --- | --- | --- | --- | --- |"]
        for name, p, t in rows:
            L.append(f"| {name} | ({p}) | {t['lines']} | {t['phi_lines']} | "
                     f"{short_number(t['final_intensity'])} | {', '.join(t['missing_keys']) or '-'} |")
        L.append("")
    envs = [(s["name"], s["environment"]) for s in report["sides"] if s["environment"]]
    if envs:
        L += ["### Environment", ""]
        for name, env in envs:
            L.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in env.items() if v))
        L.append("")
    for c in report["comparisons"]:
        L += [f"## {c['b']} against {c['a']}", ""]
        d = c["image"]
        if d:
            where = d.get("where_slow_fast")
            L.append(f"- image: max Δ relative {short_number(d['max_rel'])}, absolute {short_number(d['max_abs'])}"
                     + (f" at (slow {where[0]}, fast {where[1]})" if where else "")
                     + f"; tolerance {short_number(c['image_tolerance'])}; sums {short_number(d.get('sum_a'))} / "
                       f"{short_number(d.get('sum_b'))}")
        for t in c["traces"]:
            L.append(f"- trace ({t['pixel_slow_fast'][0]}, {t['pixel_slow_fast'][1]}): "
                     f"{t['lines']} lines compared, max Δ relative {short_number(t['max_rel'])}, absolute "
                     f"{short_number(t['max_abs'])}" + (f" ({t['worst_key']})" if t['worst_key'] else "")
                     + f"; tolerance {short_number(c['trace_tolerance'])}"
                     + ("" if c["traces_judged"] else " (float32: not judged)"))
        fd = c.get("first_divergence")
        if fd:
            L.append(f"- **first diverging key: `{fd['key']}`** (occurrence {fd['occurrence']}, "
                     f"pixel ({fd['pixel'][0]}, {fd['pixel'][1]})): {fd['reason']}")
        keys = {}
        for t in c["traces"]:
            for k in t["keys"]:
                cur = keys.setdefault(k["key"], dict(k))
                for m in ("max_abs", "max_rel"):
                    if isinstance(k[m], float) and (not isinstance(cur[m], float)
                                                    or k[m] > cur[m]):
                        cur[m] = k[m]
                cur["exceeds"] = cur["exceeds"] or k["exceeds"]
        if keys:
            L += ["", "| key | Δ relative | Δ absolute | |", "| --- | --- | --- | --- |"]
            for k in keys.values():
                L.append(f"| `{k['key']}` | {short_number(k['max_rel'])} | {short_number(k['max_abs'])} | "
                         f"{'✘' if k['exceeds'] else '✔'} |")
        L.append("")
    L += ["## Exit criteria", ""]
    for c in report["criteria"]:
        L.append(f"- {'✔' if c['ok'] else '✘'} {c['name']}: {short_number(c['value'])} "
                 f"(threshold {short_number(c['threshold'])})" + (f" — {c['detail']}" if c["detail"] else ""))
    L.append("")
    return "\n".join(L)


__all__ = ["Side", "EXPECTED_KEYS", "build_report", "format_markdown", "pair_tolerance",
           "trace_stats"]
