"""``nanobragg-parity``: render one nanoBragg command twice and compare the two renders.

    nanobragg-parity -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 256
    nanobragg-parity --compare dtypes -mat A.mat -hkl P1.hkl -trace_pixel 65 65
    nanobragg-parity --dir tests/data/golden/mosflm_matrix --json -- $(cat args.txt)

Two comparisons:

``--compare devices`` (the default)
    the command on the CPU and on CUDA, both in ``--dtype`` (default float64). Without a CUDA device
    the tool says so and exits 3. Default tolerance 1e-10 in float64 (1e-4 in float32).
``--compare dtypes``
    float64 against float32 on one device (``--device``, default cpu): how far float32 drifts from
    the reference precision; it needs no GPU. Default tolerance 1e-3 (the float32 image total must
    be within 1e-3 of float64's).

Image: both renders are kept in their own precision (not rounded to the float32 that ``simulate``
hands out, which would turn sub-ulp differences into whole float32 ulps); the figure is
``max|a - b| / max|a|`` over the image, ``a`` being the reference (cpu, resp. float64) render.

Trace: the pixels of ``-trace_pixel`` (all of them), or else the brightest pixel of the reference
render, are traced on both sides and compared with :func:`sim_core.trace_diff.compare` (per line:
difference relative to the line's largest magnitude). ``--trace-rtol`` defaults to ``--rtol``.
When a side renders in float32 the traces are shown but do not decide the exit status unless
``--trace-rtol`` is given: a per-evaluation value near a zero of the lattice factor (``F_latt``)
has no useful relative precision in float32 (relative differences of several percent on the golden
cases, while the images agree to 1e-4).

Both renders use the same config, with any clock-chosen seed fixed once beforehand.
Exit status: 0 when image and traces are within tolerance, 1 when not, 2 on usage, argument or
input errors, 3 when the comparison needs a CUDA device and there is none.
Our own options start with ``--``; every other token is a nanoBragg flag (``--`` ends ours).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ArgumentError, DeviceError, SimCoreError
from .devices import resolve_device

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE, EXIT_NO_CUDA = 0, 1, 2, 3

#: our options and how many values each takes
_OPTIONS = {"--compare": 1, "--device": 1, "--dtype": 1, "--rtol": 1, "--trace-rtol": 1,
            "--dir": 1, "--save": 1, "--json": 0, "--no-trace": 0, "--help": 0, "-h": 0}


@dataclass
class Side:
    label: str  # "cpu-float64"
    device: str
    dtype: str
    image: np.ndarray  # in the render's own precision, (slow, fast)
    traces: list  # PixelTrace
    elapsed_s: float


@dataclass
class ParityReport:
    mode: str
    a: Side
    b: Side
    rtol: float
    trace_rtol: float
    image_max_abs: float
    image_max_a: float
    image_rel: float
    image_worst_pixel: tuple[int, int]
    sum_a: float
    sum_b: float
    traces: list = field(default_factory=list)  # [(pixel, DiffReport)]
    #: False: the traces are reported but do not decide ok (float32 without --trace-rtol)
    trace_judged: bool = True

    @property
    def sum_rel(self) -> float:
        return abs(self.sum_a - self.sum_b) / abs(self.sum_a) if self.sum_a else (
            0.0 if self.sum_b == 0 else math.inf)

    @property
    def image_ok(self) -> bool:
        return self.image_rel <= self.rtol

    @property
    def trace_rel(self) -> float:
        return max((r.max_rel for _, r in self.traces), default=0.0)

    @property
    def traces_ok(self) -> bool:
        return not self.trace_judged or all(r.ok for _, r in self.traces)

    @property
    def ok(self) -> bool:
        return self.image_ok and self.traces_ok

    def to_dict(self) -> dict:
        from .trace_diff import _jsonable
        return {
            "mode": self.mode, "ok": self.ok,
            "exit_code": EXIT_OK if self.ok else EXIT_DIFFERENT,
            "a": {"label": self.a.label, "device": self.a.device, "dtype": self.a.dtype,
                  "elapsed_s": self.a.elapsed_s},
            "b": {"label": self.b.label, "device": self.b.device, "dtype": self.b.dtype,
                  "elapsed_s": self.b.elapsed_s},
            "shape_slow_fast": list(self.a.image.shape),
            "rtol": self.rtol, "trace_rtol": self.trace_rtol, "trace_judged": self.trace_judged,
            "image": {"max_abs": _jsonable(self.image_max_abs),
                      "max_a": _jsonable(self.image_max_a),
                      "rel": _jsonable(self.image_rel),
                      "worst_pixel_slow_fast": list(self.image_worst_pixel),
                      "sum_a": self.sum_a, "sum_b": self.sum_b,
                      "sum_rel": _jsonable(self.sum_rel), "ok": self.image_ok},
            "traces": [{"pixel_slow_fast": list(p), "rel": _jsonable(r.max_rel),
                        "worst_key": r.worst_key.key if r.worst_key else None,
                        "ok": r.ok, "first_divergence": r.first_divergence,
                        "lines": len(r.pairs)} for p, r in self.traces],
            "trace_rel": _jsonable(self.trace_rel),
        }


def render(config, files, device: str, dtype: str):
    """Render ``config`` and trace its ``run.trace_pixels``; the image stays in ``dtype``.

    Same steps as :func:`sim_core.simulate.simulate` (experiment, engine, render, traces with the
    render's sequence state) without the final conversion of the image to float32.
    """
    import torch

    from .experiment import build_experiment
    from .simulate import make_engine, trace_with

    t0 = time.perf_counter()
    exp = build_experiment(config, files)
    engine = make_engine(exp, device, dtype)
    image_t, stats = engine.render()
    traces = trace_with(engine, config.run.trace_pixels, stats.sequence)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    image = image_t.detach().cpu().numpy()
    return image, traces, time.perf_counter() - t0, engine, stats


def _side(config, files, device, dtype, pixels):
    cfg = config.model_copy(deep=True)
    cfg.run.trace_pixels = [tuple(p) for p in pixels or []]
    image, traces, elapsed, engine, stats = render(cfg, files, device, dtype)
    return Side(f"{device}-{dtype}", device, dtype, image, traces, elapsed), engine, stats


def sides_for(mode: str = "devices", device: str = "cpu", dtype: str = "float64"):
    """The two (device, dtype) renders of a comparison mode; DeviceError when CUDA is missing."""
    import torch

    if mode == "devices":
        if not torch.cuda.is_available():
            raise DeviceError("no CUDA device is available here (torch.cuda.is_available() is "
                              "False): a CPU/CUDA comparison needs one; --compare dtypes compares "
                              "float32 against float64 without a GPU")
        return ("cpu", dtype), ("cuda", dtype)
    if mode == "dtypes":
        device = resolve_device(device)
        return (device, "float64"), (device, "float32")
    raise ValueError(f"unknown comparison {mode!r} (devices or dtypes)")


def default_rtol(a: tuple[str, str], b: tuple[str, str]) -> float:
    """1e-10 for two float64 renders, 1e-3 for float64 against float32, 1e-4 for two float32."""
    if a[1] == b[1] == "float64":
        return 1e-10
    return 1e-3 if a[1] != b[1] else 1e-4


def run_parity(config, files, *, mode: str = "devices", device: str = "cpu",
               dtype: str = "float64", rtol: float | None = None,
               trace_rtol: float | None = None, trace: bool = True,
               sides: tuple[tuple[str, str], tuple[str, str]] | None = None) -> ParityReport:
    """Render ``config`` twice (see the module doc) and compare the renders.

    ``sides``: the two (device, dtype) renders, overriding ``mode``/``device``/``dtype``
    (``(("cpu", "float64"), ("cuda", "float64"))`` is ``mode="devices"``). The first is the
    reference. Raises :class:`~sim_core.errors.DeviceError` when a side needs a missing CUDA device.
    """
    from .simulate import trace_with, with_seeds
    from .trace_diff import compare, parse_trace

    if sides is None:
        sides = sides_for(mode, device, dtype)
    else:
        mode = "custom"
    rtol = default_rtol(*sides) if rtol is None else rtol
    # float32 values near a zero of the lattice factor have no useful relative precision: a float32
    # trace is judged only on request
    trace_judged = trace_rtol is not None or all(dt == "float64" for _, dt in sides)
    trace_rtol = rtol if trace_rtol is None else trace_rtol

    config = with_seeds(config)
    pixels = list(config.run.trace_pixels) if trace else []
    a, eng_a, st_a = _side(config, files, *sides[0], pixels)
    if trace and not pixels:  # trace the brightest rendered pixel of the reference render
        rendered = np.asarray(eng_a.exp.render_pixels())
        if rendered.size:
            flat = int(rendered[np.argmax(a.image.reshape(-1)[rendered])])
            pixels = [divmod(flat, a.image.shape[1])]
            a.traces = trace_with(eng_a, pixels, st_a.sequence)
    b, _, _ = _side(config, files, *sides[1], pixels)

    ia = a.image.astype(np.float64)
    ib = b.image.astype(np.float64)
    diff = np.abs(ia - ib)
    flat = int(np.argmax(diff)) if diff.size else 0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_a = float(np.abs(ia).max()) if ia.size else 0.0
    rel = max_abs / max_a if max_a > 0 else (0.0 if max_abs == 0 else math.inf)
    traces = []
    for ta, tb in zip(a.traces, b.traces):
        rep = compare(parse_trace(ta.text), parse_trace(tb.text), trace_rtol,
                      name_a=a.label, name_b=b.label)
        traces.append(((ta.slow, ta.fast), rep))
    return ParityReport(mode=mode, a=a, b=b, rtol=rtol, trace_rtol=trace_rtol,
                        trace_judged=trace_judged,
                        image_max_abs=max_abs, image_max_a=max_a, image_rel=rel,
                        image_worst_pixel=divmod(flat, ia.shape[1]) if ia.size else (0, 0),
                        sum_a=float(ia.sum()), sum_b=float(ib.sum()), traces=traces)


def format_report(rep: ParityReport) -> str:
    S, F = rep.a.image.shape
    lines = [
        f"nanobragg-parity: {rep.a.label} (A) against {rep.b.label} (B), {F}x{S} pixels",
        f"renders: A {rep.a.elapsed_s:.3f} s, B {rep.b.elapsed_s:.3f} s",
        f"image: max|A-B| = {rep.image_max_abs:.3g}, max|A| = {rep.image_max_a:.6g}, "
        f"relative {rep.image_rel:.3g} (tolerance {rep.rtol:g}) at pixel (slow "
        f"{rep.image_worst_pixel[0]}, fast {rep.image_worst_pixel[1]}): "
        + ("ok" if rep.image_ok else "EXCEEDS"),
        f"image sum: A {rep.sum_a:.12g}, B {rep.sum_b:.12g}, relative {rep.sum_rel:.3g}",
    ]
    for (s, f), r in rep.traces:
        worst = r.worst_key
        line = (f"trace pixel (slow {s}, fast {f}): {len(r.pairs)} lines, largest relative "
                f"difference {r.max_rel:.3g}" + (f" ({worst.key})" if worst and r.max_rel else "")
                + f" (tolerance {rep.trace_rtol:g}): " + ("ok" if r.ok else "EXCEEDS")
                + ("" if rep.trace_judged else " (float32: shown, not judged; --trace-rtol "
                   "judges it)"))
        lines.append(line)
        fd = r.first_divergence
        if fd:
            lines.append(f"  first divergent key: {fd['key']} (occurrence {fd['occurrence']}): "
                         f"{fd['reason']}")
    if not rep.traces:
        lines.append("trace: none")
    lines.append("PASS" if rep.ok else "FAIL")
    return "\n".join(lines) + "\n"


def save(rep: ParityReport, directory: str | Path) -> list[Path]:
    """Write both images (raw float64, little-endian) and traces into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for side in (rep.a, rep.b):
        p = d / f"image_{side.label}.f64.bin"
        side.image.astype("<f8").tofile(p)
        out.append(p)
        for t in side.traces:
            p = d / f"trace_{side.label}_{t.slow}_{t.fast}.log"
            p.write_text(t.text)
            out.append(p)
    return out


# ---- command line -------------------------------------------------------------------------------

USAGE = "nanobragg-parity [--compare devices|dtypes] [options] [--] <nanoBragg flags>"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nanobragg-parity", usage=USAGE, add_help=False,
        description="Render a nanoBragg command on CPU and CUDA (or in float64 and float32) and "
                    "compare image and per-pixel traces. Options of ours start with --; every "
                    "other token is a nanoBragg flag (-trace_pixel S F picks the traced pixels; "
                    "without it the brightest pixel is traced).")
    p.add_argument("--compare", choices=("devices", "dtypes"), default="devices",
                   help="devices: CPU against CUDA in --dtype (default); dtypes: float64 against "
                        "float32 on --device")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="device of --compare dtypes (default cpu)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of --compare devices (default float64)")
    p.add_argument("--rtol", type=float, default=None,
                   help="tolerance of max|A-B|/max|A| over the image (default 1e-10 for devices "
                        "in float64, 1e-4 in float32, 1e-3 for dtypes)")
    p.add_argument("--trace-rtol", type=float, default=None,
                   help="tolerance of the trace lines (default: --rtol; float32 traces are only "
                        "judged when this is given)")
    p.add_argument("--dir", default=".", help="folder that the command's input files are "
                   "relative to (default: the current folder)")
    p.add_argument("--save", metavar="DIR", help="write both images and traces into DIR")
    p.add_argument("--no-trace", action="store_true", help="compare the images only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    return p


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our options, nanoBragg flags): ours start with --; ``--`` ends them."""
    ours, theirs = [], []
    i = 0
    while i < len(argv):
        t = argv[i]
        if t == "--":
            theirs.extend(argv[i + 1:])
            break
        name = t.split("=", 1)[0]
        if name in _OPTIONS:
            n = 0 if "=" in t else _OPTIONS[name]
            ours.extend(argv[i:i + 1 + n])
            i += 1 + n
            continue
        if t.startswith("--"):
            raise ArgumentError(f"unknown option {t} (ours: "
                                + " ".join(k for k in _OPTIONS if k.startswith("--")) + ")",
                                flag=t)
        theirs.append(t)
        i += 1
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    from .experiment import local_files
    from .nanobragg_args import parse_nanobragg_args

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        ours, theirs = split_argv(argv)
    except ArgumentError as exc:
        print(f"nanobragg-parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        opts = parser.parse_args(ours)
    except SystemExit as exc:  # argparse's own usage errors
        return EXIT_USAGE if exc.code else EXIT_OK
    if opts.help:
        parser.print_help()
        return EXIT_OK
    if not theirs:
        print(f"usage: {USAGE}\nnanobragg-parity: error: no nanoBragg flags given",
              file=sys.stderr)
        return EXIT_USAGE
    for name in ("rtol", "trace_rtol"):
        v = getattr(opts, name)
        if v is not None and not v >= 0:
            print(f"nanobragg-parity: error: --{name.replace('_', '-')} must be >= 0",
                  file=sys.stderr)
            return EXIT_USAGE
    try:
        parsed = parse_nanobragg_args(theirs, base_dir=opts.dir, allow_fdump=True)
        for w in parsed.warnings:
            print(f"WARNING: {w}", file=sys.stderr)
        if parsed.trace_file:
            print("note: -trace_file is ignored here (use --save DIR)", file=sys.stderr)
        rep = run_parity(parsed.config, local_files(opts.dir), mode=opts.compare,
                         device=opts.device, dtype=opts.dtype, rtol=opts.rtol,
                         trace_rtol=opts.trace_rtol, trace=not opts.no_trace)
    except DeviceError as exc:
        print(f"nanobragg-parity: {exc}", file=sys.stderr)
        return EXIT_NO_CUDA
    except SimCoreError as exc:
        print(f"nanobragg-parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if opts.save:
        for p in save(rep, opts.save):
            print(f"wrote {p}", file=sys.stderr)
    if opts.json:
        sys.stdout.write(json.dumps(rep.to_dict(), indent=1) + "\n")
    else:
        sys.stdout.write(format_report(rep))
    return EXIT_OK if rep.ok else EXIT_DIFFERENT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["run_parity", "sides_for", "default_rtol", "render", "ParityReport", "Side",
           "format_report", "save", "split_argv", "main"]
