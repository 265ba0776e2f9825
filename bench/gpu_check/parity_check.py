"""Section ``parity``: CPU against CUDA in float64, image and per-pixel trace, with
``nanobragg-parity``'s library form (sim_core.parity.run_parity).

Five golden cases, each traced at its reference pixel, and the supervisor command started at
phi = 0 in c-parity mode, traced at its brightest pixel. Bar: the largest difference of the image
over its maximum, and of every trace key over that line's magnitude, at most 1e-10. On the CPU dry
run both sides are the CPU: the code path runs, the comparison itself cannot.
"""

from __future__ import annotations

import re
import time

from .cases import BENCH, GOLDEN, PARITY_CASES, golden_args, shrink, supervisor_phi0_args

BAR = 1e-10
_TIC = re.compile(r"\[phi_tic=\d+\]")


def key_table(rep) -> list[dict]:
    """Per trace key: the largest relative and absolute difference; per-phi keys folded over
    their phi steps (``PHI[*].F_latt``)."""
    out: dict[str, dict] = {}
    for k in rep.keys:
        if not k.compared:
            continue
        name = _TIC.sub("[*]", k.key)
        row = out.setdefault(name, {"key": name, "rel": 0.0, "abs": 0.0, "lines": 0,
                                    "exceeds": False})
        row["rel"] = max(row["rel"], k.max_rel)
        row["abs"] = max(row["abs"], k.max_abs)
        row["lines"] += k.compared
        row["exceeds"] = row["exceeds"] or k.exceeds
    return list(out.values())


def check(label: str, args: list[str], folder, device: str, emit) -> None:
    from sim_core.experiment import local_files
    from sim_core.nanobragg_args import parse_nanobragg_args
    from sim_core.parity import run_parity

    t0 = time.perf_counter()
    parsed = parse_nanobragg_args(args, base_dir=folder, allow_fdump=True)
    rep = run_parity(parsed.config, local_files(folder), rtol=BAR,
                     sides=(("cpu", "float64"), (device, "float64")))
    traces = []
    for (s, f), tr in rep.traces:
        keys = key_table(tr)
        traces.append({"pixel_slow_fast": [s, f], "rel": tr.max_rel, "ok": tr.ok,
                       "worst_key": tr.worst_key.key if tr.worst_key and tr.max_rel else None,
                       "structural_mismatch": tr.structural_mismatch,
                       "first_divergence": tr.first_divergence, "keys": keys})
    S, F = rep.a.image.shape
    judged = device == "cuda"
    emit.item(name=label, sides=[rep.a.label, rep.b.label], shape_slow_fast=[S, F],
              image_rel=rep.image_rel, image_max_abs=rep.image_max_abs,
              image_max=rep.image_max_a, worst_pixel=list(rep.image_worst_pixel),
              sum_rel=rep.sum_rel, traces=traces, bar=BAR,
              cpu_s=rep.a.elapsed_s, other_s=rep.b.elapsed_s,
              elapsed_s=time.perf_counter() - t0,
              ok=rep.ok if judged else (False if not rep.ok else None))


def run(ctx: dict, emit) -> None:
    device = ctx["device"]
    if device != "cuda":
        emit.not_run("CPU against CUDA comparison",
                     "no CUDA device: both sides render on the CPU (the code path runs; the "
                     "figures are CPU against CPU)")
    quick = ctx["quick"]
    for name in PARITY_CASES:
        # --quick: a quarter of the pixels per side, traced at the brightest pixel
        args = shrink(golden_args(name, trace=False), 4) if quick else golden_args(name)
        check(name, args, GOLDEN / name, device, emit)
    # 62 M evaluations a side in float64, with the c-parity scans: shrunk on the CPU
    args = shrink(supervisor_phi0_args(), 24 if quick else (1 if device == "cuda" else 4))
    check("supervisor_full at phi=0, c-parity", args, BENCH, device, emit)
