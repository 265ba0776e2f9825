"""A fused kernel for the most common evaluations, compiled with ``torch.compile`` where it pays.

The eager engine spends most of its time moving whole (orientations x evaluations) slabs through
memory, about thirty times per evaluation. For the common case (a parallelepiped crystal, nearest-node
or constant structure factors, none of the order-dependent modes) this module states the same
arithmetic as one function that ``torch.compile`` turns into a single loop: Miller indices from q,
the three lattice factors, the structure factor lookup and the sum over orientations.

Compiling costs seconds (tens, the first time on a machine; Inductor caches the result on disk), so
it is used where that pays: long-lived processes (the job workers, ``nanobragg-server``) compile the
kernels once at start (``warm_up``; a worker does it in the background while it takes jobs) and then
use them for renders above ``COMPILE_MIN_EVALUATIONS``; a config can also ask for it outright
(``run.compile = "on"``, compiled on first use) or refuse it (``"off"``). ``BRAGG_COMPILE=off`` in
the environment turns it off everywhere.
When compilation is unavailable (no C++ compiler, an unsupported platform) the eager engine runs.
The results agree with the eager path to rounding (tests/sim_core/test_kernels.py).
"""

from __future__ import annotations

import logging
import math
import os
import threading

import torch

from .geometry.pixels import PixelFrame, loop_geometry, scattering_vector

log = logging.getLogger("sim_core.kernels")

#: smallest render (evaluations) for which "auto" compiles in a long-lived process
COMPILE_MIN_EVALUATIONS = 20_000_000

_lock = threading.Lock()
_compiled: dict[str, object] = {}
_failed = False
#: warm_up has ended (compiled, or given up)
_warm_done = False
#: (kind, dtype, device) combinations compiled by warm_up, which "auto" may use
_ready: set[tuple[str, str, str]] = set()


def state() -> str:
    """``off`` (BRAGG_COMPILE), ``compiling`` (a warm-up runs or has not run), ``ready`` or
    ``failed``: a worker reports it, since a compiling process takes a core for a while."""
    if disabled():
        return "off"
    if _failed:
        return "failed"
    return "ready" if _warm_done else "compiling"


def disabled() -> bool:
    return os.environ.get("BRAGG_COMPILE", "").lower() in ("0", "off", "no", "false")


def wants_compile(mode: str, evaluations: int, kind: str, dtype: torch.dtype,
                  device: torch.device) -> bool:
    if disabled() or mode == "off":
        return False
    if mode == "on":
        return True
    return (evaluations >= COMPILE_MIN_EVALUATIONS
            and (kind, str(dtype), torch.device(device).type) in _ready)


def _example(kind: str, dtype: torch.dtype, device) -> tuple:
    """Small inputs (no size 0 or 1, which compilation would specialise on) for a warm-up call."""
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(3, 1000, generator=g, dtype=torch.float64) * 2e9).to(dtype).to(device)
    cells = (torch.rand(21, 3, generator=g, dtype=torch.float64) * 1e-8).to(dtype).to(device)
    Nvec = torch.tensor([5.0, 1.0, 7.0], dtype=dtype, device=device).view(3, 1, 1)
    if kind == "constant":
        return q, cells, Nvec, torch.tensor(4.0, dtype=dtype, device=device)
    F = torch.rand(9 * 9 * 9, generator=g, dtype=torch.float64).to(dtype).to(device)
    lo = torch.tensor([-4.0, -4.0, -4.0], dtype=dtype, device=device).view(3, 1, 1)
    hi = torch.tensor([8.0, 8.0, 8.0], dtype=dtype, device=device).view(3, 1, 1)
    strides = torch.tensor([81, 9, 1], dtype=index_dtype(F.numel()), device=device).view(3, 1, 1)
    return q, cells, Nvec, F, lo, hi, strides


