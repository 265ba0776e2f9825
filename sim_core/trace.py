"""Per-pixel traces in the layout of the C program's ``TRACE_C`` lines.

The engine renders a traced pixel with a :class:`~sim_core.engine.Recorder` attached: the same
code path as the image, which only keeps copies of the intermediate tensors. This module turns those
tensors into lines ``TRACE_PY: <key> <values>`` with the C trace's keys, units, order and repetition
(one block per thickness layer and subpixel, for the first source; rotated cell and Miller indices for
the first phi step and mosaic domain), then ``TRACE_PY_PHI`` lines for every phi step, then the final
scaling lines. Numbers use ``%.15g``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import physics
from .engine import Engine, Recorder, SequenceState, _NO_KEY

PREFIX = "TRACE_PY"
PHI_PREFIX = "TRACE_PY_PHI"


@dataclass
class TraceLine:
    key: str
    values: list
    occurrence: int = 0
    prefix: str = PREFIX

    def text(self) -> str:
        if self.prefix == PHI_PREFIX:
            return f"{self.prefix} " + " ".join(f"{k}={_fmt(v)}" for k, v in self.values)
        return f"{self.prefix}: {self.key} " + " ".join(_fmt(v) for v in self.values)


@dataclass
class PixelTrace:
    slow: int
    fast: int
    lines: list[TraceLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        head = f"TRACE_PY_CONFIG: tracing pixel (spixel={self.slow}, fpixel={self.fast})\n"
        return head + "".join(line.text() + "\n" for line in self.lines)

    @property
    def records(self) -> list[dict]:
        out = []
        for line in self.lines:
            if line.prefix == PHI_PREFIX:
                out.append({"prefix": line.prefix, "key": line.key, "occurrence": line.occurrence,
                            "values": {k: v for k, v in line.values}})
            else:
                out.append({"prefix": line.prefix, "key": line.key, "occurrence": line.occurrence,
                            "values": list(line.values)})
        return out

    def value(self, key: str, occurrence: int = 0):
        for line in self.lines:
            if line.key == key and line.occurrence == occurrence and line.prefix == PREFIX:
                return line.values if len(line.values) > 1 else line.values[0]
        raise KeyError(f"{key}[{occurrence}]")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    return "%.15g" % v


class _Lines:
    def __init__(self):
        self.lines: list[TraceLine] = []
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, key: str, *values, prefix: str = PREFIX):
        n = self.counts.get((prefix, key), 0)
        self.counts[(prefix, key)] = n + 1
        vals = []
        for v in values:
            if isinstance(v, torch.Tensor):
                vals.extend(float(x) for x in v.reshape(-1))
            else:
                vals.append(v)
        self.lines.append(TraceLine(key, vals, n, prefix))


def build_trace(engine: Engine, rec: Recorder, slow: int, fast: int, state: SequenceState,
                rank: int) -> PixelTrace:
    """Format the recorder of one pixel into a :class:`PixelTrace`."""
    exp = engine.exp
    out = _Lines()
    T, S, K = engine.T, engine.S, engine.K
    n_o = engine.n_orient
    M = exp.sampling.mosaic_domains
    pos = rec.cat("pos")[0]  # (L, 3)
    airpath = rec.cat("airpath")[0]
    diffracted = rec.cat("diffracted")[0]
    omega = rec.cat("omega")[0]
    incident = rec.cat("incident", 0)
    lam = rec.cat("lam", 0)
    q = rec.cat("q")[0]
    skip = rec.cat("skip")[0]
    hkl = _orient_cat(rec, "hkl", n_o)  # (L, 3, n_o)
    F_latt = _orient_cat(rec, "F_latt", n_o)
    F_cell = _orient_cat(rec, "F_cell", n_o)
    parts = {k: _orient_cat(rec, f"F_latt_{k}", n_o) for k in "abc"
             if any(f"F_latt_{k}" in b for b in rec.blocks)}
    h0 = _orient_cat(rec, "h0", n_o)
    k0 = _orient_cat(rec, "k0", n_o)
    l0 = _orient_cat(rec, "l0", n_o)
    det = exp.detector
    cr = exp.crystal
    cells = exp.cell_matrices
    fresh = exp.cell_matrices_fresh
    water = exp.config.background.water_um > 0
    ov_omega = engine.ov_omega
    omega_first = float(omega[0])
    close = float(det.close_distance)
    for t in range(T):
        for s in range(S):
            l = (t * S + s) * K  # first source
            out.add("pix0_vector_meters", det.pix0)
            out.add("fdet_vec", det.fdet)
            out.add("sdet_vec", det.sdet)
            out.add("pixel_pos_meters", pos[l])
            out.add("R_distance_meters", float(airpath[l]))
            out.add("omega_pixel_sr", float(omega[l]) if ov_omega else omega_first)
            out.add("close_distance_meters", close)
            out.add("obliquity_factor", close / float(airpath[l]))
            out.add("diffracted_vec", diffracted[l])
            out.add("incident_vec", incident[l])
            out.add("lambda_meters", float(lam[l]))
            out.add("lambda_angstroms", float(lam[l]) * 1e10)
            out.add("scattering_vec_A_inv", q[l])
            if bool(skip[l]):
                continue
            key = rank * engine.L + l
            use = fresh if (fresh is not None and key == state.first_loop) else cells
            out.add("rot_a_angstroms", use[0, 0] * 1e10)
            out.add("rot_b_angstroms", use[0, 1] * 1e10)
            out.add("rot_c_angstroms", use[0, 2] * 1e10)
            out.add("rot_a_star_A_inv", cr.a_star)
            out.add("rot_b_star_A_inv", cr.b_star)
            out.add("rot_c_star_A_inv", cr.c_star)
            out.add("hkl_frac", hkl[l, :, 0])
            out.add("hkl_rounded", int(h0[l, 0]), int(k0[l, 0]), int(l0[l, 0]))
            if exp.config.crystal.shape == "square":
                for name in "abc":
                    out.add(f"F_latt_{name}", float(parts[name][l, 0]) if name in parts else 1.0)
                out.add("F_latt", float(F_latt[l, 0]))
            if not (float(F_latt[l, 0]) == 0.0 and not water):
                out.add("F_cell", float(F_cell[l, 0]))
            for f, phi in enumerate(exp.scan.phi_values_rad):
                o = f * M
                fc = float(F_cell[l, o])
                fl = float(F_latt[l, o])
                out.add(f"phi_tic={f}", ("phi_tic", f), ("phi_deg", math.degrees(phi)),
                        ("h", float(hkl[l, 0, o])), ("k", float(hkl[l, 1, o])),
                        ("l", float(hkl[l, 2, o])), ("F_latt", fl), ("F_cell", fc),
                        ("I_term", fc * fc * fl * fl), prefix=PHI_PREFIX)
    px = rec.pixel
    I = float(px["I"][0])
    out.add("I_before_scaling", I)
    out.add("r_e_meters", math.sqrt(physics.R_E_SQR))
    out.add("r_e_sqr", physics.R_E_SQR)
    out.add("fluence_photons_per_m2", exp.beam.fluence)
    out.add("steps", int(exp.steps))
    out.add("oversample_thick", int(engine.ov_thick))
    out.add("oversample_polar", int(engine.ov_polar))
    out.add("oversample_omega", int(engine.ov_omega))
    out.add("capture_fraction", float((px["capture_last_loop"] if engine.ov_thick
                                       else px["capture_last"])[0]))
    if engine.nopolar:
        polar = 1.0
    else:
        polar = float((px["last_polar"] if engine.ov_polar else px["polar_first"])[0])
    out.add("polar", polar)
    out.add("omega_pixel", float((px["omega_last"] if ov_omega else px["omega_first"])[0]))
    last = engine.L - 1
    out.add("cos_2theta", float((incident[last] * diffracted[last]).sum()))
    result = float(px["result"][0])
    out.add("I_pixel_final", result)
    out.add("floatimage_accumulated", float(torch.tensor(result, dtype=torch.float32)))
    return PixelTrace(slow=slow, fast=fast, lines=out.lines)


def _orient_cat(rec: Recorder, name: str, n_o: int) -> torch.Tensor:
    """Stitch a per-orientation tensor (1, Lb, [3,] n_o_block) over blocks into (L, [3,] n_o)."""
    rows = []
    current = []
    for b in rec.blocks:
        if name not in b:
            continue
        if int(b["o0"]) == 0 and current:
            rows.append(torch.cat(current, -1))
            current = []
        current.append(b[name][0])
    if current:
        rows.append(torch.cat(current, -1))
    return torch.cat(rows, 0)


__all__ = ["PixelTrace", "TraceLine", "build_trace", "PREFIX", "PHI_PREFIX", "_NO_KEY"]
