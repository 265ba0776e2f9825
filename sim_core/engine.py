"""The render loop: pixels in chunks, every evaluation of a chunk as tensor arithmetic.

An evaluation is one (thickness layer, subpixel, source, phi step, mosaic domain) of one pixel; nanoBragg
runs them as nested loops in that order. Here a chunk holds P pixels; the first three loop levels are
flattened into a *loop* axis (``l = (t * S + s) * K + k``) and the last two into an *orientation* axis
(``o = f * M + m``). Everything that depends on the pixel and the loop (position, solid angle,
absorption, polarization, scattering vector q) is computed once per (pixel, loop); the Miller indices of
all orientations come from one matrix product of q with the stacked cell matrices; the lattice and
structure factors are elementwise; the sum runs over orientations, then loops.

Memory: a chunk is split into *blocks* (a contiguous range of loops, and of orientations when one loop
alone is too big) so that the working set stays under the memory budget whatever the counts.

Sequence-dependent behaviour of the C program is reproduced with global evaluation keys
``(pixel rank, loop, orientation)``:

* with any ``-oversample_thick/polar/omega`` flag the C program multiplies its running sum by the
  factor after every evaluation (``I = (I + term) * f``); blocks are processed in sequence order and
  carry that product;
* the tricubic interpolation turns itself off at the first out-of-range point (``interp_trigger``);
* in ``c-parity`` phi mode the very first loop of a render sees the unrotated cell at phi = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from . import physics
from .errors import RenderCancelled
from .experiment import Experiment
from .geometry.pixels import LoopGeometry, PixelFrame, loop_geometry
from . import kernels
from .runtime import apply_thread_policy, tune_allocator

ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]

_NO_KEY = (1 << 62)


@dataclass
class SequenceState:
    """Global positions of the C program's order-dependent events (``_NO_KEY`` when none)."""

    #: first evaluation whose tricubic neighbourhood leaves the HKL grid
    interp_trigger: int = _NO_KEY
    #: first loop (pixel rank * loops + loop) that is not skipped by dmin
    first_loop: int = _NO_KEY
    interp_resolved: bool = False
    first_loop_resolved: bool = False


@dataclass
class RenderStats:
    pixels: int = 0
    evaluations: int = 0
    chunks: int = 0
    chunk_pixels: int = 0
    blocks: int = 0
    sequence: SequenceState = field(default_factory=SequenceState)


class Recorder:
    """Collects the intermediate tensors of one traced pixel (the engine fills it)."""

    def __init__(self):
        self.blocks: list[dict[str, torch.Tensor]] = []
        self.pixel: dict[str, torch.Tensor] = {}

    def block(self, **tensors):
        self.blocks.append({k: v.detach().to("cpu", torch.float64) if v.is_floating_point()
                            else v.detach().cpu() for k, v in tensors.items()})

    def final(self, **tensors):
        for k, v in tensors.items():
            self.pixel[k] = v.detach().to("cpu", torch.float64)

    def cat(self, name: str, dim: int = 1) -> torch.Tensor:
        return torch.cat([b[name] for b in self.blocks if name in b], dim=dim)