def index_dtype(grid_size: int) -> torch.dtype:
    """The dtype of the grid kernel's flat indices: int32 (a conversion the vector unit has) for
    every grid that fits, int64 beyond."""
    return torch.int32 if grid_size < 2 ** 31 else torch.int64


def warm_up(device="cpu", dtypes=(torch.float64, torch.float32)) -> float:
    """Compile every kernel for ``dtypes`` on ``device`` now; returns the seconds it took."""
    import time
    t0 = time.perf_counter()
    if disabled():
        return 0.0
    dev = torch.device(device)
    for kind in ("constant", "grid"):
        for dtype in dtypes:
            fn = kernel(kind, compiled=True)
            with torch.no_grad():
                call(fn, kind, *_example(kind, dtype, dev))
            if _failed:
                return time.perf_counter() - t0
            _ready.add((kind, str(dtype), dev.type))
    for dtype in dtypes if dev.type == "cpu" else ():  # a GPU's eager geometry is cheap
        with torch.no_grad():
            call(kernel("geometry", compiled=True), "geometry", *_example_geometry(dtype, dev))
        if _failed:
            return time.perf_counter() - t0
        _ready.add(("geometry", str(dtype), dev.type))
    global _warm_done
    _warm_done = True
    return time.perf_counter() - t0


def warm_up_in_background(device="cpu") -> threading.Thread:
    """``warm_up`` in a daemon thread, for a process that should not wait for it."""
    def run():
        try:
            log.info("compiled kernels ready after %.1f s", warm_up(device))
        except Exception as exc:  # pragma: no cover - platform dependent
            log.warning("kernel warm-up failed: %s", exc)

    t = threading.Thread(target=run, name="kernel-warm-up", daemon=True)
    t.start()
    return t


def _axes(q: torch.Tensor, cells: torch.Tensor) -> list[torch.Tensor]:
    """h, k, l, each (n_o, N), of q (3, N) in every orientation's cell (3 n_o, 3).

    Compiled: three products a component, which Inductor fuses into the kernel's loop (a matrix
    product is a call of its own and a pass through memory); eager: the engine's own matrix
    product, so that the eager form stays the engine's arithmetic to the last bit."""
    if torch.compiler.is_compiling():
        c = cells.view(3, -1, 3, 1)
        return [c[i, :, 0] * q[0] + c[i, :, 1] * q[1] + c[i, :, 2] * q[2] for i in range(3)]
    return list((cells @ q).view(3, -1, q.shape[1]).unbind(0))


#: sin(pi f) / f as a polynomial in f^2 on |f| <= 1/2 (least squares in relative error on
#: Chebyshev nodes): 5e-9 relative, 1.8e-7 (1.5 float32 units) evaluated in float32
_SINPI = (3.14159264, -5.16770968, 2.55006958, -0.59824123, 0.07755864)


def _sinpi(f: torch.Tensor) -> torch.Tensor:
    """sin(pi f) for |f| <= 1/2 in float32: five multiply-adds, no argument reduction."""
    u = f * f
    p = _SINPI[-1]
    for c in _SINPI[-2::-1]:
        p = p * u + c
    return f * p


def _lattice_ratio(f: torch.Tensor, N: torch.Tensor) -> torch.Tensor:
    """sin(pi N f) / sin(pi f) of the fraction f = h - n (|f| <= 1/2), N at f == 0, and 1 for an
    axis with N <= 1.

    In the compiled float32 kernel both sines come from ``_sinpi``: N f is brought back to
    [-1/2, 1/2] by its nearest integer m (sin(pi N f) = (-1)^m sin(pi (N f - m))). Vectorised
    library sines reduce any argument to a quarter period with extra precision, which costs more
    than the evaluation; here the reduction is one rounding and a subtraction (exact), and a
    float32 render's error stays that of its argument (N f, rounded once, as the library's pi N f
    was). heavy_mosaic_phi float32, kernel alone, AMD EPYC AVX2: 186 -> 238 M evaluations/s. In
    float64 and eager the library sine of the engine runs (every golden case where float64 is
    bit-identical to the C program stays so).
    """
    if torch.compiler.is_compiling() and f.dtype == torch.float32:
        t = f * N
        m = torch.round(t)
        sign = 1.0 - 2.0 * (m - 2.0 * torch.floor(m * 0.5))
        r = torch.where(f == 0, N, sign * _sinpi(t - m) / _sinpi(f))
    else:
        x = f * math.pi
        r = torch.where(x == 0, N, torch.sin(x * N) / torch.sin(x))
    return torch.where(N > 1, r, torch.ones_like(r))


