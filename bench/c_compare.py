#!/usr/bin/env python3
"""Run one nanoBragg command line through the C program and through our ``nanobragg``; compare.

    NB_C_BIN=/path/to/nanoBragg python bench/c_compare.py [options] -- -cell 60 60 60 90 90 90 \\
        -default_F 100 -lambda 1 -N 6 -distance 80 -detpixels 128 -floatfile float.bin -nonoise

Each program runs in its own temporary copy of ``--dir`` (the folder holding the input files the
command line names; default: an empty folder), so neither sees the other's outputs (``Fdump.bin``!).
The float images (raw float32, slow index major) are read back; their shape comes from the C program's
``(FxS pixels)`` line, or from ``-detpixels``/``-detpixels_x/_y`` when that line is missing.

Printed: Pearson correlation, max |diff| / max |C|, total relative difference, the golden-data verdict

* float64 (default): corr >= 0.99999, max |diff| <= 1e-4 * max |C|, |sum ours / sum C - 1| <= 1e-4
* float32 (``--ours-args "-dtype float32"``): corr >= 0.9999, |sum ratio - 1| <= 1e-3

and, with ``--smv``, a comparison of the SMV int (``-intfile``) and noise (``-noisefile``) images:
header keys and values, and pixels (exactly equal, or off by one count in a few pixels, for the int
image; exactly equal for the noise image).

This script builds nothing: point ``NB_C_BIN`` (or ``--c-bin``) at a C nanoBragg you built yourself,
outside the repository. Run it with ``OMP_NUM_THREADS=1`` (the default here, ``--threads``) whenever a
case depends on the C program's loop order (interpolation leaving the HKL grid, ``-phi_mode c-parity``).

Exit status: 0 pass, 1 fail (images differ), 2 error (a program failed or printed no image).
``compare()`` is the same thing as a function, for ``bench/fuzz_parity.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

#: golden-data bars
BARS = {
    "float64": {"corr": 0.99999, "max_rel": 1e-4, "total": 1e-4},
    "float32": {"corr": 0.9999, "max_rel": None, "total": 1e-3},
}


# --------------------------------------------------------------------------------------------------
# the C program's view of a command line (substring flag matching, last one wins)
# --------------------------------------------------------------------------------------------------

def _c_file_name(args: list[str], subs: tuple[str, ...], default: str) -> str:
    name = default
    for i, a in enumerate(args[:-1]):
        if a.startswith("-") and any(s in a for s in subs):
            name = args[i + 1]
    return name


def output_names(args: list[str]) -> dict[str, str]:
    """Output file names as the C program picks them (its defaults where a flag is missing)."""
    return {
        "float": _c_file_name(args, ("-floatfile", "-floatimage"), "floatimage.bin"),
        "int": _c_file_name(args, ("-intfile", "-intimage"), "intimage.img"),
        "noise": _c_file_name(args, ("-noisefile", "-noiseimage"), "noiseimage.img"),
        "pgm": _c_file_name(args, ("-pgmfile", "-pgmimage"), "image.pgm"),
    }


def c_writes_noise(args: list[str]) -> bool:
    on = True
    for a in args:
        if not a.startswith("-"):
            continue
        if "-noisefile" in a or "-noiseimage" in a:
            on = True
        if "-nonoise" in a:
            on = False
    return on


def _shape_from_args(args: list[str]) -> tuple[int, int] | None:
    f = s = None
    for i, a in enumerate(args[:-1]):
        if a == "-detpixels":
            f = s = int(float(args[i + 1]))
        elif a in ("-detpixels_x", "-detpixels_f"):
            f = int(float(args[i + 1]))
        elif a in ("-detpixels_y", "-detpixels_s"):
            s = int(float(args[i + 1]))
    if f and s:
        return s, f
    return None


_PIXELS_LINE = re.compile(r"\((\d+)x(\d+) pixels\)")


def shape_from_c_stdout(text: str) -> tuple[int, int] | None:
    m = _PIXELS_LINE.search(text)
    if not m:
        return None
    fpix, spix = int(m.group(1)), int(m.group(2))
    return spix, fpix


# --------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------

def read_float_image(path: Path, shape: tuple[int, int]) -> np.ndarray:
    data = np.fromfile(path, dtype="<f4")
    n = shape[0] * shape[1]
    if data.size != n:
        raise ValueError(f"{path.name}: {data.size} floats, expected {shape[0]}x{shape[1]} = {n}")
    return data.reshape(shape).astype(np.float64)


def read_smv(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """A minimal SMV reader (independent of sim_core): header pairs and uint16 pixels.

    The pixels are taken from where the file really has them: after ``HEADER_BYTES``, or right
    after the header's closing ``}\\f`` when the text overflows that size (the C program writes an
    overlong header without changing ``HEADER_BYTES=512``). ``_header_text_bytes`` and
    ``_pixel_offset`` in the returned pairs record the layout.
    """
    raw = path.read_bytes()
    close = raw.find(b"}", 0, 4096)
    text = raw[:close if close >= 0 else 512].decode("latin-1")
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().lstrip("{").strip()
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        pairs[k.strip()] = v.strip().rstrip(";")
    hb = int(float(pairs.get("HEADER_BYTES", 512)))
    end = close + 2 if close >= 0 else hb
    offset = max(hb, end)
    order = pairs.get("BYTE_ORDER", "little_endian")
    dt = "<u2" if order.startswith("little") else ">u2"
    w, h = int(pairs.get("SIZE1", 0)), int(pairs.get("SIZE2", 0))
    pix = np.frombuffer(raw[offset:offset + 2 * w * h], dtype=dt)
    if pix.size != w * h:
        raise ValueError(f"{path.name}: {pix.size} pixels, header says {w}x{h}")
    pairs["_header_text_bytes"] = str(end)
    pairs["_pixel_offset"] = str(offset)
    return pairs, pix.reshape(h, w).astype(np.int64)


def float_metrics(c: np.ndarray, ours: np.ndarray) -> dict:
    out: dict = {}
    nan_c, nan_o = int(np.isnan(c).sum()), int(np.isnan(ours).sum())
    inf_c, inf_o = int(np.isinf(c).sum()), int(np.isinf(ours).sum())
    out.update(nan_c=nan_c, nan_ours=nan_o, inf_c=inf_c, inf_ours=inf_o)
    good = np.isfinite(c) & np.isfinite(ours)
    same_bad = bool(np.array_equal(np.isnan(c), np.isnan(ours))
                    and np.array_equal(np.where(np.isinf(c), c, 0), np.where(np.isinf(ours), ours, 0)))
    out["nonfinite_agree"] = same_bad
    cg, og = c[good], ours[good]
    sc, so = float(cg.sum()), float(og.sum())
    mx = float(np.abs(cg).max()) if cg.size else 0.0
    d = np.abs(cg - og)
    maxdiff = float(d.max()) if d.size else 0.0
    out["max_c"] = mx
    out["max_ours"] = float(np.abs(og).max()) if og.size else 0.0
    out["sum_c"], out["sum_ours"] = sc, so
    out["max_abs_diff"] = maxdiff
    out["max_rel"] = maxdiff / mx if mx > 0 else (0.0 if maxdiff == 0 else math.inf)
    if sc != 0:
        out["total_rel"] = abs(so / sc - 1.0)
    else:
        out["total_rel"] = 0.0 if so == 0 else math.inf
    sdc, sdo = float(cg.std()) if cg.size else 0.0, float(og.std()) if og.size else 0.0
    if sdc > 0 and sdo > 0:
        out["corr"] = float(np.corrcoef(cg, og)[0, 1])
    else:
        # constant images: correlation is undefined; call it perfect when the values agree
        out["corr"] = 1.0 if maxdiff <= 1e-6 * max(mx, 1e-300) or maxdiff == 0 else 0.0
    if d.size and maxdiff > 0:
        idx = np.unravel_index(int(np.argmax(np.where(good, np.abs(c - ours), -1))), c.shape)
        out["worst_pixel_slow_fast"] = [int(idx[0]), int(idx[1])]
        out["worst_c"], out["worst_ours"] = float(c[idx]), float(ours[idx])
    out["pixels_differing_1e-6rel"] = int((d > 1e-6 * max(mx, 1e-300)).sum())
    return out


def float_verdict(m: dict, dtype: str) -> tuple[bool, list[str]]:
    bar = BARS[dtype]
    why = []
    if not m["nonfinite_agree"]:
        why.append(f"non-finite pixels differ (C nan {m['nan_c']} inf {m['inf_c']}, "
                   f"ours nan {m['nan_ours']} inf {m['inf_ours']})")
    if not (m["corr"] >= bar["corr"]):
        why.append(f"corr {m['corr']:.7f} < {bar['corr']}")
    if bar["max_rel"] is not None and not (m["max_rel"] <= bar["max_rel"]):
        why.append(f"max|diff|/max {m['max_rel']:.3g} > {bar['max_rel']}")
    if not (m["total_rel"] <= bar["total"]):
        why.append(f"total rel diff {m['total_rel']:.3g} > {bar['total']}")
    return not why, why


def _num_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        pa = [float(x) for x in a.split(",")]
        pb = [float(x) for x in b.split(",")]
    except ValueError:
        return False
    # %g-printed values: rounding noise around zero (1e-16 m) or in the 6th digit is not a
    # difference worth failing on (the text differs, the geometry does not)
    return len(pa) == len(pb) and all(
        x == y or (math.isnan(x) and math.isnan(y))
        or abs(x - y) <= 1e-9 + 2e-6 * max(abs(x), abs(y)) for x, y in zip(pa, pb))


def _pixel_diff(pc, po, out: dict):
    """Absolute pixel differences of two images, with their counts recorded in ``out``."""
    d = np.abs(pc - po)
    out["pixels"] = int(d.size)
    out["pixels_differing"] = int((d > 0).sum())
    out["pixels_off_by_more_than_1"] = int((d > 1).sum())
    out["max_pixel_diff"] = int(d.max()) if d.size else 0
    return d


def smv_metrics(c_path: Path, o_path: Path, kind: str, dtype: str = "float64") -> dict:
    """Header and pixels of two SMV images. In float32 the pixels may differ by a few counts where
    the float images differ in their last bits: only the header decides there."""
    out: dict = {"kind": kind}
    if not c_path.exists() or not o_path.exists():
        out["missing"] = [str(p.name) + (" (C)" if p is c_path else " (ours)")
                          for p in (c_path, o_path) if not p.exists()]
        out["pass"] = not c_path.exists() and not o_path.exists()
        return out
    hc, pc = read_smv(c_path)
    ho, po = read_smv(o_path)
    hdiff = {}
    layout = {}
    for k in sorted(set(hc) | set(ho)):
        if k.startswith("_") or k == "HEADER_BYTES":
            if hc.get(k) != ho.get(k):
                layout[k] = [hc.get(k), ho.get(k)]
            continue
        if k not in hc or k not in ho or not _num_equal(hc[k], ho[k]):
            hdiff[k] = [hc.get(k), ho.get(k)]
    out["header_diff"] = hdiff
    # where the pixels start (C: 512, or later when its header text overflows 512 bytes)
    out["layout_diff"] = layout
    if pc.shape != po.shape:
        out["shape"] = [list(pc.shape), list(po.shape)]
        out["pass"] = False
        return out
    d = _pixel_diff(pc, po, out)
    out["sum_c"], out["sum_ours"] = int(pc.sum()), int(po.sum())
    if kind == "int":
        ok_pix = out["pixels_off_by_more_than_1"] == 0 and out["pixels_differing"] <= max(
            1, int(1e-3 * d.size))
    else:
        ok_pix = out["pixels_differing"] <= max(0, int(1e-3 * d.size))
    if dtype == "float32":
        ok_pix = True
    out["pass"] = (not hdiff) and ok_pix
    return out


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------

def default_ours_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "nanobragg"
    if exe.exists():
        return [str(exe)]
    w = shutil.which("nanobragg")
    if w:
        return [w]
    return [sys.executable, "-m", "sim_core"]


def _copy_inputs(src: Path | None, dst: Path):
    if src is None:
        return
    for p in src.iterdir():
        if p.is_dir():
            shutil.copytree(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", exc.stdout or b"", exc.stderr or b""
    return {"rc": rc, "stdout": out.decode("latin-1", "replace"),
            "stderr": err.decode("latin-1", "replace"), "seconds": time.perf_counter() - t0}


def compare(args: list[str], *, folder: str | Path | None = None, c_bin: str | None = None,
            ours_args: list[str] | None = None, ours_cmd: list[str] | None = None,
            smv: bool = False, threads: int | None = 1, timeout: float = 600.0,
            keep: str | Path | None = None, dtype: str | None = None) -> dict:
    """Run ``args`` through both programs and compare. Returns a JSON-able dict with ``status``
    ``pass``/``fail``/``c_error``/``ours_error``/``both_error``."""
    c_bin = c_bin or os.environ.get("NB_C_BIN")
    if not c_bin:
        raise SystemExit("c_compare: set NB_C_BIN or pass --c-bin (a C nanoBragg built outside the repo)")
    ours_args = list(ours_args or [])
    ours_cmd = list(ours_cmd or default_ours_cmd())
    if dtype is None:
        dtype = "float64"
        for i, a in enumerate(ours_args[:-1]):
            if a == "-dtype":
                dtype = ours_args[i + 1]
    folder = Path(folder) if folder else None
    names = output_names(args)
    res: dict = {"args": list(args), "ours_args": ours_args, "dtype": dtype,
                 "command": " ".join(shlex.quote(a) for a in args)}
    with tempfile.TemporaryDirectory(prefix="c_compare_") as tmp:
        tmp = Path(tmp)
        cdir, odir = tmp / "c", tmp / "ours"
        cdir.mkdir()
        odir.mkdir()
        _copy_inputs(folder, cdir)
        _copy_inputs(folder, odir)
        env_c = dict(os.environ)
        if threads:
            env_c["OMP_NUM_THREADS"] = str(threads)
        env_o = dict(os.environ)
        rc = _run([c_bin] + list(args), cdir, env_c, timeout)
        # our flags go first: appended, they would be the tokens that -misset_seed (last) reads as
        # misset angles in our parser, tokens the C program never sees
        ro = _run(ours_cmd + ours_args + list(args), odir, env_o, timeout)
        res["c_seconds"], res["ours_seconds"] = rc["seconds"], ro["seconds"]
        res["c_rc"], res["ours_rc"] = rc["rc"], ro["rc"]
        shape = shape_from_c_stdout(rc["stdout"]) or _shape_from_args(args)
        res["shape_slow_fast"] = list(shape) if shape else None
        c_float, o_float = cdir / names["float"], odir / names["float"]
        c_ok = rc["rc"] == 0 and c_float.exists() and shape is not None
        # ours may fail after writing the float image (e.g. on an SMV header): compare it anyway
        o_ok = o_float.exists() and ro["rc"] != "timeout"
        ours_failed = ro["rc"] != 0
        res["c_stdout_tail"] = rc["stdout"][-1500:]
        res["ours_stderr_tail"] = ro["stderr"][-1500:]
        res["ours_stdout_tail"] = ro["stdout"][-800:]
        if keep:
            kp = Path(keep)
            if kp.exists():
                shutil.rmtree(kp)
            shutil.copytree(tmp, kp)
            (kp / "c" / "_stdout.log").write_text(rc["stdout"] + rc["stderr"])
            (kp / "ours" / "_stdout.log").write_text(ro["stdout"] + ro["stderr"])
        if not c_ok and not o_ok:
            res["status"] = "both_error"
            return res
        if not c_ok:
            res["status"] = "c_error"
            return res
        if not o_ok:
            res["status"] = "ours_error"
            return res
        try:
            c_img = read_float_image(c_float, shape)
            o_img = read_float_image(o_float, shape)
        except ValueError as exc:
            res["status"] = "fail"
            res["why"] = [str(exc)]
            return res
        m = float_metrics(c_img, o_img)
        ok, why = float_verdict(m, dtype)
        float_ok = ok
        res["float"] = m
        res["why"] = why
        if smv:
            res["int"] = smv_metrics(cdir / names["int"], odir / names["int"], "int", dtype)
            if c_writes_noise(args):
                res["noise"] = smv_metrics(cdir / names["noise"], odir / names["noise"], "noise",
                                           dtype)
            if c_writes_pgm(args):
                res["pgm"] = pgm_metrics(cdir / names["pgm"], odir / names["pgm"], dtype)
            for k in ("int", "noise", "pgm"):
                if k in res and res[k].get("layout_diff"):
                    res.setdefault("notes", []).append(f"{k} file layout differs: "
                                                       + _smv_why({**res[k], "header_diff": {},
                                                                   "pixels_differing": 0}))
            for k in ("int", "noise", "pgm"):
                if k in res and not res[k]["pass"]:
                    ok = False
                    why.append(f"{k} image differs: " + _smv_why(res[k]))
        res["status"] = "pass" if ok else "fail"
        if ours_failed:
            tail = ro["stderr"].strip().splitlines()
            res["ours_error_after_float"] = tail[-1] if tail else f"rc {ro['rc']}"
            why.append(f"ours exited with rc {ro['rc']}: {res['ours_error_after_float']}")
            if float_ok:
                # the float image agrees: the failure is the error (and the files it did not write)
                res["status"] = "ours_error"
    return res


def read_pgm(path: Path) -> tuple[list[str], np.ndarray]:
    """nanoBragg's PGM: 'P5', 'F S', '# pixels scaled by X', '255', then F*S bytes."""
    raw = path.read_bytes()
    lines, pos = [], 0
    for _ in range(4):
        end = raw.index(b"\n", pos)
        lines.append(raw[pos:end].decode("latin-1"))
        pos = end + 1
    f, s = (int(x) for x in lines[1].split())
    return lines, np.frombuffer(raw[pos:pos + f * s], dtype=np.uint8).reshape(s, f).astype(np.int64)