class Engine:
    """Renders an :class:`Experiment` on one device in one dtype."""

    def __init__(self, exp: Experiment, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64, memory_budget_mb: int | None = None,
                 target_chunk_evals: int | None = None):
        self.exp = exp
        self.device = torch.device(device)
        self.dtype = dtype
        budget = memory_budget_mb or exp.config.run.memory_budget_mb
        self.budget_bytes = int(budget) * (1 << 20)
        if self.device.type == "cpu":
            tune_allocator()
        self._explicit_target = target_chunk_evals is not None
        if target_chunk_evals is None:
            target_chunk_evals = (1 << 24) if self.device.type == "cuda" else (1 << 18)
        self.target_chunk_evals = target_chunk_evals
        self._prepare()

    # -- setup ------------------------------------------------------------------------------------
    def _t(self, x, dtype=None) -> torch.Tensor:
        dtype = dtype or self.dtype
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=dtype)
        return torch.as_tensor(x, device=self.device, dtype=dtype)

    def _t64(self, x) -> torch.Tensor:
        return self._t(x, torch.float64)

    def _prepare(self):
        exp, det = self.exp, self.exp.detector
        cfg = exp.config
        self.F_pixels = det.fpixels
        self.O = exp.oversample
        self.S = self.O * self.O
        self.T = exp.thick_steps
        self.K = exp.beam.sources.count
        self.n_orient = exp.orientations
        self.L = self.T * self.S * self.K
        cfg_s = cfg.sampling
        self.cells = self._cell_rows(exp.cell_matrices)
        self.cells_fresh = (None if exp.cell_matrices_fresh is None
                            else self._cell_rows(exp.cell_matrices_fresh))
        cr = exp.crystal
        self.a_star = self._t(cr.a_star)
        self.b_star = self._t(cr.b_star)
        self.c_star = self._t(cr.c_star)
        self.Na, self.Nb, self.Nc = cr.Na, cr.Nb, cr.Nc
        self.shape_kind = cfg.crystal.shape
        self.fudge = cfg.crystal.fudge
        self.sf = exp.structure_factors.to(self.dtype, self.device)
        self.interpolate = exp.interpolate
        # -oversample_polar recomputes the factor for every subpixel even with -nopolar (C quirk)
        self.nopolar = cfg.beam.polarization_off and not cfg_s.oversample_polar
        self.dmin = cfg_s.dmin_A * 1e-10
        self.I_bg = exp.water_I_bg
        self.water = cfg.background.water_um > 0
        self.scale = physics.R_E_SQR * exp.beam.fluence / exp.steps
        self.ov_thick = cfg_s.oversample_thick
        self.ov_polar = cfg_s.oversample_polar
        self.ov_omega = cfg_s.oversample_omega
        self.recurrence = self.ov_thick or self.ov_polar or self.ov_omega
        # per-loop decomposition l -> (t, s, k) and subpixel offsets
        loops = torch.arange(self.L, device=self.device)
        self.loop_t = loops // (self.S * self.K)
        self.loop_s = (loops // self.K) % self.S
        thick = exp.sampling.thickness
        # the per-(pixel, loop) geometry is cheap next to the orientation work and runs in float64
        # whatever the render dtype: q = (d - incident) / lambda cancels near the direct beam, and
        # float32 there put h off by 1e-6 (visible in round crystals and flat images)
        g64 = self._t64
        self.frame = PixelFrame(
            pix0=g64(det.pix0), fdet=g64(det.fdet), sdet=g64(det.sdet),
            odet=g64(det.odet), beam=g64(exp.beam.direction), polar_axis=g64(exp.beam.polarization_vector),
            pixel_size=g64(det.pixel_size), distance=g64(det.distance),
            close_distance=g64(det.close_distance), incident=g64(exp.beam.sources.incident),
            lambdas=g64(exp.beam.sources.wavelengths), oversample=self.O,
            thick_step=thick.step, thick=thick.range, mu=exp.sampling.detector_mu,
            kahn=cfg.beam.polarization, nopolar=self.nopolar, dmin=self.dmin,
            curved=det.curved, point_pixel=det.point_pixel, oversample_thick=self.ov_thick,
            sub_f=(self.loop_s % self.O).to(torch.float64),
            sub_s=(self.loop_s // self.O).to(torch.float64),
            layer=self.loop_t.to(torch.float64), source=loops % self.K)
        #: the loop whose absorption the C program keeps: last layer, first subpixel, first source
        self._capture_loop = (self.T - 1) * self.S * self.K
        self._prepare_fused(cfg.run.compile)
        if self._fused is not None and not self._explicit_target:
            # one fused loop instead of ~30 passes over memory: bigger chunks pay (measured)
            self.target_chunk_evals = max(self.target_chunk_evals, 1 << 22)

    def _prepare_fused(self, mode: str):
        """Set up the fused kernel (sim_core.kernels) where the evaluations allow and it pays."""
        self._fused = self._fused_geometry = None
        plain = (self.shape_kind == "square" and not self.interpolate and not self.recurrence
                 and self.cells_fresh is None)
        kind = "constant" if self.sf.constant else "grid"
        if not plain or not kernels.wants_compile(mode, self.exp.evaluations, kind, self.dtype,
                                                  self.device):
            return
        self._fused_kind = kind
        self._fused = kernels.kernel(kind, compiled=True)
        if (self.device.type == "cpu" and kernels.compiled_geometry_fits(self.frame, self.L)
                and kernels.wants_compile(mode, self.exp.evaluations, "geometry", self.dtype,
                                          self.device)):
            self._fused_geometry = kernels.kernel("geometry", compiled=True)
        self._Nvec = self._t([float(self.Na), float(self.Nb), float(self.Nc)]).view(3, 1, 1)
        if self.sf.constant:
            self._fused_args = (self._Nvec, self._t(self.sf.default_F ** 2))
        else:
            Fp = self.sf.F_padded
            Hp, Kp, Lp = Fp.shape
            sf = self.sf
            self._fused_args = (
                self._Nvec, Fp.reshape(-1),
                self._t([sf.h_min - 1.0, sf.k_min - 1.0, sf.l_min - 1.0]).view(3, 1, 1),
                self._t([Hp - 1.0, Kp - 1.0, Lp - 1.0]).view(3, 1, 1),
                torch.tensor([Kp * Lp, Lp, 1], dtype=kernels.index_dtype(Fp.numel()),
                             device=self.device).view(3, 1, 1))

    def _fused_loop_geometry(self, pixels, loops) -> LoopGeometry:
        """The part of the geometry a fused render uses, from the compiled ``kernels.loop_terms``
        (the same float64 arithmetic in one loop)."""
        q, omega, capture, polar, skip = kernels.call(
            self._fused_geometry, "geometry", self.frame, pixels, self.F_pixels, loops, self.dtype)
        return LoopGeometry(pos=None, airpath=None, diffracted=None, omega=omega, capture=capture,
                            incident=None, lam=None, q=q, skip=skip, polar=polar)

    def _geometry(self, fp, sp, loops) -> LoopGeometry:
        """Per-(pixel, loop) geometry, computed in float64 and handed on in the render dtype."""
        g = loop_geometry(self.frame, fp, sp, loops)
        if self.dtype == torch.float64:
            return g
        c = lambda x: x.to(self.dtype)  # noqa: E731
        return LoopGeometry(pos=tuple(map(c, g.pos)), airpath=c(g.airpath),
                            diffracted=tuple(map(c, g.diffracted)), omega=c(g.omega),
                            capture=c(g.capture), incident=c(g.incident), lam=c(g.lam),
                            q=c(g.q), skip=g.skip, polar=c(g.polar))

    def _cell_rows(self, cells: torch.Tensor) -> torch.Tensor:
        """(n, 3, 3) cell matrices (rows a, b, c) -> (3, n, 3): [axis, orientation, xyz]."""
        return self._t(cells).permute(1, 0, 2).contiguous()

    def _cells_block(self, cells: torch.Tensor, o0: int, o1: int) -> torch.Tensor:
        """Rows (axis * n_o + o) of the orientations o0..o1, for ``block @ q`` -> (3 n_o, N)."""
        return cells[:, o0:o1, :].reshape(-1, 3)

    # -- sizing -----------------------------------------------------------------------------------
    def bytes_per_evaluation(self) -> int:
        item = torch.finfo(self.dtype).bits // 8
        per = 14 * item
        if self.sf.has_grid:
            per += 5 * 8
        if self.interpolate:
            per += 12 * item + 4 * 8
        if self.recurrence:
            per += 4 * item
        return per

    def plan(self, n_pixels: int) -> tuple[int, int, int]:
        """(pixels per chunk, loops per block, orientations per block) within the budget."""
        per_eval = self.bytes_per_evaluation()
        per_loop = 64 * (torch.finfo(self.dtype).bits // 8)
        max_evals = max(1, min(self.budget_bytes // per_eval, self.target_chunk_evals))
        n_o = self.n_orient
        if n_o > max_evals:
            return 1, 1, max(1, max_evals)
        loops_fit = max(1, max_evals // n_o)
        if self.L > loops_fit:
            return 1, loops_fit, n_o
        pixels = max(1, min(n_pixels, max_evals // (n_o * self.L),
                            self.budget_bytes // max(1, per_loop * self.L)))
        return pixels, self.L, n_o

    # -- orientation-level arithmetic (planar: h, k, l each (n_o, N)) ----------------------------
    def _lattice(self, hkl: torch.Tensor, *, need_rounded: bool, signed: bool):
        """F_latt (n_o, N) from Miller indices (3, n_o, N), plus what a trace prints.

        ``rounded`` (nanoBragg's nearest indices) is returned when asked for, for a shape other than
        the parallelepiped, or for a trace (``signed``: F_latt with the C program's sign and the
        per-axis factors).
        """
        h, k, l = hkl[0], hkl[1], hkl[2]
        rounded = None
        if need_rounded or signed or self.shape_kind != "square":
            rounded = (physics.nearest_index(h), physics.nearest_index(k), physics.nearest_index(l))
        parts = {}
        if self.shape_kind == "square":
            fast = not (torch.is_grad_enabled() and hkl.requires_grad) and not signed
            F_latt = None
            for i, (name, x, N) in enumerate((("a", h, self.Na), ("b", k, self.Nb),
                                              ("c", l, self.Nc))):
                if N <= 1:
                    continue
                if fast:
                    r = (physics.sincg_offset_(x - rounded[i], N) if rounded is not None
                         else physics.sincg_fractional_fast(x, N))
                else:
                    n = rounded[i] if rounded is not None else physics.nearest_index(x)
                    r = physics.sincg_fractional(x - n, N)
                    if signed:
                        r = r * physics.sincg_sign(n, N)
                        parts[name] = r
                if F_latt is None:
                    F_latt = r
                elif fast:
                    F_latt.mul_(r)
                else:
                    F_latt = F_latt * r
            if F_latt is None:
                F_latt = torch.ones_like(h)
            return F_latt, rounded, parts
        h0, k0, l0 = rounded
        dh, dk, dl = h - h0, k - k0, l - l0
        if self.shape_kind == "round":
            F_latt = physics.lattice_round(dh, dk, dl, self.Na, self.Nb, self.Nc, self.fudge)
        else:
            rad = physics.reciprocal_distance_sqr(dh, dk, dl, self.a_star, self.b_star, self.c_star,
                                                  self.Na, self.Nb, self.Nc)
            fn = physics.lattice_gauss if self.shape_kind == "gauss" else physics.lattice_tophat
            F_latt = fn(rad, self.Na, self.Nb, self.Nc, self.fudge)
        return F_latt, rounded, parts

    def _cell_factor(self, hkl, rounded, keys: Optional[torch.Tensor], state: SequenceState,
                     consume: bool = False):
        """F_cell (n_o, N): tricubic before the C program's fallback point, nearest node after.

        ``consume`` lets the lookup overwrite the rounded indices (when nothing else needs them).
        """
        if self.sf.constant:
            return None
        if not self.interpolate or keys is None:
            return self.sf.nearest(*rounded, consume=consume)
        nearest = self.sf.nearest(*rounded)
        tric = self.sf.tricubic(hkl[0], hkl[1], hkl[2])
        # the C program sets default_F at the trigger point, but then (interpolation now off)
        # immediately overwrites it with the nearest node: the trigger point gets nearest too
        return torch.where(keys < state.interp_trigger, tric, nearest)

    def _miller(self, cells, q, loop_keys, state, o0, o1):
        """h, k, l (3, n_o, N) of orientations o0..o1 for the scattering vectors q (3, N)."""
        hkl = (self._cells_block(cells, o0, o1) @ q).view(3, o1 - o0, -1)
        if self.cells_fresh is not None and state.first_loop != _NO_KEY:
            # c-parity: the first loop of the render sees the unrotated cell at phi == 0
            sel = (loop_keys == state.first_loop).reshape(-1)
            if bool(sel.any()):
                fresh = (self._cells_block(self.cells_fresh, o0, o1) @ q).view(3, o1 - o0, -1)
                hkl = torch.where(sel, fresh, hkl)
        return hkl

    # -- the chunk --------------------------------------------------------------------------------
    def render_chunk(self, pixels: torch.Tensor, ranks: torch.Tensor, state: SequenceState,
                     plan: tuple[int, int, int], recorder: Recorder | None = None,
                     stats: RenderStats | None = None) -> torch.Tensor:
        """Final intensities of ``pixels`` (linear indices; ``ranks`` = their render order)."""
        _, loops_per_block, o_per_block = plan
        P = pixels.shape[0]
        fused_geometry = (self._fused_geometry is not None and recorder is None and P > 1
                          and not (torch.is_grad_enabled() and self.frame.pix0.requires_grad))
        if not fused_geometry:
            fp = (pixels % self.F_pixels).to(torch.float64)
            sp = (pixels // self.F_pixels).to(torch.float64)
        I = torch.full((P,), self.I_bg, device=self.device, dtype=self.dtype)
        polar_first = torch.zeros(P, device=self.device, dtype=self.dtype)
        polar_found = torch.zeros(P, dtype=torch.bool, device=self.device)
        last_polar = polar_first
        omega_first = capture_last = omega_last = capture_last_loop = None
        need_keys = self.interpolate or self.cells_fresh is not None
        F2 = self.sf.default_F * self.sf.default_F
        for l0 in range(0, self.L, loops_per_block):
            loops = torch.arange(l0, min(self.L, l0 + loops_per_block), device=self.device)
            if fused_geometry:
                g = self._fused_loop_geometry(pixels, loops)
            else:
                g = self._geometry(fp, sp, loops)
            Lb = loops.shape[0]
            skip = g.skip
            # pixel-level factors with the C program's "first computed" / "last computed" values
            if l0 == 0:
                omega_first = g.omega[:, 0]
            if l0 <= self._capture_loop < l0 + Lb:
                capture_last = g.capture[:, self._capture_loop - l0]
            omega_last = g.omega[:, -1]
            capture_last_loop = g.capture[:, -1]
            if self.nopolar:
                polar_first = last_polar = g.polar[:, 0]
            elif self.dmin > 0:
                live = ~skip
                first_here = torch.argmax(live.to(torch.int8), dim=1)
                any_here = live.any(dim=1)
                take = any_here & ~polar_found
                polar_first = torch.where(take, g.polar.gather(1, first_here[:, None])[:, 0],
                                          polar_first)
                polar_found = polar_found | any_here
                last_live = Lb - 1 - torch.argmax(live.flip(1).to(torch.int8), dim=1)
                last_polar = torch.where(any_here, g.polar.gather(1, last_live[:, None])[:, 0],
                                         last_polar)
            else:
                if l0 == 0:
                    polar_first = g.polar[:, 0]
                last_polar = g.polar[:, -1]
            if self.recurrence:
                # the C program's running product: I = (I + term) * f after every evaluation
                f_loop = torch.ones_like(g.airpath)
                if self.ov_thick:
                    f_loop = f_loop * g.capture
                if self.ov_polar:
                    f_loop = f_loop * g.polar
                if self.ov_omega:
                    f_loop = f_loop * g.omega
            q = g.q.view(3, -1)
            loop_keys = (ranks[:, None] * self.L + loops[None, :]) if need_keys else None
            for o0 in range(0, self.n_orient, o_per_block):
                o1 = min(self.n_orient, o0 + o_per_block)
                if (self._fused is not None and recorder is None
                        and not (torch.is_grad_enabled() and q.requires_grad)):
                    part = kernels.call(self._fused, self._fused_kind, q,
                                        self._cells_block(self.cells, o0, o1), *self._fused_args)
                    part = part.view(P, Lb)
                    if self.dmin > 0:
                        part = torch.where(skip, torch.zeros_like(part), part)
                    I = I + part.sum(1)
                    if stats is not None:
                        stats.blocks += 1
                    continue
                hkl = self._miller(self.cells, q, loop_keys, state, o0, o1)
                keep_latt = self.recurrence or recorder is not None
                F_latt, rounded, parts = self._lattice(
                    hkl, need_rounded=not self.sf.constant, signed=recorder is not None)
                keys = None
                if self.interpolate:
                    keys = (loop_keys.reshape(1, -1) * self.n_orient
                            + torch.arange(o0, o1, device=self.device)[:, None])
                grad = torch.is_grad_enabled() and F_latt.requires_grad
                F_cell = self._cell_factor(hkl, rounded, keys, state,
                                           consume=recorder is None and not grad)
                if keep_latt or grad:
                    term = F_latt * F_latt
                    if F_cell is not None:
                        term = term * (F_cell * F_cell)
                else:
                    term = F_latt.square_()
                    if F_cell is not None:
                        term.mul_(F_cell.square_())
                if F_cell is None and F2 != 1.0:
                    term = term * F2
                if self.recurrence:
                    n_o = o1 - o0
                    dropped = skip.reshape(1, -1) | ((F_latt == 0) & (not self.water))
                    term = torch.where(dropped, torch.zeros_like(term), term)
                    gfac = torch.where(dropped, torch.ones_like(term),
                                       f_loop.reshape(1, -1).expand_as(term))
                    # evaluation order per pixel: (loop, orientation)
                    term = term.view(n_o, P, Lb).permute(1, 2, 0).reshape(P, -1)
                    gfac = gfac.view(n_o, P, Lb).permute(1, 2, 0).reshape(P, -1)
                    w = torch.flip(torch.cumprod(torch.flip(gfac, [1]), dim=1), [1])
                    # a zero stays zero even where the product of later factors overflows (the C
                    # program's sequential (I + 0) * f never forms 0 * inf)
                    zero = torch.zeros_like(w)
                    I = torch.where(I == 0, zero[:, 0], I * w[:, 0]) + torch.where(
                        term == 0, zero, term * w).sum(1)
                else:
                    part = term.sum(0).view(P, Lb)
                    if self.dmin > 0:
                        part = torch.where(skip, torch.zeros_like(part), part)
                    I = I + part.sum(1)
                if recorder is not None:
                    self._record(recorder, g, loops, o0, hkl, F_latt, F_cell, rounded, parts)
                if stats is not None:
                    stats.blocks += 1
        factor = torch.full_like(I, self.scale)
        if not self.ov_thick:
            factor = factor * (capture_last if capture_last is not None else 1.0)
        if not self.ov_polar:
            factor = factor * polar_first
        if not self.ov_omega:
            factor = factor * omega_first
        result = I * factor
        if recorder is not None:
            recorder.final(I=I, result=result, polar_first=polar_first, last_polar=last_polar,
                           omega_first=omega_first, omega_last=omega_last,
                           capture_last=capture_last if capture_last is not None
                           else torch.ones_like(I), capture_last_loop=capture_last_loop)
        return result

    def _record(self, recorder, g, loops, o0, hkl, F_latt, F_cell, rounded, parts):
        """Keep one pixel's tensors in (1, loop, [3,] orientation) layout for the trace."""
        def orient(x):  # (n_o, Lb) -> (1, Lb, n_o)
            return x.transpose(0, 1).unsqueeze(0)

        loop_data = {}
        if o0 == 0:
            loop_data = dict(
                pos=torch.stack(g.pos, -1), airpath=g.airpath,
                diffracted=torch.stack(g.diffracted, -1), omega=g.omega, capture=g.capture,
                incident=g.incident, lam=g.lam, q=g.q.permute(1, 2, 0), skip=g.skip,
                polar=g.polar)
        cell = F_cell if F_cell is not None else torch.full_like(F_latt, self.sf.default_F)
        recorder.block(loops=loops, o0=torch.tensor(o0), hkl=hkl.permute(2, 0, 1).unsqueeze(0),
                       F_latt=orient(F_latt), F_cell=orient(cell), h0=orient(rounded[0]),
                       k0=orient(rounded[1]), l0=orient(rounded[2]),
                       **{f"F_latt_{k}": orient(v) for k, v in parts.items()}, **loop_data)

    # -- sequence pre-passes ----------------------------------------------------------------------
    def _sequence_engine(self) -> "Engine":
        """The engine that decides order-dependent events: always a float64 one.

        Whether a point's tricubic neighbourhood leaves the grid, or a loop is cut by dmin, is a
        comparison of h, k, l or |q| with a boundary; float32 rounding can move the first such point
        of a render, and with it every pixel after it. So float32 renders take these decisions from
        a float64 twin.
        """
        if self.dtype == torch.float64:
            return self
        twin = getattr(self, "_twin", None)
        if twin is None:
            twin = self._twin = Engine(self.exp, device=self.device, dtype=torch.float64,
                                       memory_budget_mb=self.budget_bytes >> 20,
                                       target_chunk_evals=self.target_chunk_evals)
        return twin

    def resolve_sequence(self, pixels: torch.Tensor, ranks: torch.Tensor, state: SequenceState,
                         plan):
        """Find the order-dependent events among ``pixels`` (in rank order) not yet resolved."""
        if not self.interpolate and self.cells_fresh is None:
            return  # no order-dependent mode: nothing to find (and no float64 twin to build)
        eng = self._sequence_engine()
        if eng is not self:
            step = eng.plan(pixels.shape[0])[0]
            for i in range(0, pixels.shape[0], step):
                eng.resolve_sequence(pixels[i:i + step], ranks[i:i + step], state,
                                     eng.plan(step))
            return
        if self.cells_fresh is not None and not state.first_loop_resolved:
            _, loops_per_block, _ = plan
            fp = (pixels % self.F_pixels).to(torch.float64)
            sp = (pixels // self.F_pixels).to(torch.float64)
            for l0 in range(0, self.L, loops_per_block):
                loops = torch.arange(l0, min(self.L, l0 + loops_per_block), device=self.device)
                live = ~loop_geometry(self.frame, fp, sp, loops).skip
                if bool(live.any()):
                    keys = ranks[:, None] * self.L + loops[None, :]
                    cand = int(torch.where(live, keys, torch.full_like(keys, _NO_KEY)).min())
                    state.first_loop = min(state.first_loop, cand)
            if state.first_loop != _NO_KEY:
                state.first_loop_resolved = True
        if self.interpolate and not state.interp_resolved:
            trig = self._find_interp_trigger(pixels, ranks, state, plan)
            if trig != _NO_KEY:
                state.interp_trigger = trig
                state.interp_resolved = True

    def _find_interp_trigger(self, pixels, ranks, state, plan) -> int:
        _, loops_per_block, o_per_block = plan
        fp = (pixels % self.F_pixels).to(torch.float64)
        sp = (pixels // self.F_pixels).to(torch.float64)
        best = _NO_KEY
        for l0 in range(0, self.L, loops_per_block):
            loops = torch.arange(l0, min(self.L, l0 + loops_per_block), device=self.device)
            g = loop_geometry(self.frame, fp, sp, loops)
            q = g.q.view(3, -1)
            loop_keys = ranks[:, None] * self.L + loops[None, :]
            for o0 in range(0, self.n_orient, o_per_block):
                o1 = min(self.n_orient, o0 + o_per_block)
                hkl = self._miller(self.cells, q, loop_keys, state, o0, o1)
                out = self.sf.interpolation_out_of_range(hkl[0], hkl[1], hkl[2])
                out = out & ~g.skip.reshape(1, -1)
                if not self.water:
                    F_latt, _, _ = self._lattice(hkl, need_rounded=False, signed=False)
                    out = out & (F_latt != 0)
                if bool(out.any()):
                    keys = (loop_keys.reshape(1, -1) * self.n_orient
                            + torch.arange(o0, o1, device=self.device)[:, None])
                    cand = int(torch.where(out, keys, torch.full_like(keys, _NO_KEY)).min())
                    best = min(best, cand)
        return best

    # -- whole image ------------------------------------------------------------------------------
    def render(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
               *, pixel_subset: np.ndarray | None = None, state: SequenceState | None = None,
               recorders: dict[int, Recorder] | None = None) -> tuple[torch.Tensor, RenderStats]:
        """Render the image (slow, fast); returns it with the run statistics."""
        if self.device.type == "cpu":
            # nanobragg's and the server's choice from the idle cores
            apply_thread_policy(eager=self._fused is None)
        exp = self.exp
        order = exp.render_pixels()
        n = order.size
        stats = RenderStats(pixels=int(n), evaluations=int(n) * exp.evaluations_per_pixel)
        state = state or SequenceState()
        stats.sequence = state
        plan = self.plan(max(1, n))
        stats.chunk_pixels = plan[0]
        S, F = exp.shape
        if pixel_subset is not None:
            wanted = np.asarray(pixel_subset, dtype=np.int64)
            ranks_np = np.searchsorted(order, wanted)
            if np.any(ranks_np >= order.size) or np.any(order[np.minimum(ranks_np, order.size - 1)]
                                                         != wanted):
                raise ValueError("a requested pixel is outside the rendered region (ROI or mask)")
            # the order-dependent events can only come from earlier pixels: scan those first
            if (self.interpolate and not state.interp_resolved) or (
                    self.cells_fresh is not None and not state.first_loop_resolved):
                upto = int(ranks_np.max()) + 1 if ranks_np.size else 0
                self._scan_sequence(order[:upto], np.arange(upto), state, plan, cancel)
            order, ranks_all = wanted, ranks_np
        else:
            ranks_all = np.arange(n, dtype=np.int64)
        values = []
        idx_all = torch.as_tensor(order, device=self.device, dtype=torch.long)
        rk_all = torch.as_tensor(ranks_all, device=self.device, dtype=torch.long)
        chunk = plan[0] if pixel_subset is None else 1
        total = max(1, order.size)
        image = torch.zeros(S * F, device=self.device, dtype=self.dtype)
        # every pixel in order (no ROI, mask or subset): each chunk is a slice of the image
        whole = order.size == S * F and pixel_subset is None
        for start in range(0, order.size, chunk):
            if cancel is not None and cancel():
                raise RenderCancelled()
            pix = idx_all[start:start + chunk]
            rk = rk_all[start:start + chunk]
            if pixel_subset is None:
                self.resolve_sequence(pix, rk, state, plan)
            rec = None
            if recorders is not None:
                rec = recorders.get(int(pix[0])) if pix.shape[0] == 1 else None
            part = self.render_chunk(pix, rk, state, plan, rec, stats)
            if whole and not part.requires_grad:
                image[start:start + pix.shape[0]] = part
            else:
                values.append(part)
            stats.chunks += 1
            if progress is not None:
                progress(min(1.0, (start + pix.shape[0]) / total))
        if values:
            image = image.index_put((idx_all,), torch.cat(values))
        return image.view(S, F), stats

    def _scan_sequence(self, order, ranks, state, plan, cancel):
        chunk = plan[0]
        for start in range(0, order.size, chunk):
            if cancel is not None and cancel():
                raise RenderCancelled()
            pix = torch.as_tensor(order[start:start + chunk], device=self.device)
            rk = torch.as_tensor(ranks[start:start + chunk], device=self.device)
            self.resolve_sequence(pix, rk, state, plan)
            if ((not self.interpolate or state.interp_resolved)
                    and (self.cells_fresh is None or state.first_loop_resolved)):
                return
