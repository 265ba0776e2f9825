#!/usr/bin/env python3
"""Random nanoBragg command lines, each rendered by the C program and by our ``nanobragg``.

    NB_C_BIN=/path/to/nanoBragg python bench/fuzz_parity.py -n 300 --seed 1 --out /tmp/fuzz

Every case is a random but sensible experiment on a small detector (32-160 pixels, well under a second
in C), with its input files (HKL lists, MOSFLM matrices, source lists, SMV masks and headers) written
into its own folder; ``bench/c_compare.py`` runs both programs and compares the float images (and the
SMV int/noise images). The generator covers every image-affecting flag of the C program, in random
order and combination, weighted towards realistic experiments (cells 20-200 A, lambda 0.5-2 A,
distances 50-300 mm) with edge cases mixed in (zero mosaic spread with domains, phi steps without
osc, phi 0 with several steps, tiny ROIs, rotated detectors with both pivots, XDS with ORGX/ORGY,
CUSTOM vectors with and without -pivot, 2theta with each convention, dispersion without steps,
divergence with only steps, thickness with and without steps, -detector_abs inf, ...).

Cases where a phi step is exactly 0 and there are several steps get ``-phi_mode c-parity`` (the C
program's stale rotation at phi = 0; our default is the physical answer). The C program always runs
with one OpenMP thread, so cases that depend on its loop order are reproducible.

Outputs in ``--out``: ``results.jsonl`` (one line per case), ``summary.md`` (failures with their exact
command lines, grouped by status) and ``cases/NNNN/`` (the input files of each failing case, plus
``args.txt`` and ``ours_args.txt``) so a failure can be re-run with
``python bench/c_compare.py --dir OUT/cases/NNNN --args-file OUT/cases/NNNN/args.txt``.
``--replay OUT`` re-runs the failures recorded in an earlier ``OUT``; ``--minimize CASE_DIR`` shrinks
one failing case to the fewest flags that still fail the same way; ``--probes`` runs hand-written
command lines aimed at the C program's parsing quirks; ``--avoid-known`` steers the generator away
from failure classes already reported, so that new ones surface; ``--mask-prob`` and
``--float32-prob`` weight the -mask/-img and float32 cases.

This script builds nothing; point ``NB_C_BIN`` (or ``--c-bin``) at a C nanoBragg built elsewhere.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import c_compare  # noqa: E402

RTD = 180.0 * float("0.318309886183790671538")  # nanoBragg's 180*M_1_PI

#: steer the generator away from the failure classes already reported (``--avoid-known``)
AVOID_KNOWN = False

#: how often a case reads an SMV mask or header (``--mask-prob``)
MASK_PROB = 0.07

#: how often our side renders in float32 (``--float32-prob``), judged on the float32 bar
FLOAT32_PROB = 0.1

#: keep every case under this many evaluations (pixels x subpixels x layers x sources x phi x domains)
MAX_EVALS = 1_500_000


def fmt(x: float, nd: int = 4) -> str:
    s = f"{x:.{nd}f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


# --------------------------------------------------------------------------------------------------
# replicas of the C program's bookkeeping that the generator needs (phi steps, crystal size)
# --------------------------------------------------------------------------------------------------

def _c_atof(t: str) -> float:
    try:
        return float(t)
    except ValueError:
        import re
        m = re.match(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", t)
        return float(m.group(0)) if m else 0.0


def _c_atoi(t: str) -> int:
    import re
    m = re.match(r"\s*[+-]?\d+", t)
    return int(m.group(0)) if m else 0


def _smv_value(path: Path, key: str) -> float | None:
    """nanoBragg's ValueOf: the number after the '=' that follows the LAST occurrence of key."""
    try:
        head = path.read_bytes()[:512].decode("latin-1")
    except OSError:
        return None
    j = head.rfind(key)
    if j < 0:
        return None
    eq = head.find("=", j + len(key))
    return _c_atof(head[eq + 1:].split(";")[0].split("\n")[0]) if eq >= 0 else 0.0


def c_phi_values(args: list[str], folder: Path | None = None) -> list[float]:
    """The phi angles (radians) the C program steps through, computed with its arithmetic
    (including PHI and OSC_RANGE from the headers of -mask and -img files in ``folder``)."""
    phi0, phistep, osc, phisteps = 0.0, -1.0, -1.0, -1
    n = len(args)
    if folder is not None:
        for kind in ("-mask", "-img"):
            name = None
            for i, a in enumerate(args[:-1]):
                if a.startswith("-") and kind in a:
                    name = args[i + 1]
            if name and (Path(folder) / name).exists():
                v = _smv_value(Path(folder) / name, "PHI")
                if v is not None:
                    phi0 = v / RTD
                v = _smv_value(Path(folder) / name, "OSC_RANGE")
                if v is not None:
                    osc = v / RTD
    for i, a in enumerate(args):
        if not a.startswith("-") or i + 1 >= n:
            continue
        v = args[i + 1]
        if "-phi" in a and len(a) == 4:
            phi0 = _c_atof(v) / RTD
        if "-osc" in a:
            osc = _c_atof(v) / RTD
        if "-phistep" in a and len(a) == 8:
            phistep = _c_atof(v) / RTD
        if "-phisteps" in a:
            phisteps = _c_atoi(v)
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                phisteps, osc, phistep = 1, 0.0, 0.0
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep <= 0.0:
                phisteps, phistep = 2, osc / 2.0
            else:
                phisteps = math.ceil(osc / phistep)
    else:
        if phisteps == 0:
            phisteps = 1
        if osc < 0.0:
            if phistep <= 0.0:
                osc = 1.0 / RTD
                phistep = osc / phisteps
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep < 0.0:
                phistep = osc / phisteps
    return [phi0 + phistep * t for t in range(phisteps)]


def needs_c_parity(args: list[str], folder: Path | None = None) -> bool:
    phis = c_phi_values(args, folder)
    return len(phis) > 1 and any(p == 0.0 for p in phis)


# --------------------------------------------------------------------------------------------------
# random building blocks
# --------------------------------------------------------------------------------------------------

def rand_rotation(rng: random.Random) -> np.ndarray:
    q = np.array([rng.gauss(0, 1) for _ in range(4)])
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def small_rotation(rng: random.Random, max_deg: float) -> np.ndarray:
    axis = np.array([rng.gauss(0, 1) for _ in range(3)])
    axis /= np.linalg.norm(axis)
    ang = math.radians(rng.uniform(-max_deg, max_deg))
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K


def rand_cell(rng: random.Random) -> tuple[list[float], str]:
    kind = rng.choices(["cubic", "tetragonal", "orthorhombic", "monoclinic", "hexagonal",
                        "triclinic"], [2, 1, 3, 2, 1, 3])[0]
    a = rng.uniform(20, 200)
    b = rng.uniform(20, 200)
    c = rng.uniform(20, 200)
    al = be = ga = 90.0
    if kind == "cubic":
        b = c = a
    elif kind == "tetragonal":
        b = a
    elif kind == "monoclinic":
        be = rng.uniform(92, 125)
    elif kind == "hexagonal":
        b = a
        ga = 120.0
    elif kind == "triclinic":
        while True:
            al, be, ga = (rng.uniform(60, 120) for _ in range(3))
            ca, cb, cg = (math.cos(math.radians(x)) for x in (al, be, ga))
            if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg > 0.05:
                break
    vals = [round(a, 2), round(b, 2), round(c, 2), round(al, 2), round(be, 2), round(ga, 2)]
    return vals, kind