def pgm_metrics(c_path: Path, o_path: Path, dtype: str = "float64") -> dict:
    out: dict = {"kind": "pgm"}
    if not c_path.exists() or not o_path.exists():
        out["missing"] = [p.name + (" (C)" if p is c_path else " (ours)")
                          for p in (c_path, o_path) if not p.exists()]
        out["pass"] = not c_path.exists() and not o_path.exists()
        return out
    hc, pc = read_pgm(c_path)
    ho, po = read_pgm(o_path)
    hdiff = {}
    for i, (a, b) in enumerate(zip(hc, ho)):
        if a != b:
            if i == 2:  # the scale (from the image's rms deviation): compare as numbers
                try:
                    x, y = float(a.split()[-1]), float(b.split()[-1])
                    tol = 1e-3 if dtype == "float32" else 0.0
                    if x == y or abs(x - y) <= tol * max(abs(x), abs(y)):
                        continue
                except ValueError:
                    pass
            hdiff[f"line{i + 1}"] = [a, b]
    out["header_diff"] = hdiff
    out["layout_diff"] = {}
    if pc.shape != po.shape:
        out["shape"] = [list(pc.shape), list(po.shape)]
        out["pass"] = False
        return out
    d = _pixel_diff(pc, po, out)
    ok_pix = dtype == "float32" or (out["pixels_off_by_more_than_1"] == 0
                                     and out["pixels_differing"] <= max(1, int(1e-3 * d.size)))
    out["pass"] = not hdiff and ok_pix
    return out


