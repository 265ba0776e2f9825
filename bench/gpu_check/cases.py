"""The command lines the GPU check renders, at full size or shrunk for a CPU dry run.

Everything here is data and argument-list arithmetic (no torch), so the orchestrator can print it.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
BENCH = GOLDEN / "_bench"

#: golden cases for the CPU/CUDA parity: an HKL grid with a matrix, tricubic interpolation with its
#: order-dependent fallback, seeded mosaic domains, the running-product oversample flags, and a
#: divergence x dispersion source list
PARITY_CASES = ("mosflm_matrix", "hkl_interpolate_out_of_range", "mosaic_domains",
                "oversample_flags", "divergence_dispersion")
#: the two timed commands (tests/data/golden/_bench)
BENCH_CASES = ("heavy_mosaic_phi", "supervisor_full")


def bench_args(name: str) -> list[str]:
    return (BENCH / f"{name}.args.txt").read_text().split()


def golden_args(name: str, *, trace: bool = True) -> list[str]:
    """A golden case's arguments with our extra flags, traced at its reference pixel."""
    folder = GOLDEN / name
    meta = json.loads((folder / "meta.json").read_text())
    args = (folder / "args.txt").read_text().split() + list(meta.get("our_extra_args", []))
    if trace:
        args += ["-trace_pixel", *map(str, meta["trace_pixel_slow_fast"])]
    return args


def drop_flags(args: list[str], *flags_with_counts: tuple[str, int]) -> list[str]:
    """``args`` without the given flags (each with how many values it takes)."""
    counts = dict(flags_with_counts)
    out, i = [], 0
    while i < len(args):
        if args[i] in counts:
            i += 1 + counts[args[i]]
            continue
        out.append(args[i])
        i += 1
    return out


def set_flag(args: list[str], flag: str, *values) -> list[str]:
    """``args`` with ``flag`` set to ``values`` (replaced where present, else appended)."""
    out = drop_flags(args, (flag, len(values)))
    return out + [flag, *map(str, values)]


def _value(args: list[str], flag: str, n: int = 1) -> list[str] | None:
    if flag in args:
        i = args.index(flag)
        return args[i + 1:i + 1 + n]
    return None


def shrink(args: list[str], factor: int) -> list[str]:
    """The same detector with ``factor`` times fewer pixels per side and pixels ``factor`` times
    larger: the same solid angle and beam centre (in mm), so the same spots, coarser. One subpixel
    unless the command sets ``-oversample`` (nanoBragg would choose more for the larger pixels)."""
    if factor <= 1:
        return list(args)
    out = list(args) if "-oversample" in args else list(args) + ["-oversample", "1"]
    for flag in ("-detpixels", "-detpixels_x", "-detpixels_y"):
        v = _value(out, flag)
        if v:
            out = set_flag(out, flag, max(8, int(v[0]) // factor))
    pixel = _value(out, "-pixel")
    out = set_flag(out, "-pixel", f"{float(pixel[0] if pixel else 0.1) * factor:.6g}")
    return out


def supervisor_phi0_args() -> list[str]:
    """supervisor_full started at phi = 0 in c-parity mode: the first pass at phi = 0 sees the
    unrotated cell (the C program's carry-over), the scenario the trace tooling was verified on."""
    return set_flag(bench_args("supervisor_full"), "-phi", 0) + ["-phi_mode", "c-parity"]


def service_jobs(quick: bool, device: str) -> list[dict]:
    """Twenty submissions of mixed sizes and both precisions.

    Each: ``label``, ``args`` (nanoBragg flags; files relative to ``base_dir``), ``dtype`` and
    ``compare`` (whether the float image is checked against a CPU render here). On the CPU dry run
    the big ones are shrunk.
    """
    cubic = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2",
             "-distance", "100"]
    #: shrink factors of the mid-sized and of the big (bench) commands
    mid = 8 if quick else (1 if device == "cuda" else 2)
    big = 32 if quick else (1 if device == "cuda" else 4)
    jobs: list[dict] = []

    def add(label, args, dtype, base=None, compare=False):
        jobs.append({"label": label, "args": args, "dtype": dtype,
                     "base_dir": str(base) if base else None, "compare": compare})

    for i, (px, n) in enumerate([(64, 5), (96, 4), (128, 5), (128, 8), (192, 3), (256, 5)]):
        add(f"cubic-{px}-N{n}", cubic + ["-N", str(n), "-detpixels", str(px)],
            "float64" if i % 2 == 0 else "float32", compare=i in (0, 3))
    for i, name in enumerate(("mosflm_matrix", "mosaic_domains", "phi_oscillation",
                              "divergence_dispersion", "detector_thickness", "triclinic_misset")):
        args = drop_flags(golden_args(name, trace=False), ("-floatfile", 1), ("-nonoise", 0))
        if quick:
            args = shrink(args, 4)
        add(name, args, "float64" if i % 3 != 2 else "float32", GOLDEN / name,
            compare=name in ("mosflm_matrix", "mosaic_domains"))
    for i, px in enumerate((384, 512, 768, 1024)):
        add(f"mosaic-{px}", shrink(cubic + ["-N", "6", "-mosaic", "0.3", "-mosaic_domains", "5",
                                            "-mosaic_seed", "5", "-detpixels", str(px),
                                            "-pixel", "0.1"], mid),
            "float32" if i % 2 == 0 else "float64")
    for i, name in enumerate(BENCH_CASES):
        for dtype in ("float32", "float64"):
            add(f"{name}-{dtype}", shrink(bench_args(name), big), dtype, BENCH,
                compare=dtype == "float64" and i == 0)
    return jobs


def series_args(quick: bool) -> list[str]:
    """Image 1 of a 24-image rotation series (with the series flag ``-images``, where it exists)."""
    px = 64 if quick else 256
    return ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-lambda", "1.0",
            "-N", "8", "-mosaic", "0.2", "-mosaic_domains", "3", "-mosaic_seed", "3",
            "-distance", "100", "-detpixels", str(px), "-pixel", f"{25.6 / px:.6g}",
            "-phi", "0", "-osc", "0.5", "-phisteps", "2"]


def verification_job(quick: bool, device: str) -> dict:
    """The supervisor scenario as one verification: the supervisor command in c-parity mode, pixel
    (685, 1039) and the brightest pixel, CPU float64 against the device in float64 (on the CPU dry
    run: against CPU float32, in a region of the detector around the pixel)."""
    args = bench_args("supervisor_full")
    if quick:
        args = args + ["-roi", "1035", "1105", "680", "1010"]
    sides = [{"device": "cpu", "dtype": "float64"},
             {"device": device, "dtype": "float64" if device == "cuda" else "float32"}]
    return {"label": "supervisor verification", "args": args, "base_dir": str(BENCH),
            "sides": sides, "pixels": [[685, 1039]], "brightest": 1, "phi_mode": "c-parity",
            "tolerance": 1e-10 if device == "cuda" else None}