def orientation_sum_constant(q: torch.Tensor, cells: torch.Tensor, Nvec: torch.Tensor,
                             F2: torch.Tensor) -> torch.Tensor:
    """sum over orientations of F^2 F_latt^2 with a constant F; q (3, N), cells (3 n_o, 3)."""
    lat = None
    for i, h in enumerate(_axes(q, cells)):
        r = _lattice_ratio(h - torch.round(h), Nvec[i])
        lat = r if lat is None else lat * r
    return (lat * lat * F2).sum(0)


def orientation_sum_grid(q: torch.Tensor, cells: torch.Tensor, Nvec: torch.Tensor,
                         F_flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         strides: torch.Tensor) -> torch.Tensor:
    """The same with F from the bordered HKL grid (``lo``: index of the border node, ``hi``: last
    index, ``strides``: of the flattened grid, in the index dtype; each (3, 1, 1))."""
    lat = idx = None
    for i, h in enumerate(_axes(q, cells)):
        n = torch.ceil(h - 0.5)
        r = _lattice_ratio(h - n, Nvec[i])
        j = torch.minimum(torch.clamp(n - lo[i], min=0), hi[i]).to(strides.dtype) * strides[i]
        lat = r if lat is None else lat * r
        idx = j if idx is None else idx + j
    F = F_flat[idx]
    return (lat * lat * (F * F)).sum(0)


#: Inductor's store-or-recompute thresholds, raised for the kernels: by default it stores h, k, l
#: (each reads six inputs, more than it lets one loop body accumulate) and the summand (more
#: operations than it inlines into a reduction) in buffers of their own, three passes through
#: memory; raised, a kernel is one loop (supervisor_full float32: 94 -> 197 M evaluations/s).
_INDUCTOR_OPTIONS = {"realize_cpu_acc_reads_threshold": 1000, "realize_acc_reads_threshold": 1000,
                     "realize_cpu_opcount_threshold": 10000, "realize_opcount_threshold": 10000,
                     "realize_reads_threshold": 1000}