def reciprocal_matrix(cell: list[float]) -> np.ndarray:
    """Columns a*, b*, c* (1/A) of the cell in a standard frame."""
    a, b, c, al, be, ga = cell
    al, be, ga = (math.radians(x) for x in (al, be, ga))
    av = np.array([a, 0, 0])
    bv = np.array([b * math.cos(ga), b * math.sin(ga), 0])
    cx = c * math.cos(be)
    cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz = math.sqrt(max(c * c - cx * cx - cy * cy, 1e-9))
    cv = np.array([cx, cy, cz])
    V = av @ np.cross(bv, cv)
    return np.stack([np.cross(bv, cv) / V, np.cross(cv, av) / V, np.cross(av, bv) / V], axis=1)


class Case:
    """A command line built from groups of tokens, plus the files it reads."""

    def __init__(self, rng: random.Random, folder: Path):
        self.rng = rng
        self.folder = folder
        self.groups: list[list[str]] = []
        self.tail: list[list[str]] = []  # groups kept at the end, in order
        self.head: list[list[str]] = []
        self.tags: list[str] = []
        self.ours_args: list[str] = []
        self.smv = True

    def add(self, *tokens, tag: str | None = None):
        self.groups.append([str(t) for t in tokens])
        if tag:
            self.tags.append(tag)

    def tag(self, t: str):
        self.tags.append(t)

    def args(self) -> list[str]:
        groups = list(self.groups)
        head = list(self.head)
        if self.rng.random() < 0.7:
            self.rng.shuffle(groups)
        if AVOID_KNOWN:
            # keep clear of the failure classes already reported (see --avoid-known)
            named = [g for g in groups if g[0] in ("-mosflm", "-xds", "-adxv", "-denzo", "-dials")]
            groups = [g for g in groups if g not in named]
            head = named + head
            flat = [t for g in head + groups for t in g]
            if "-nopolar" in flat:
                groups = [g for g in groups if g[0] != "-oversample_polar"]
            if groups and groups[-1] == ["-curved_det"]:
                groups.insert(0, groups.pop())
            custom = False
            for t in flat:
                if t in ("-mosflm", "-xds", "-adxv", "-denzo", "-dials"):
                    custom = False
                elif t in ("-fdet_vector", "-sdet_vector", "-odet_vector", "-beam_vector",
                           "-polar_vector", "-spindle_axis", "-twotheta_axis", "-pix0_vector"):
                    custom = True
            if custom and "-twotheta" in flat and "-twotheta_axis" not in flat:
                head = [["-twotheta_axis", "0", "1", "0"]] + head
        out = []
        for g in head + groups + self.tail:
            out.extend(g)
        return out


# --------------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------------

CONVENTIONS = {
    # beam, fdet, sdet, odet for the default frame of each convention
    "mosflm": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0)),
    "denzo": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0)),
    "adxv": ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "xds": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "dials": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)),
}


def vec_tokens(v) -> list[str]:
    return [fmt(float(x), 6) for x in v]