def c_writes_pgm(args: list[str]) -> bool:
    on = True
    for a in args:
        if not a.startswith("-"):
            continue
        if "-pgmfile" in a or "-pgmimage" in a or "-pgmscale" in a:
            on = True
        if "-nopgm" in a:
            on = False
    return on


def _smv_why(s: dict) -> str:
    if "missing" in s:
        return "missing " + ", ".join(s["missing"])
    if "shape" in s:
        return f"shape {s['shape']}"
    parts = []
    if s.get("layout_diff"):
        parts.append("file layout " + "; ".join(f"{k.strip('_')}: C {v[0]} ours {v[1]}"
                                                for k, v in s["layout_diff"].items()))
    if s["header_diff"]:
        parts.append("header " + "; ".join(f"{k}: C {v[0]} ours {v[1]}"
                                           for k, v in list(s["header_diff"].items())[:6]))
    if s["pixels_differing"]:
        parts.append(f"{s['pixels_differing']}/{s['pixels']} pixels differ "
                     f"({s['pixels_off_by_more_than_1']} by >1, max {s['max_pixel_diff']})")
    return ", ".join(parts) or "?"


def format_result(r: dict) -> str:
    lines = [f"command: nanoBragg {r['command']}"]
    if r.get("ours_args"):
        lines.append(f"our extra args: {' '.join(r['ours_args'])}")
    lines.append(f"C: rc {r['c_rc']} in {r['c_seconds']:.2f} s   ours: rc {r['ours_rc']} in "
                 f"{r['ours_seconds']:.2f} s   shape (slow, fast) {r.get('shape_slow_fast')}")
    st = r["status"]
    if st in ("c_error", "both_error"):
        lines.append("C output tail:\n" + r["c_stdout_tail"][-600:])
    if st in ("ours_error", "both_error"):
        lines.append("our stderr tail:\n" + r["ours_stderr_tail"][-600:])
    if "float" in r:
        m = r["float"]
        lines.append(f"corr {m['corr']:.8f}   max|diff|/max {m['max_rel']:.3e}   total rel diff "
                     f"{m['total_rel']:.3e}   (max C {m['max_c']:.6g}, ours {m['max_ours']:.6g}; "
                     f"sum C {m['sum_c']:.6g}, ours {m['sum_ours']:.6g})")
        if "worst_pixel_slow_fast" in m:
            lines.append(f"worst pixel (slow, fast) {m['worst_pixel_slow_fast']}: C {m['worst_c']:.6g} "
                         f"ours {m['worst_ours']:.6g}; {m['pixels_differing_1e-6rel']} pixels differ "
                         "by more than 1e-6 max")
    for k in ("int", "noise", "pgm"):
        if k in r:
            s = r[k]
            lines.append(f"{k} image: {'ok' if s['pass'] else 'DIFFERS'}"
                         + ("" if s["pass"] else " - " + _smv_why(s)))
    for n in r.get("notes", []):
        lines.append("note: " + n)
    lines.append(f"verdict ({r['dtype']} bar): {st.upper()}"
                 + (" - " + "; ".join(r.get("why", [])) if r.get("why") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        k = argv.index("--")
        mine, nb = argv[:k], argv[k + 1:]
    else:
        # our options are the leading "--x [value]" tokens; nanoBragg flags have one dash
        flags_only = {"--smv", "--json", "--help"}
        k = 0
        while k < len(argv) and argv[k].startswith("--"):
            k += 1 if (argv[k] in flags_only or "=" in argv[k]) else 2
        mine, nb = argv[:k], argv[k:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c-bin", default=os.environ.get("NB_C_BIN"), help="C nanoBragg (or NB_C_BIN)")
    ap.add_argument("--dir", default=None, help="folder with the input files the command names")
    ap.add_argument("--ours-args", default="", help='extra flags of ours, e.g. "-dtype float32"')
    ap.add_argument("--ours-cmd", default=None, help="our program (default: .venv/bin/nanobragg)")
    ap.add_argument("--smv", action="store_true", help="also compare the SMV int/noise images")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP_NUM_THREADS for the C program (0: leave the environment's)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--keep", default=None, help="copy both run folders here")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--args-file", default=None,
                    help="read the nanoBragg arguments from a file (one token per line, like args.txt)")
    opts, rest = ap.parse_known_args(mine)
    nb = rest + nb
    if opts.args_file:
        nb = [t for t in Path(opts.args_file).read_text().split("\n") if t.strip()] + nb
    if not nb:
        ap.error("no nanoBragg arguments (put them after --)")
    if not opts.c_bin:
        ap.error("set NB_C_BIN or pass --c-bin")
    r = compare(nb, folder=opts.dir, c_bin=opts.c_bin, ours_args=shlex.split(opts.ours_args),
                ours_cmd=shlex.split(opts.ours_cmd) if opts.ours_cmd else None, smv=opts.smv,
                threads=opts.threads or None, timeout=opts.timeout, keep=opts.keep)
    if opts.json:
        print(json.dumps(r, indent=1, default=str))
    else:
        print(format_result(r))
    return {"pass": 0, "fail": 1}.get(r["status"], 2)


if __name__ == "__main__":
    sys.exit(main())