def loop_terms(frame: PixelFrame, pixels: torch.Tensor, fpixels: int, loops: torch.Tensor,
               dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """What a fused render takes from the per-(pixel, loop) geometry (``loop_geometry``, float64):
    q, solid angle, capture fraction and polarization in the render dtype, and the dmin skips, of
    the pixels at linear indices ``pixels`` of a detector ``fpixels`` wide. Compiled, the eager
    geometry's thirty passes over memory become one loop (supervisor_full float32 render, AMD EPYC
    AVX2: 0.51 -> 0.33-0.40 s with the chunk size) with the same float64 arithmetic, but for the
    square root: the compiled one is correctly rounded (as the C program's); ATen's vectorised
    float64 sqrt is one unit off for a few percent of values, so float64 values can differ from
    the eager ones in their last bits (q by up to 6e-14 relative, where it cancels near the
    beam); cast to float32 they were the same on every golden case tried."""
    fp = (pixels % fpixels).to(torch.float64)
    sp = (pixels // fpixels).to(torch.float64)
    g = loop_geometry(frame, fp, sp, loops)
    # q from its parts in the render dtype: the float64 stack, realised and converted, was two
    # more passes over memory than the rest of the geometry together
    q = torch.stack([x.to(dtype) for x in scattering_vector(g.diffracted, g.incident.T, g.lam)])
    return q, g.omega.to(dtype), g.capture.to(dtype), g.polar.to(dtype), g.skip


def compiled_geometry_fits(frame: PixelFrame, loops: int) -> bool:
    """Whether the geometry compiled by ``warm_up`` serves this frame as it is, without compiling
    again: one loop a pixel (one subpixel, source and layer: on several, Inductor vectorises along
    the short loop axis and the compiled geometry was no faster than the eager one), a flat
    detector of real pixels, the unpolarized polarization factor, no dmin, no sensor thickness.
    (A chunk of one pixel takes the eager geometry too: a size of 1 is one the compiler
    specialises on; ``Engine.render_chunk`` decides that.)"""
    return (loops == 1  # (one subpixel, one source, one layer)
            and not frame.curved and not frame.point_pixel and not frame.nopolar
            and frame.kahn == 0.0 and frame.dmin == 0 and frame.thick == 0
            and not frame.oversample_thick)


def _example_geometry(dtype: torch.dtype, device) -> tuple:
    """A frame of the kind ``compiled_geometry_fits`` accepts, and pixels of it."""
    def t(*x):
        return torch.tensor(x, dtype=torch.float64, device=device)

    def zero():  # one tensor each: the compiled code guards on which inputs are the same object
        return torch.zeros(1, dtype=torch.float64, device=device)

    frame = PixelFrame(
        pix0=t(0.1, 0.05, -0.05), fdet=t(0.0, 0.0, 1.0), sdet=t(0.0, -1.0, 0.0),
        odet=t(1.0, 0.0, 0.0), beam=t(1.0, 0.0, 0.0), polar_axis=t(0.0, 0.0, 1.0),
        pixel_size=t(1e-4)[0], distance=t(0.1)[0], close_distance=t(0.1)[0],
        incident=t(-1.0, 0.0, 0.0).view(1, 3), lambdas=t(1e-10), oversample=1, thick_step=0.0,
        thick=0.0, mu=0.0, kahn=0.0, nopolar=False, dmin=0.0, curved=False, point_pixel=False,
        oversample_thick=False, sub_f=zero(), sub_s=zero(), layer=zero(),
        source=torch.zeros(1, dtype=torch.int64, device=device))
    # as many pixels as a chunk holds: Inductor decides from this size whether its loops run in
    # parallel (with 1,000 the geometry ran on one thread)
    pixels = torch.arange(1 << 18, device=device)
    return frame, pixels, 512, torch.arange(1, device=device), dtype


_EAGER = {"constant": orientation_sum_constant, "grid": orientation_sum_grid,
          "geometry": loop_terms}


def kernel(kind: str, compiled: bool):
    """The kernel ``kind`` ("constant" or "grid"), compiled when asked and possible."""
    global _failed
    if not compiled or _failed:
        return _EAGER[kind]
    with _lock:
        fn = _compiled.get(kind)
        if fn is None:
            try:
                fn = torch.compile(_EAGER[kind], dynamic=True, fullgraph=True,
                                   options=_INDUCTOR_OPTIONS)
            except Exception as exc:  # pragma: no cover - platform dependent
                log.warning("torch.compile unavailable (%s); using the eager engine", exc)
                _failed = True
                return _EAGER[kind]
            _compiled[kind] = fn
    return fn


def call(fn, kind: str, *args):
    """Run ``fn``; if a compiled kernel fails to build, fall back to the eager one for good.

    Always without autograd (the engine fuses only renders that need no gradient): the warm-up
    compiles in that mode, and a render in another would recompile on its first chunk (a guard on
    the grad mode), seconds that the first served command of each kind and dtype paid.
    """
    global _failed
    try:
        with torch.no_grad():
            return fn(*args)
    except Exception as exc:
        if fn is _EAGER[kind]:
            raise
        log.warning("compiled kernel failed (%s); using the eager engine from now on", exc)
        _failed = True
        with torch.no_grad():
            return _EAGER[kind](*args)