def write_hkl(case: Case, rng: random.Random, cell_max: float, lam: float) -> tuple[str, dict]:
    """A small random P1 HKL file; dense box or sparse list. Returns the name and its ranges."""
    name = rng.choice(["p1.hkl", "F.hkl", "test.hkl"])
    dense = rng.random() < 0.6
    # reach of the detector in index units is roughly cell/d; keep files small
    hmax = max(2, min(14, int(cell_max / max(lam, 0.5) / rng.uniform(1.5, 6))))
    ranges = []
    for _ in range(3):
        n = rng.randint(2, hmax)
        if rng.random() < 0.15:
            ranges.append((rng.randint(-n, 0), rng.randint(1, n)))  # lopsided box
        else:
            ranges.append((-n, n))
    lines = []
    frac = 1.0 if dense else rng.uniform(0.05, 0.6)
    while True:
        total = np.prod([r[1] - r[0] + 1 for r in ranges])
        if total <= 40000:
            break
        ranges = [(max(r[0] // 2, -20), max(r[1] // 2, 1)) for r in ranges]
    for h in range(ranges[0][0], ranges[0][1] + 1):
        for k in range(ranges[1][0], ranges[1][1] + 1):
            for l in range(ranges[2][0], ranges[2][1] + 1):
                if rng.random() > frac:
                    continue
                F = abs(rng.gauss(0, 1)) * rng.choice([10, 100, 1000])
                if rng.random() < 0.03:
                    F = 0.0
                lines.append(f"{h} {k} {l} {F:.2f}")
    if not lines:
        lines.append("0 0 0 100.0")
    if rng.random() < 0.2:
        rng.shuffle(lines)
    (case.folder / name).write_text("\n".join(lines) + "\n")
    return name, {"dense": dense, "ranges": ranges, "count": len(lines)}


def write_matrix(case: Case, rng: random.Random, cell: list[float], lam_file: float) -> str:
    name = rng.choice(["A.mat", "orient.mat", "xtal.mat"])
    B = reciprocal_matrix(cell)
    U = rand_rotation(rng)
    A = U @ B * lam_file  # rows x, y, z; columns a*, b*, c*
    lines = [" ".join(f"{A[i, j]: .10f}" for j in range(3)) for i in range(3)]
    if rng.random() < 0.4:
        # the rest of a real MOSFLM file: missets, U matrix, cell, missets
        lines.append("       0.000       0.000       0.000")
        lines += [" ".join(f"{U[i, j]: .7f}" for j in range(3)) for i in range(3)]
        lines.append(" ".join(fmt(x, 4) for x in cell))
        lines.append("       0.000       0.000       0.000")
    (case.folder / name).write_text("\n".join(lines) + "\n")
    return name


def write_sources(case: Case, rng: random.Random, beam: np.ndarray, lam_A: float) -> tuple[str, int]:
    name = rng.choice(["sources.txt", "src.lst", "beam_sources.dat"])
    ncol = rng.randint(1, 5)
    n = rng.randint(1, 6)
    sep = rng.choice([" ", "  ", "\t", ", "])
    lines = []
    perp1 = np.cross(beam, [0.3, 0.5, 0.7])
    perp1 /= np.linalg.norm(perp1)
    perp2 = np.cross(beam, perp1)
    for _ in range(n):
        dist = rng.choice([10.0, 1.0, 20.0])
        off = rng.uniform(-1e-3, 1e-3) * perp1 + rng.uniform(-1e-3, 1e-3) * perp2
        pos = -dist * (beam + off)
        vals = [*pos, rng.uniform(0.2, 2.0), lam_A * (1 + rng.uniform(-0.01, 0.01)) * 1e-10]
        lines.append(sep.join(f"{v:.9g}" for v in vals[:ncol]))
    (case.folder / name).write_text("\n".join(lines) + "\n")
    return name, n


def write_mask(case: Case, rng: random.Random, fpix: int, spix: int, pixel_mm: float,
               c_bin: str | None, geom_args: list[str]) -> str:
    """An SMV mask: our writer with a plausible header, or an int image made by the C program."""
    name = rng.choice(["mask.img", "badpix.img"])
    img = None
    if c_bin and rng.random() < 0.5:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [c_bin, "-cell", "50", "50", "50", "90", "90", "90", "-default_F", "1", "-N", "1",
                   "-nonoise", "-nopgm", "-noprogress", "-intfile", "base.img", "-floatfile", "f.bin",
                   "-detpixels_x", str(fpix), "-detpixels_y", str(spix), "-pixel", fmt(pixel_mm, 4),
                   "-oversample", "1"] + geom_args
            subprocess.run(cmd, cwd=tmp, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                           timeout=60)
            p = Path(tmp) / "base.img"
            if p.exists():
                raw = bytearray(p.read_bytes())
                pix = np.frombuffer(bytes(raw[512:]), dtype="<u2").reshape(spix, fpix).copy()
                pix[pix == 0] = 1
                _zero_some(rng, pix)
                (case.folder / name).write_bytes(bytes(raw[:512]) + pix.astype("<u2").tobytes())
                case.tag("mask:c-image")
                return name
    from sim_core.io.smv import SmvGeometry, write_smv
    img = np.ones((spix, fpix), dtype=np.uint16)
    _zero_some(rng, img)
    p_m = pixel_mm / 1000
    dist = round(rng.uniform(50, 300), 1) / 1000
    close = dist if rng.random() < 0.6 else round(dist * rng.uniform(0.9, 1.0) * 1000, 1) / 1000
    xb = round(rng.uniform(0.3, 0.7) * fpix * pixel_mm, 2) / 1000
    yb = round(rng.uniform(0.3, 0.7) * spix * pixel_mm, 2) / 1000
    geom = SmvGeometry(fpixels=fpix, spixels=spix, pixel_size_m=p_m, distance_m=dist,
                       wavelength_m=round(rng.uniform(0.5, 2.0), 3) * 1e-10, xbeam_m=xb, ybeam_m=yb,
                       fbeam_m=yb, sbeam_m=xb, detsize_s_m=spix * p_m,
                       dials_origin_mm=(0.0, 0.0, 0.0), orgx=round(rng.uniform(0.3, 0.7) * fpix, 1),
                       orgy=round(rng.uniform(0.3, 0.7) * spix, 1), close_distance_m=close,
                       phi0_rad=math.radians(rng.choice([0, 0, 10, 35.5])),
                       osc_rad=math.radians(rng.choice([0, 0, 0.5, 1.0])))
    write_smv(case.folder / name, img, geom)
    case.tag("mask:write_smv")
    return name


def _zero_some(rng: random.Random, pix: np.ndarray):
    s, f = pix.shape
    for _ in range(rng.randint(1, 4)):
        s0, f0 = rng.randrange(s), rng.randrange(f)
        pix[s0:s0 + rng.randint(1, max(1, s // 3)), f0:f0 + rng.randint(1, max(1, f // 3))] = 0
    n = rng.randint(0, s * f // 20)
    for _ in range(n):
        pix[rng.randrange(s), rng.randrange(f)] = 0


def gen_case(rng: random.Random, folder: Path, c_bin: str | None = None) -> dict:
    case = Case(rng, folder)
    R = rng.random

    # ---------------- beam ----------------
    lam = round(rng.uniform(0.5, 2.0), 4)
    if R() < 0.15:
        energy = round(12398.42 / lam, 1)
        case.add("-energy", fmt(energy, 1), tag="energy")
        lam = 12398.42 / energy
    else:
        case.add(rng.choice(["-lambda", "-lambda", "-wave", "-wavelength"]), fmt(lam, 4))

    # ---------------- convention / detector frame ----------------
    conv = rng.choices(["default", "mosflm", "xds", "adxv", "denzo", "dials", "custom"],
                       [30, 8, 12, 10, 8, 10, 22])[0]
    beam = np.array(CONVENTIONS["mosflm" if conv in ("default", "custom") else conv][0], float)
    custom_frame = conv == "custom"
    if conv not in ("default", "custom"):
        case.add(f"-{conv}", tag=f"conv:{conv}")
    else:
        case.tag(f"conv:{conv}")
    if custom_frame:
        base = rng.choice(list(CONVENTIONS))
        b0, f0, s0, o0 = (np.array(v, float) for v in CONVENTIONS[base])
        Rt = small_rotation(rng, rng.choice([0.5, 3, 10]))
        fv, sv, ov = Rt @ f0, Rt @ s0, Rt @ o0
        beam = b0 if R() < 0.6 else small_rotation(rng, 1.0) @ b0
        which = rng.random()
        case.add("-fdet_vector", *vec_tokens(fv))
        case.add("-sdet_vector", *vec_tokens(sv))
        if which < 0.7:
            case.add("-odet_vector", *vec_tokens(ov))
        else:
            case.tag("odet:auto")
        if R() < 0.6:
            case.add("-beam_vector", *vec_tokens(beam))
        else:
            beam = np.array(CONVENTIONS["mosflm"][0], float)  # C keeps the MOSFLM default beam
        if R() < 0.4:
            pv = np.cross(beam, [0, 1, 0.1])
            pv /= np.linalg.norm(pv)
            case.add("-polar_vector", *vec_tokens(pv), tag="polar_vector")
        if R() < 0.5:
            case.add("-pivot", rng.choice(["beam", "sample"]), tag="pivot")
    elif R() < 0.06:
        # a beam/polar vector alone also switches to CUSTOM
        case.add("-polar_vector", *vec_tokens(small_rotation(rng, 2) @ np.array([0, 0, 1.0])),
                 tag="polar_vector_alone")
    if R() < 0.1:
        ax = small_rotation(rng, 20) @ np.array([0, 0, 1.0])
        case.add("-spindle_axis", *vec_tokens(ax), tag="spindle_axis")

    # ---------------- crystal ----------------
    cell, kind = rand_cell(rng)
    use_mat = R() < 0.25
    if use_mat:
        lam_file = lam if R() < 0.8 else lam * rng.uniform(0.9, 1.1)
        case.add("-mat", write_matrix(case, rng, cell, lam_file), tag="mat")
        cell_eff_max = max(cell[:3]) * lam / lam_file
        if R() < 0.08:
            case.add("-cell", *[fmt(x, 2) for x in cell], tag="mat+cell")
    else:
        if R() < 0.1:
            # a partial cell: the C program fills b, c from a and angles with 90
            n = rng.choice([1, 3])
            case.add("-cell", *[fmt(x, 2) for x in cell[:n]], tag=f"cell:{n}values")
            cell = cell[:n] + [cell[0]] * (3 - min(n, 3)) + [90.0, 90.0, 90.0]
        else:
            case.add("-cell", *[fmt(x, 2) for x in cell], tag=f"cell:{kind}")
        cell_eff_max = max(cell[:3])
    # orientation
    mis = rng.random()
    if mis < 0.45:
        case.add("-misset", *[fmt(rng.uniform(-180, 180), 2) for _ in range(3)], tag="misset")
    elif mis < 0.58:
        seed = rng.randint(1, 99999)
        case.add("-misset_seed", seed, "-misset", "random", tag="misset:random,seed-before")
    elif mis < 0.66:
        seed = rng.randint(1, 99999)
        case.head.append(["-misset", "random"])
        case.groups.append(["-misset_seed", str(seed)])
        case.tag("misset:random,seed-after")
    elif mis < 0.72:
        seed = rng.randint(1, 99999)
        case.add("-misset", *[fmt(rng.uniform(-90, 90), 1) for _ in range(3)], "-misset_seed",
                 seed, tag="misset:angles,seed-after")
    # size
    sz = rng.random()
    N = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20])
    Ns = [N, N, N]
    if sz < 0.45:
        case.add("-N", N, tag="N")
    elif sz < 0.65:
        Ns = [rng.randint(1, 15) for _ in range(3)]
        for ax, n in zip("abc", Ns):
            if R() < 0.85:
                case.add(f"-N{ax}", n)
            else:
                Ns["abc".index(ax)] = 1
        case.tag("Nabc")
    elif sz < 0.85:
        size_mm = round(N * cell_eff_max * 1e-7 * rng.uniform(0.8, 1.2), 7)
        flag = rng.choice(["-samplesize", "-xtalsize", "-sample_size", "-xtal_size"])
        case.add(flag, fmt(size_mm, 7), tag="samplesize")
        Ns = [max(1, math.ceil(size_mm * 1e7 / cell_eff_max * 1.3))] * 3
    elif sz < 0.95:
        flags = [rng.choice(["-sample_x", "-xtal_x", "-sample_thick", "-xtal_thick"]),
                 rng.choice(["-sample_y", "-xtal_y", "-sample_width", "-xtal_width", "-width"]),
                 rng.choice(["-sample_z", "-xtal_z", "-sample_height", "-xtal_height", "-height"])]
        for i, fl in enumerate(flags):
            if R() < 0.8:
                n = rng.randint(1, 15)
                case.add(fl, fmt(n * cell_eff_max * 1e-7 * rng.uniform(0.9, 1.1), 7))
                Ns[i] = n + 1
            else:
                Ns[i] = 1
        case.tag("sample_xyz")
    else:
        Ns = [1, 1, 1]
        case.tag("no-size")
    # shape
    sh = rng.random()
    if sh < 0.12:
        case.add("-round_xtal", tag="round")
    elif sh < 0.24:
        case.add("-gauss_xtal", tag="gauss")
    elif sh < 0.36:
        case.add(rng.choice(["-tophat_spots", "-binary_spots"]), tag="tophat")
    elif sh < 0.42:
        case.add("-square_xtal", tag="square")
    if R() < 0.15:
        case.add("-fudge", fmt(rng.uniform(0.3, 3), 2), tag="fudge")

    # mosaic
    mos = rng.random()
    domains = 1
    if mos < 0.15:
        spread = fmt(rng.uniform(0.05, 1.5), 3)
        domains = rng.randint(2, 8)
        case.add("-mosaic", spread, "-mosaic_domains", domains, tag="mosaic")
        if R() < 0.5:
            case.add("-mosaic_seed", rng.randint(1, 10 ** 6), tag="mosaic_seed")
    elif mos < 0.20:
        case.add("-mosaic", fmt(rng.uniform(0.05, 1.0), 3), tag="mosaic:no-domains")
        domains = 10
    elif mos < 0.24:
        case.add("-mosaic", "0", "-mosaic_domains", rng.randint(2, 6), tag="mosaic:zero-spread")
    elif mos < 0.27:
        case.add("-mosaic_domains", rng.randint(2, 6), tag="mosaic:domains-only")
    elif mos < 0.30:
        case.add(rng.choice(["-mosaic_spread", "-mosaicity"]), fmt(rng.uniform(0.1, 0.8), 2),
                 "-mosaic_dom", 3, tag="mosaic:alt-names")
        domains = 3

    # phi
    ph = rng.random()
    if ph < 0.15:
        case.add("-phi", fmt(rng.uniform(-90, 90), 2), "-osc", fmt(rng.uniform(0.05, 2), 3),
                 "-phisteps", rng.randint(2, 5), tag="phi+osc+steps")
    elif ph < 0.22:
        case.add("-phi", "0", "-osc", fmt(rng.uniform(0.05, 1), 3), "-phisteps", rng.randint(2, 4),
                 tag="phi0+steps")
    elif ph < 0.27:
        case.add("-phisteps", rng.randint(2, 4), tag="phisteps-only")
    elif ph < 0.32:
        case.add("-phi", fmt(rng.uniform(-30, 30), 1), "-osc", fmt(rng.uniform(0.1, 1), 2),
                 tag="phi+osc")
    elif ph < 0.37:
        osc = rng.choice([0.2, 0.3, 0.5, 1.0])
        case.add("-osc", fmt(osc, 2), "-phistep", fmt(osc / rng.choice([2, 3, 4, 5]), 4),
                 tag="osc+phistep")
    elif ph < 0.40:
        case.add("-phistep", fmt(rng.uniform(0.05, 0.5), 3), tag="phistep-only")
    elif ph < 0.43:
        osc = rng.choice([0.2, 0.4, 1.0])
        n = rng.choice([2, 3, 5])
        case.add("-phi", fmt(-osc / 2, 3), "-osc", fmt(osc, 3), "-phisteps", n, tag="phi:through-0")
    elif ph < 0.46:
        case.add("-phi", fmt(rng.uniform(-40, 40), 2), tag="phi-only")
    elif ph < 0.48:
        case.add("-phi", "0", "-phisteps", rng.randint(2, 4), "-phistep", "0", tag="phi0:zero-step")

    # ---------------- structure factors ----------------
    sfk = rng.random()
    hkl_info = None
    if sfk < 0.45:
        case.add("-default_F", fmt(rng.choice([1, 10, 50, 100, 250.5]), 1), tag="default_F")
    else:
        name, hkl_info = write_hkl(case, rng, cell_eff_max, lam)
        case.add("-hkl", name, tag="hkl:" + ("dense" if hkl_info["dense"] else "sparse"))
        if R() < 0.35:
            case.add("-default_F", fmt(rng.choice([0.5, 5, 20, 100]), 1), tag="hkl+default_F")
    ip = rng.random()
    if ip < 0.15:
        case.add("-interpolate", tag="interpolate")
    elif ip < 0.25:
        case.add("-nointerpolate", tag="nointerpolate")

    # ---------------- spectrum, divergence, sources ----------------
    nsrc = 1
    sk = rng.random()
    if sk < 0.1:
        name, nsrc = write_sources(case, rng, beam, lam)
        case.add("-sourcefile", name, tag="sourcefile")
    else:
        nd = 1
        if R() < 0.2:
            case.add("-dispersion", fmt(rng.uniform(0.1, 5), 2), tag="dispersion")
            if R() < 0.6:
                nd = rng.randint(1, 4)
                case.add("-dispsteps", nd, tag="dispsteps")
            else:
                nd = 2
        elif R() < 0.03:
            nd = rng.randint(2, 3)
            case.add("-dispsteps", nd, tag="dispsteps-only")
        dv = rng.random()
        nh = nv = 1
        if dv < 0.08:
            case.add("-divergence", fmt(rng.uniform(0.1, 2), 2), tag="divergence")
            nh = nv = 2
            if R() < 0.5:
                nh = nv = rng.randint(2, 4)
                case.add("-divsteps", nh)
        elif dv < 0.14:
            case.add("-hdivrange", fmt(rng.uniform(0.1, 2), 2), "-vdivrange",
                     fmt(rng.uniform(0.1, 2), 2), tag="hv-divrange")
            nh, nv = rng.randint(1, 4), rng.randint(1, 4)
            case.add("-hdivsteps", nh, "-vdivsteps", nv)
        elif dv < 0.17:
            case.add("-hdivstep", fmt(rng.uniform(0.05, 0.5), 3), "-vdivstep",
                     fmt(rng.uniform(0.05, 0.5), 3), tag="divstep-only")
            nh = nv = 2
        elif dv < 0.20:
            n = rng.randint(2, 3)
            case.add("-divsteps", n, tag="divsteps-only")
            nh = nv = n
        elif dv < 0.23:
            case.add("-hdivrange", fmt(rng.uniform(0.2, 1), 2), "-hdivstep",
                     fmt(rng.uniform(0.1, 0.3), 2), tag="hdivrange+step")
            nh = 6
        if nh * nv > 1 and R() < 0.5:
            case.add(rng.choice(["-round_div", "-square_div"]), tag="div-shape")
        nsrc = nd * nh * nv

    # polarization, fluence
    pk = rng.random()
    if pk < 0.2:
        case.add("-polar", fmt(rng.uniform(0, 1), 3), tag="polar")
    elif pk < 0.3:
        case.add("-nopolar", tag="nopolar")
    elif pk < 0.33:
        case.add("-nopolar", "-polar", fmt(rng.uniform(0, 1), 2), tag="nopolar+polar")
    fl = rng.random()
    if fl < 0.1:
        case.add("-fluence", f"{rng.uniform(1e23, 1e25):.4g}", tag="fluence")
    elif fl < 0.2:
        case.add("-flux", f"{rng.uniform(1e10, 1e13):.4g}", tag="flux")
        if R() < 0.7:
            case.add("-exposure", fmt(rng.uniform(0.1, 10), 2))
        if R() < 0.7:
            case.add("-beamsize", fmt(rng.uniform(0.01, 0.2), 3))
    elif fl < 0.25:
        case.add("-beamsize", fmt(rng.uniform(0.0001, 0.05), 4), tag="beamsize-only")

    # ---------------- detector ----------------
    pixel = rng.choice([0.05, 0.075, 0.1, 0.172, 0.2, 0.3, 0.5])
    dk = rng.random()
    if dk < 0.6:
        fpix = spix = rng.randint(32, 160)
        case.add("-detpixels", fpix)
    elif dk < 0.8:
        fpix, spix = rng.randint(32, 160), rng.randint(32, 160)
        case.add(rng.choice(["-detpixels_x", "-detpixels_f"]), fpix,
                 rng.choice(["-detpixels_y", "-detpixels_s"]), spix, tag="detpixels_xy")
    elif dk < 0.9:
        size = round(rng.randint(32, 160) * pixel * rng.uniform(0.97, 1.03), 2)
        case.add("-detsize", fmt(size, 2), tag="detsize")
        fpix = spix = math.ceil(size / pixel - 0.5)
    else:
        sf, ss = (round(rng.randint(32, 160) * pixel, 2) for _ in range(2))
        case.add("-detsize_f", fmt(sf, 2), "-detsize_s", fmt(ss, 2), tag="detsize_fs")
        fpix, spix = math.ceil(sf / pixel - 0.5), math.ceil(ss / pixel - 0.5)
    case.add("-pixel", fmt(pixel, 3))
    dist = round(rng.uniform(50, 300), 1)
    # keep the detector's angular reach sensible: a few degrees to ~45 deg
    span = max(fpix, spix) * pixel
    if span / dist > 1.0:
        dist = round(span / rng.uniform(0.3, 1.0), 1)
    if R() < 0.85:
        case.add("-distance", fmt(dist, 1))
    if R() < 0.1:
        case.add("-close_distance", fmt(dist * rng.uniform(0.9, 1.0), 1), tag="close_distance")
    # beam centre
    bc = rng.random()
    W, H = fpix * pixel, spix * pixel
    if bc < 0.35:
        case.add("-Xbeam", fmt(rng.uniform(0.2, 0.8) * W, 3), "-Ybeam",
                 fmt(rng.uniform(0.2, 0.8) * H, 3), tag="Xbeam")
    elif bc < 0.45:
        case.add("-Xclose", fmt(rng.uniform(0.3, 0.7) * W, 3), "-Yclose",
                 fmt(rng.uniform(0.3, 0.7) * H, 3), tag="Xclose")
    elif bc < 0.55:
        case.add("-ORGX", fmt(rng.uniform(0.3, 0.7) * fpix, 2), "-ORGY",
                 fmt(rng.uniform(0.3, 0.7) * spix, 2), tag="ORGXY")
    elif bc < 0.6:
        case.add("-Xbeam", fmt(rng.uniform(0.3, 0.7) * W, 3), tag="Xbeam-only")
    if R() < 0.07 and not custom_frame:
        case.add("-pivot", rng.choice(["beam", "sample"]), tag="pivot")
    # rotations
    if R() < 0.25:
        for ax in "xyz":
            if R() < 0.6:
                case.add(f"-detector_rot{ax}", fmt(rng.uniform(-10, 10), 2))
        case.tag("detector_rot")
    if R() < 0.2:
        case.add("-twotheta", fmt(rng.uniform(-30, 30), 2), tag="twotheta")
        if R() < 0.3:
            ax = small_rotation(rng, 5) @ np.array(rng.choice([(0, 0, -1.0), (1.0, 0, 0),
                                                              (0, 1.0, 0), (-1.0, 0, 0)]))
            case.add("-twotheta_axis", *vec_tokens(ax), tag="twotheta_axis")
    if R() < 0.07:
        case.add("-curved_det", tag="curved")
    if R() < 0.08:
        case.add("-point_pixel", tag="point_pixel")
    # sensor
    nthick = 1
    tk = rng.random()
    if tk < 0.12:
        case.add("-detector_thick", fmt(rng.uniform(50, 1000), 1), tag="thick")
        if R() < 0.6:
            case.add(rng.choice(["-detector_abs", "-detector_absorb"]), fmt(rng.uniform(20, 500), 1))
        if R() < 0.6:
            nthick = rng.randint(1, 4)
            case.add(rng.choice(["-thicksteps", "-detector_thicksteps"]), nthick, tag="thicksteps")
        else:
            nthick = 2
    elif tk < 0.15:
        case.add("-detector_thick", fmt(rng.uniform(50, 500), 1), "-detector_abs", "inf",
                 tag="thick+abs-inf")
    elif tk < 0.17:
        case.add("-thicksteps", rng.randint(2, 3), tag="thicksteps-only")
        nthick = 3

    # sampling
    os_ = None
    if R() < 0.45:
        os_ = rng.choice([1, 1, 2, 2, 3])
        case.add("-oversample", os_, tag="oversample")
    for fl in ("-oversample_thick", "-oversample_polar", "-oversample_omega"):
        if R() < 0.08:
            case.add(fl, tag=fl[1:])
    if R() < 0.12:
        x0 = rng.randint(-2, fpix - 1)
        y0 = rng.randint(-2, spix - 1)
        if R() < 0.3:
            x1, y1 = x0 + rng.randint(0, 2), y0 + rng.randint(0, 2)
            case.tag("roi:tiny")
        else:
            x1, y1 = rng.randint(max(x0, 0), fpix + 3), rng.randint(max(y0, 0), spix + 3)
            case.tag("roi")
        case.add("-roi", x0, x1, y0, y1)
    if R() < 0.08:
        case.add("-dmin", fmt(rng.uniform(1.5, 6), 2), tag="dmin")
    if R() < 0.08:
        case.add("-water", fmt(rng.uniform(1, 300), 1), tag="water")

    # masks and headers (they preset the detector: keep their pixel counts)
    if R() < MASK_PROB:
        for g in list(case.groups):
            if g and g[0] in ("-detpixels", "-detpixels_x", "-detpixels_y", "-detpixels_f",
                              "-detpixels_s", "-detsize", "-detsize_f", "-detsize_s"):
                case.groups.remove(g)
        case.add("-detpixels_x", fpix, "-detpixels_y", spix)
        kind = rng.choice(["-mask", "-img"])
        geom = []
        if R() < 0.5:
            geom += ["-distance", fmt(rng.uniform(60, 200), 1)]
        if R() < 0.4:
            geom += ["-twotheta", fmt(rng.uniform(-10, 10), 1)]
        if R() < 0.4:
            geom += ["-Xbeam", fmt(rng.uniform(0.3, 0.7) * W, 2)]
        if R() < 0.3:
            geom += ["-phi", "12.5", "-osc", "0.7"]
        name = write_mask(case, rng, fpix, spix, pixel, c_bin, geom)
        if kind == "-img":
            case.add("-img", name, tag="img")
        else:
            case.add("-mask", name, tag="mask")
            if R() < 0.3:
                case.add("-img", name, tag="img")

    # outputs
    noise = False
    if R() < 0.2:
        case.add("-seed", rng.randint(1, 10 ** 6), tag="seed")
        noise = True
        if R() < 0.5:
            case.add("-noisefile", rng.choice(["noise.img", "noiseimage.img"]))
    if not noise:
        case.add("-nonoise")
    if R() < 0.5:
        case.add("-intfile", rng.choice(["int.img", "intimage.img"]))
    if R() < 0.1:
        case.add("-scale", fmt(rng.uniform(0.01, 100), 3), tag="scale")
    if R() < 0.08:
        case.add("-adc", fmt(rng.choice([0, 10, 40, 100.5]), 1), tag="adc")
    if R() < 0.08:
        case.add("-pgmscale", fmt(rng.uniform(0.1, 10), 2), tag="pgmscale")
    elif R() < 0.5:
        case.add("-nopgm")
    if R() < 0.7:
        case.add("-floatfile", rng.choice(["float.bin", "floatimage.bin", "img.bin"]))
    if R() < 0.5:
        case.add("-noprogress")

    # ---------------- keep it cheap ----------------
    xtal_max_A = max(n * (cell_eff_max) for n in Ns)
    rec = math.ceil(3 * xtal_max_A * 1e-10 / (lam * 1e-10 * dist * 1e-3 / (pixel * 1e-3)))
    osv = os_ if os_ else max(rec, 1)
    phis = 5
    for g in case.groups:
        if g and g[0] == "-phisteps":
            phis = int(g[1])
    cost = fpix * spix * osv * osv * nsrc * domains * phis * max(nthick, 1)
    if cost > MAX_EVALS:
        if os_ is None or osv > 2:
            for g in list(case.groups):
                if g and g[0] == "-oversample":
                    case.groups.remove(g)
            osv = rng.choice([1, 2])
            case.add("-oversample", osv, tag="oversample:capped")
            cost = fpix * spix * osv * osv * nsrc * domains * phis * max(nthick, 1)
    args = case.args()
    if AVOID_KNOWN and not c_phi_values(args, folder):
        # zero phi steps (-phistep with a zero oscillation, e.g. OSC_RANGE=0 in a header)
        case.groups = [g for g in case.groups if g[0] != "-phistep"]
        args = case.args()
    ours_args = []
    if needs_c_parity(args, folder):
        ours_args += ["-phi_mode", "c-parity"]
        case.tag("c-parity")
    if R() < FLOAT32_PROB:
        ours_args += ["-dtype", "float32"]
        case.tag("float32")
    return {"args": args, "ours_args": ours_args, "tags": case.tags, "smv": case.smv,
            "noise_seeded": noise, "est_evals": cost}


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------

def run_case(idx: int, spec: dict, folder: Path, c_bin: str, timeout: float) -> dict:
    args = spec["args"]
    smv = spec.get("smv", True)
    r = c_compare.compare(args, folder=folder, c_bin=c_bin, ours_args=spec["ours_args"], smv=smv,
                          threads=1, timeout=timeout)
    if smv and not spec.get("noise_seeded") and "noise" in r:
        # unseeded noise uses the clock in C: nothing to compare
        n = r.pop("noise")
        if not n.get("pass") and r["status"] == "fail" and "float" in r:
            r["why"] = [w for w in r["why"] if not w.startswith("noise image")]
            ok, _ = c_compare.float_verdict(r["float"], r["dtype"])
            if ok and (r.get("int") or {}).get("pass", True):
                r["status"] = "pass"
    r["index"] = idx
    r["tags"] = spec.get("tags", [])
    r["est_evals"] = spec.get("est_evals")
    return r


def _is_number(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def split_groups(args: list[str]) -> list[list[str]]:
    """Flags with their values (a token starting with '-' that is not a number opens a group)."""
    groups: list[list[str]] = []
    for t in args:
        if t.startswith("-") and not _is_number(t) or not groups:
            groups.append([t])
        else:
            groups[-1].append(t)
    return groups


def failure_kind(r: dict) -> str:
    if r["status"] in ("ours_error", "c_error", "both_error"):
        tail = (r.get("ours_stderr_tail") or "").strip().splitlines()
        msg = tail[-1] if tail else ""
        return r["status"] + ":" + msg.split(":")[1][:40] if ":" in msg else r["status"]
    if r["status"] == "fail":
        kinds = []
        if r.get("float") and not c_compare.float_verdict(r["float"], r["dtype"])[0]:
            kinds.append("float")
        for k in ("int", "noise", "pgm"):
            if k in r and not r[k]["pass"]:
                kinds.append(k)
        return "fail:" + ",".join(kinds)
    return r["status"]


def minimize(folder: Path, args: list[str], ours_args: list[str], c_bin: str, smv: bool,
             keep: tuple[str, ...] = ("-floatfile",), log=print) -> tuple[list[str], dict]:
    """Greedy removal of flag groups while the case fails the same way (ddmin light)."""
    base = c_compare.compare(args, folder=folder, c_bin=c_bin, ours_args=ours_args, smv=smv)
    want = failure_kind(base)
    log(f"minimize: start ({len(args)} tokens): {want}")
    groups = split_groups(args)
    best = base
    changed = True
    while changed:
        changed = False
        # try removing halves first, then single groups
        n = len(groups)
        chunk = max(1, n // 2)
        while chunk >= 1:
            i = 0
            while i < len(groups):
                trial = groups[:i] + groups[i + chunk:]
                if any(g[0] in keep for g in groups[i:i + chunk]) or not trial:
                    i += chunk
                    continue
                targs = [t for g in trial for t in g]
                oa = [a for a in ours_args]
                if "-phi_mode" in oa:
                    k = oa.index("-phi_mode")
                    oa = oa[:k] + oa[k + 2:]
                if needs_c_parity(targs, folder):
                    oa += ["-phi_mode", "c-parity"]
                r = c_compare.compare(targs, folder=folder, c_bin=c_bin, ours_args=oa, smv=smv)
                if failure_kind(r) == want:
                    groups, best, ours_args = trial, r, oa
                    changed = True
                    log(f"minimize: {len(targs)} tokens: {' '.join(targs)}")
                else:
                    i += chunk
            chunk //= 2
    return [t for g in groups for t in g], best


# --------------------------------------------------------------------------------------------------
# hand-written probes of the C program's parsing and bookkeeping quirks
# --------------------------------------------------------------------------------------------------

PROBE_BASE = ["-cell", "70", "80", "90", "90", "90", "-default_F", "100", "-N", "5", "-lambda", "1.0",
              "-distance", "100", "-detpixels", "64", "-pixel", "0.3", "-misset", "10", "20", "30",
              "-nonoise", "-floatfile", "f.bin"]


def _probe_files(kind: str, folder: Path, c_bin: str):
    """Input files some probes need."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kind == "hkl":
        lines = [f"{h} {k} {l} {10 + abs(h * 7 + k * 3 - l) % 50}" for h in range(-6, 7)
                 for k in range(-6, 7) for l in range(-6, 7)]
        (folder / "p1.hkl").write_text("\n".join(lines) + "\n")
    if kind == "hkl_sigma":
        lines = [f"{h} {k} {l} {10 + abs(h * 7 + k * 3 - l) % 50} 1.5" for h in range(-4, 5)
                 for k in range(-4, 5) for l in range(-4, 5)]
        (folder / "p1.hkl").write_text("\n".join(lines) + "\n")
    if kind == "fdump":
        _probe_files("hkl", folder, c_bin)
        subprocess.run([c_bin, *PROBE_BASE, "-hkl", "p1.hkl", "-nopgm", "-detpixels", "8"],
                       cwd=folder, capture_output=True, env=env)
        for f in ("p1.hkl", "f.bin", "intimage.img"):
            (folder / f).unlink(missing_ok=True)
    if kind == "src_1col":
        (folder / "src.txt").write_text("0.05\n-0.05\n")
    if kind == "src_nonl":
        (folder / "src.txt").write_text("-10 0.001 0 1\n-10 -0.002 0.001 1")
    if kind in ("img_long", "img_short"):
        extra = (["-twotheta", "-12.5", "-phi", "-120.25", "-osc", "0.25", "-distance", "123.4",
                  "-lambda", "0.97966"] if kind == "img_long" else
                 ["-twotheta", "5", "-phi", "12", "-osc", "0.5", "-distance", "150"])
        subprocess.run([c_bin, "-cell", "50", "50", "50", "90", "90", "90", "-default_F", "1",
                        "-nonoise", "-nopgm", "-detpixels", "64", "-pixel", "0.3", "-oversample", "1",
                        "-intfile", "hdr.img", *extra], cwd=folder, capture_output=True, env=env)


PROBES = [
    # (name, extra flags after the base, files, our extra args)
    ("nopolar+oversample_polar", ["-nopolar", "-oversample_polar"], None, []),
    ("custom: 2theta about the default axis", ["-fdet_vector", "0", "0", "1", "-twotheta", "10"],
     None, []),
    ("custom via -beam_vector: 2theta", ["-beam_vector", "1", "0", "0", "-twotheta", "5"], None, []),
    ("-fdet_vector then -mosflm", ["-fdet_vector", "0", "0", "1", "-mosflm"], None, []),
    ("-spindle_axis then -xds", ["-spindle_axis", "0", "1", "0", "-phi", "10", "-xds"], None, []),
    ("-polar_vector then -adxv", ["-polar_vector", "0", "0", "1", "-adxv"], None, []),
    ("-twotheta_axis then -dials", ["-twotheta_axis", "0", "0", "-1", "-twotheta", "10", "-dials"],
     None, []),
    ("-curved_det as last token", ["-curved_det"], None, []),
    ("-misset with two values at the end", ["-misset", "5", "5"], None, []),
    ("-pivot Beam (capital)", ["-pivot", "Beam"], None, []),
    ("-roi with three values at the end", ["-roi", "1", "20", "3"], None, []),
    ("SMV header over 512 bytes", ["-twotheta", "-12.5", "-phi", "-120.25", "-osc", "0.25",
                                   "-distance", "123.4", "-lambda", "0.97966", "-detpixels", "100",
                                   "-pixel", "0.172", "-oversample", "1"], None, []),
    ("-img of a C image whose header overflows", ["-img", "hdr.img"], "img_long", []),
    ("-img of a C image (twotheta, phi in header)", ["-img", "hdr.img"], "img_short", []),
    ("-N 5.7 / -Na 3.9", ["-N", "5.7", "-Na", "3.9"], None, []),
    ("partial -cell 50 60", ["-cell", "50", "60"], None, []),
    ("-misset_seed last (random misset kept)", ["-misset", "random", "-misset_seed", "5"], None, []),
    ("-misset_seed then 3 tokens", ["-misset", "random", "-misset_seed", "5", "-N", "4"], None, []),
    ("phi 0 with 3 steps, default phi mode (expected to differ)",
     ["-phi", "0", "-osc", "1", "-phisteps", "3"], None, []),
    ("phi 0 with 3 steps, c-parity", ["-phi", "0", "-osc", "1", "-phisteps", "3"], None,
     ["-phi_mode", "c-parity"]),
    ("osc/phistep ceil", ["-phi", "5", "-osc", "1", "-phistep", "0.1"], None, []),
    ("-phisteps 0 -dispsteps 0 -divsteps 0", ["-phisteps", "0", "-dispsteps", "0", "-divsteps", "0"],
     None, []),
    ("-mosaic_domains 1 with spread", ["-mosaic", "0.5", "-mosaic_domains", "1"], None, []),
    ("-oversample_omega -point_pixel overflow", ["-oversample_omega", "-point_pixel", "-mosaic", "1",
                                                 "-oversample", "2", "-divergence", "0.2",
                                                 "-dispersion", "4", "-N", "1"], None, []),
    ("-oversample_thick without thickness", ["-oversample_thick"], None, []),
    ("-interpolate without HKL", ["-interpolate"], None, []),
    ("HKL with a sigma column (deliberate difference)", ["-hkl", "p1.hkl", "-default_F", "0"],
     "hkl_sigma", []),
    ("Fdump.bin reuse without -hkl", ["-default_F", "0"], "fdump", []),
    ("source file without final newline (deliberate difference)", ["-sourcefile", "src.txt"],
     "src_nonl", []),
    ("zero phi steps (-osc 0 -phistep 0.1)", ["-osc", "0", "-phistep", "0.1"], None, []),
    ("-source_distance with a 1-column source file (XDS)",
     ["-xds", "-sourcefile", "src.txt", "-source_distance", "1000"], "src_1col", []),
    ("-lambda then -energy", ["-lambda", "1.5", "-energy", "10000"], None, []),
    ("-detector_abs 0 with thickness", ["-detector_thick", "200", "-detector_abs", "0"], None, []),
    ("-Xbeam then -xds", ["-Xbeam", "5", "-xds"], None, []),
    ("-roi single pixel", ["-roi", "30", "30", "31", "31"], None, []),
    ("-scale 0 -adc 0", ["-scale", "0", "-adc", "0"], None, []),
    ("-water with dmin and polar", ["-water", "100", "-dmin", "8", "-polar", "0.5"], None, []),
]


def run_probes(c_bin: str, log=print) -> list[dict]:
    out = []
    for name, extra, files, oa in PROBES:
        with tempfile.TemporaryDirectory() as tmp:
            if files:
                _probe_files(files, Path(tmp), c_bin)
            args = PROBE_BASE + extra
            r = c_compare.compare(args, folder=tmp, c_bin=c_bin, ours_args=oa, smv=True)
        m = r.get("float") or {}
        err = (r.get("ours_stderr_tail") or "").strip().splitlines()
        log(f"{r['status']:10s} {name:55s} corr {m.get('corr', float('nan')):.6f} "
            f"max_rel {m.get('max_rel', float('nan')):.2e} total {m.get('total_rel', float('nan')):.2e}"
            + (f"  | ours: {err[-1][:150]}" if r["status"] in ("ours_error", "both_error") and err
               else "") + ("  | " + "; ".join(r.get("why", []))[:200] if r["status"] == "fail" else "")
            + ("  | " + "; ".join(r.get("notes", []))[:200] if r.get("notes") else ""))
        r["probe"] = name
        out.append(r)
    return out


def write_summary(out: Path, results: list[dict]):
    by = {}
    for r in results:
        by.setdefault(r["status"], []).append(r)
    lines = ["# fuzz_parity summary", "",
             f"{len(results)} cases: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(by.items())), ""]
    tc = sum(r.get("c_seconds", 0) for r in results)
    to = sum(r.get("ours_seconds", 0) for r in results)
    lines.append(f"time: C {tc:.1f} s, ours {to:.1f} s in all")
    lines.append("")
    for status in ("fail", "ours_error", "c_error", "both_error"):
        if status not in by:
            continue
        lines.append(f"## {status} ({len(by[status])})")
        lines.append("")
        for r in sorted(by[status], key=lambda r: r["index"]):
            lines.append(f"### case {r['index']:04d}  tags: {' '.join(r.get('tags', []))}")
            lines.append("")
            lines.append("```")
            lines.append("nanoBragg " + r["command"])
            if r.get("ours_args"):
                lines.append("# ours also: " + " ".join(r["ours_args"]))
            lines.append("```")
            if "float" in r:
                m = r["float"]
                lines.append(f"corr {m['corr']:.8f}, max|diff|/max {m['max_rel']:.3e}, total rel "
                             f"{m['total_rel']:.3e}; sum C {m['sum_c']:.6g} ours {m['sum_ours']:.6g}")
            if r.get("why"):
                lines.append("why: " + "; ".join(r["why"]))
            if status in ("ours_error", "both_error"):
                lines.append("ours: " + r["ours_stderr_tail"].strip().splitlines()[-1][:300]
                             if r["ours_stderr_tail"].strip() else "ours: (no stderr)")
            if status in ("c_error", "both_error"):
                tail = r["c_stdout_tail"].strip().splitlines()
                lines.append("C: " + (tail[-1][:300] if tail else "(no output)"))
            lines.append("")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="number of random cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first case index (cases are seeded by index)")
    ap.add_argument("--out", default="fuzz_out")
    ap.add_argument("--c-bin", default=os.environ.get("NB_C_BIN"))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--replay", default=None, help="re-run the failures of an earlier --out folder")
    ap.add_argument("--keep-all", action="store_true", help="keep the input folders of passing cases")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--probes", action="store_true",
                    help="run the hand-written probes of parsing quirks instead of random cases")
    ap.add_argument("--minimize", default=None, metavar="CASE_DIR",
                    help="shrink the failing case in CASE_DIR (args.txt, ours_args.txt, inputs)")
    ap.add_argument("--avoid-known", action="store_true",
                    help="avoid the failure classes found so far (named convention after vector "
                         "flags, 2theta in CUSTOM without -twotheta_axis, -nopolar with "
                         "-oversample_polar, -curved_det as the last token, zero phi steps)")
    ap.add_argument("--mask-prob", type=float, default=0.07,
                    help="probability that a case reads an SMV mask/header file (-mask, -img)")
    ap.add_argument("--float32-prob", type=float, default=0.1,
                    help="probability that our side renders with -dtype float32")
    opts = ap.parse_args(argv)
    global AVOID_KNOWN, MASK_PROB, FLOAT32_PROB
    AVOID_KNOWN = opts.avoid_known
    MASK_PROB = opts.mask_prob
    FLOAT32_PROB = opts.float32_prob
    if not opts.c_bin:
        ap.error("set NB_C_BIN or pass --c-bin (a C nanoBragg built outside the repository)")
    if opts.probes:
        rs = run_probes(opts.c_bin)
        return 0 if all(r["status"] == "pass" for r in rs) else 1
    if opts.minimize:
        d = Path(opts.minimize)
        args = [t for t in (d / "args.txt").read_text().split("\n") if t.strip()]
        oa_file = d / "ours_args.txt"
        oa = oa_file.read_text().split() if oa_file.exists() else []
        with tempfile.TemporaryDirectory() as tmp:
            for p in d.iterdir():
                if p.is_file() and p.name not in ("spec.json", "args.txt", "ours_args.txt"):
                    shutil.copy2(p, Path(tmp) / p.name)
            small, r = minimize(Path(tmp), args, oa, opts.c_bin, smv=True)
        print("minimal: nanoBragg " + " ".join(shlex.quote(a) for a in small)
              + (f"   [ours: {' '.join(r['ours_args'])}]" if r.get("ours_args") else ""))
        print(c_compare.format_result(r))
        return 0
    out = Path(opts.out)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[int, dict, Path]] = []
    if opts.replay:
        src = Path(opts.replay)
        for line in (src / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["status"] == "pass":
                continue
            d = src / "cases" / f"{r['index']:04d}"
            spec = json.loads((d / "spec.json").read_text())
            # decide the phi mode again (headers of -mask/-img files count too)
            oa = list(spec["ours_args"])
            if "-phi_mode" in oa:
                k = oa.index("-phi_mode")
                oa = oa[:k] + oa[k + 2:]
            if needs_c_parity(spec["args"], d):
                oa = ["-phi_mode", "c-parity"] + oa
            spec["ours_args"] = oa
            dst = out / "cases" / f"{r['index']:04d}"
            if dst.resolve() != d.resolve():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(d, dst)
            jobs.append((r["index"], spec, dst))
    else:
        for idx in range(opts.start, opts.start + opts.n):
            rng = random.Random(opts.seed * 1_000_003 + idx)
            d = out / "cases" / f"{idx:04d}"
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            spec = gen_case(rng, d, opts.c_bin)
            (d / "spec.json").write_text(json.dumps(spec, indent=1))
            (d / "args.txt").write_text("\n".join(spec["args"]) + "\n")
            (d / "ours_args.txt").write_text(" ".join(spec["ours_args"]) + "\n")
            jobs.append((idx, spec, d))
    if opts.generate_only:
        for idx, spec, _ in jobs:
            print(f"{idx:04d} nanoBragg {' '.join(shlex.quote(a) for a in spec['args'])}"
                  + (f"   [ours: {' '.join(spec['ours_args'])}]" if spec["ours_args"] else ""))
        return 0

    results = []
    t0 = time.time()
    inputs = {}
    for idx, spec, d in jobs:
        # the run folder holds only the inputs (not spec.json/args.txt)
        inp = Path(tempfile.mkdtemp(prefix=f"fz{idx}_"))
        for p in d.iterdir():
            if p.name not in ("spec.json", "args.txt", "ours_args.txt"):
                shutil.copy2(p, inp / p.name)
        inputs[idx] = inp
    with open(out / "results.jsonl", "w") as fh, cf.ThreadPoolExecutor(opts.jobs) as ex:
        futs = {ex.submit(run_case, idx, spec, inputs[idx], opts.c_bin, opts.timeout): (idx, d)
                for idx, spec, d in jobs}
        for fut in cf.as_completed(futs):
            idx, d = futs[fut]
            try:
                r = fut.result()
            except Exception as exc:  # a bug of this script: record it
                r = {"index": idx, "status": "harness_error", "why": [repr(exc)], "command": "",
                     "args": []}
            results.append(r)
            fh.write(json.dumps(r, default=str) + "\n")
            fh.flush()
            shutil.rmtree(inputs[idx], ignore_errors=True)
            if r["status"] == "pass" and not opts.keep_all:
                shutil.rmtree(d, ignore_errors=True)
            m = r.get("float") or {}
            print(f"[{len(results)}/{len(jobs)} {time.time() - t0:6.0f}s] case {idx:04d} "
                  f"{r['status']:10s} corr {m.get('corr', float('nan')):.6f} "
                  f"max_rel {m.get('max_rel', float('nan')):.2e} "
                  f"total {m.get('total_rel', float('nan')):.2e}  "
                  f"C {r.get('c_seconds', 0):.2f}s ours {r.get('ours_seconds', 0):.2f}s", flush=True)
    results.sort(key=lambda r: r["index"])
    write_summary(out, results)
    npass = sum(r["status"] == "pass" for r in results)
    print(f"{npass}/{len(results)} passed; summary in {out / 'summary.md'}")
    return 0 if npass == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
