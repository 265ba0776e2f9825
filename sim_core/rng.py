"""The random number generators of the C nanoBragg, reproduced to the last bit.

nanoBragg draws every random number from the Numerical Recipes ``ran1`` generator (Park-Miller
"minimal standard" with a Bays-Durham shuffle table) and builds its Gaussian (``gaussdev``) and
Poisson (``poidev``) deviates on top of it. Matching the C output bit for bit needs three things that
this module models explicitly:

* **Process-wide state.** ``ran1`` keeps its shuffle table (``iy``, ``iv[32]``) in static variables,
  and ``gaussdev`` / ``poidev`` keep a spare deviate and cached constants the same way. One
  :class:`CRandom` object stands for one C process: every seed that the C program uses draws from the
  *same* table. The C program uses, in order, the misset seed (``-misset random``), the mosaic seed
  (mosaic domains) and the noise seed (``-seed``).
* **Seed cells.** Each C seed is a ``long`` passed by pointer and updated on every draw. A
  :class:`SeedCell` is that mutable ``long``. A cell holding a value ``<= 0`` re-initialises the shared
  table on its next draw (and then holds a positive value); a positive cell continues the shared table.
  The C command line stores user seeds negated: ``-seed 12345`` is ``idum = -12345``
  (:meth:`SeedCell.from_user_seed`); the default mosaic seed is ``-12345678``
  (:data:`DEFAULT_MOSAIC_IDUM`). A *positive* ``idum`` met before the table has ever been filled is
  replaced by 1, as in C.
* **Single precision.** ``ran1``, ``gaussdev``, ``poidev`` and ``gammln`` return ``float`` and keep
  several intermediates in ``float`` while libm calls work in ``double``. The kernels below round to
  ``numpy.float32`` exactly where the C code holds a ``float``.

The kernels are compiled with numba when it can be imported; otherwise the very same functions run as
plain Python (slowly, but with identical results). The noise image loop lives here too, next to the
generator it drives, so that numba's on-disk cache of the compiled loop is invalidated whenever the
generator changes (numba only tracks the source file of the function it caches).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

try:  # pragma: no cover - exercised by the fallback test in a subprocess
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

#: True when the kernels are compiled by numba; False when they run as plain Python.
NUMBA_AVAILABLE: bool = _numba is not None


def _jit(func: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``func`` with numba (cached on disk) or return it unchanged without numba."""
    if _numba is None:
        return func
    return _numba.njit(cache=True)(func)


# --- constants of ran1 (Numerical Recipes, 2nd edition) ---------------------------------------
_IA = 16807
_IM = 2147483647
_AM = 1.0 / _IM
_IQ = 127773
_IR = 2836
_NTAB = 32
_NDIV = 1 + (_IM - 1) // _NTAB
#: largest value ran1 returns, compared in double, returned as float
_RNMX_D = 1.0 - 1.2e-7
_RNMX_F = np.float32(_RNMX_D)

# gammln's Lanczos coefficients
_COF = (76.18009172947146, -86.50532032941677, 24.01409824083091,
        -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5)

# layout of the integer state vector: [iy, iv[0..31], gaussdev's iset]
_IY = 0
_IV = 1
_ISET = _IV + _NTAB
_ISTATE_LEN = _ISET + 1
# layout of the float32 state vector: gaussdev's gset, poidev's oldm, g, sq, alxm
_GSET, _OLDM, _G, _SQ, _ALXM = 0, 1, 2, 3, 4
_FSTATE_LEN = 5

#: nanoBragg's default ``mosaic_seed`` as stored in C (already negated)
DEFAULT_MOSAIC_IDUM = -12345678

_F32 = np.float32
_F64 = np.float64


# --- kernels ------------------------------------------------------------------------------------
# Arguments: ``cell`` is the seed (an int64 array of length 1), ``istate``/``fstate`` the shared
# static state of one CRandom. Every float32 rounding below mirrors a C ``float`` variable.

@_jit
def _ran1(cell, istate):
    idum = cell[0]
    if idum <= 0 or istate[_IY] == 0:
        # (re)load the shuffle table; a zero or positive first seed becomes 1
        if -idum < 1:
            idum = 1
        else:
            idum = -idum
        for j in range(_NTAB + 7, -1, -1):
            k = idum // _IQ
            idum = _IA * (idum - k * _IQ) - _IR * k
            if idum < 0:
                idum += _IM
            if j < _NTAB:
                istate[_IV + j] = idum
        istate[_IY] = istate[_IV]
    k = idum // _IQ
    idum = _IA * (idum - k * _IQ) - _IR * k
    if idum < 0:
        idum += _IM
    j = istate[_IY] // _NDIV
    istate[_IY] = istate[_IV + j]
    istate[_IV + j] = idum
    cell[0] = idum
    temp = _F32(_AM * istate[_IY])
    if _F64(temp) > _RNMX_D:
        return _RNMX_F
    return temp


@_jit
def _gammln(xx):
    x = _F64(xx)
    y = x
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    ser = 1.000000000190015
    for j in range(6):
        y += 1.0
        ser += _COF[j] / y
    return _F32(-tmp + math.log(2.5066282746310005 * ser / x))


@_jit
def _gaussdev(cell, istate, fstate):
    if istate[_ISET] != 0:
        istate[_ISET] = 0
        return fstate[_GSET]
    while True:
        v1 = _F32(2.0 * _F64(_ran1(cell, istate)) - 1.0)
        v2 = _F32(2.0 * _F64(_ran1(cell, istate)) - 1.0)
        rsq = _F32(v1 * v1 + v2 * v2)
        if not (rsq >= 1.0 or rsq == 0.0):
            break
    rsq64 = _F64(rsq)
    fac = _F32(math.sqrt(-2.0 * math.log(rsq64) / rsq64))
    fstate[_GSET] = _F32(v1 * fac)
    istate[_ISET] = 1
    return _F32(v2 * fac)


@_jit
def _poidev(xm, cell, istate, fstate):
    xm = _F32(xm)
    xm64 = _F64(xm)
    if xm64 > 1.0e6:
        # Gaussian approximation; the sum is formed in double and returned as float
        return _F32(xm64 + math.sqrt(xm64) * _F64(_gaussdev(cell, istate, fstate)))
    if xm64 < 12.0:
        # direct method: multiply uniform deviates until the product drops below exp(-xm)
        if xm != fstate[_OLDM]:
            fstate[_OLDM] = xm
            fstate[_G] = _F32(math.exp(-xm64))
        g = fstate[_G]
        em = _F32(-1.0)
        t = _F32(1.0)
        while True:
            em = _F32(em + _F32(1.0))
            t = _F32(t * _ran1(cell, istate))
            if not (t > g):
                break
        return em
    # rejection method with a Lorentzian comparison function
    if xm != fstate[_OLDM]:
        fstate[_OLDM] = xm
        fstate[_SQ] = _F32(math.sqrt(2.0 * xm64))
        fstate[_ALXM] = _F32(math.log(xm64))
        fstate[_G] = _F32(_F32(xm * fstate[_ALXM]) - _gammln(_F32(xm64 + 1.0)))
    sq = fstate[_SQ]
    alxm = fstate[_ALXM]
    g = fstate[_G]
    while True:
        while True:
            y = _F32(math.tan(math.pi * _F64(_ran1(cell, istate))))
            em = _F32(_F32(sq * y) + xm)
            if not (em < 0.0):
                break
        em = _F32(np.floor(_F64(em)))
        expo = _F32(_F32(_F32(em * alxm) - _gammln(_F32(_F64(em) + 1.0))) - g)
        t = _F32(0.9 * (1.0 + _F64(_F32(y * y))) * math.exp(_F64(expo)))
        if not (_F64(_ran1(cell, istate)) > _F64(t)):
            break
    return em


@_jit
def _fill_poisson(image, out, xmin, xmax, ymin, ymax, adc_offset, cell, istate, fstate):
    """The noise loop of nanoBragg's main(): row-major, ROI inclusive, C casts to unsigned short.

    Returns (photons, overloads). Pixels outside the ROI are not touched.
    """
    photons = 0.0
    overloads = 0
    nslow, nfast = image.shape
    for s in range(nslow):
        if s < ymin or s > ymax:
            continue
        for f in range(nfast):
            if f < xmin or f > xmax:
                continue
            test = _F64(_poidev(image[s, f], cell, istate, fstate))
            photons += test
            test += adc_offset
            if test > 65535.0:
                test = 65535.0
                overloads += 1
            if test != test or test <= -2147483649.0:
                # x86 turns NaN and out-of-range values into 0x80000000, whose low 16 bits are 0
                out[s, f] = 0
            else:
                # C truncates toward zero; a negative value (negative ADC offset) wraps as on x86
                out[s, f] = np.uint16(np.int64(test) & 0xFFFF)
    return photons, overloads


# --- Python-facing objects ----------------------------------------------------------------------

class SeedCell:
    """One C ``long idum`` seed variable, updated in place by every draw.

    ``SeedCell(-12345)`` holds the value the C program stores for ``-seed 12345``.
    """

    __slots__ = ("array",)

    def __init__(self, idum: int):
        #: the value as a length-1 int64 array, shared with the compiled kernels
        self.array = np.array([int(idum)], dtype=np.int64)

    @classmethod
    def from_user_seed(cls, seed: int) -> "SeedCell":
        """The cell for a command-line seed: nanoBragg stores ``-seed N`` as ``idum = -N``."""
        return cls(-int(seed))

    @property
    def value(self) -> int:
        """The current C value of the seed."""
        return int(self.array[0])

    @value.setter
    def value(self, idum: int) -> None:
        self.array[0] = int(idum)

    def __repr__(self) -> str:
        return f"SeedCell({self.value})"


class CRandom:
    """The static state of nanoBragg's generators in one C process.

    Holds ``ran1``'s shuffle table (``iy``, ``iv``), ``gaussdev``'s spare deviate (``iset``, ``gset``)
    and ``poidev``'s cache (``oldm``, ``g``, ``sq``, ``alxm``). Not thread-safe: like the C statics it
    must be used by one thread at a time.
    """

    def __init__(self) -> None:
        #: int64 ``[iy, iv[0..31], iset]``
        self.istate = np.zeros(_ISTATE_LEN, dtype=np.int64)
        #: float32 ``[gset, oldm, g, sq, alxm]``
        self.fstate = np.zeros(_FSTATE_LEN, dtype=np.float32)
        self.fstate[_OLDM] = -1.0

    @property
    def iy(self) -> int:
        """``ran1``'s last table output (0 before the table was first loaded)."""
        return int(self.istate[_IY])

    @property
    def iv(self) -> np.ndarray:
        """A copy of ``ran1``'s 32-entry shuffle table."""
        return self.istate[_IV:_IV + _NTAB].copy()

    def ran1(self, seed: SeedCell) -> float:
        """A uniform deviate in (0, 1), a float32 value, drawn with ``seed``."""
        return float(_ran1(seed.array, self.istate))

    def gaussdev(self, seed: SeedCell) -> float:
        """A normal deviate (mean 0, rms 1), a float32 value; every second call uses the spare."""
        return float(_gaussdev(seed.array, self.istate, self.fstate))

    def poidev(self, mean: float, seed: SeedCell) -> float:
        """A Poisson deviate of the float32-rounded ``mean`` (Gaussian above 1e6), a float32 value."""
        return float(_poidev(np.float32(mean), seed.array, self.istate, self.fstate))


def gammln(x: float) -> float:
    """ln Gamma(x) as nanoBragg's float ``gammln`` computes it (float argument and result)."""
    return float(_gammln(np.float32(x)))


# --- orientations -------------------------------------------------------------------------------

def mosaic_rotation_umat(mosaicity: float, rng: CRandom, seed: SeedCell) -> np.ndarray:
    """A random rotation on a spherical cap, as nanoBragg's ``mosaic_rotation_umat``.

    Three draws of ``ran1`` pick a uniformly distributed axis and an angle
    ``mosaicity * (1 - r3**2) ** (1/3)`` (radians). The C function takes ``mosaicity`` as a
    ``float`` and uses ``powf``, so the angle is a float32 value; the rest is double precision.

    Returns the 3x3 float64 matrix ``U`` (row-major as C's ``umat[9]``); a vector rotates as ``U @ v``.
    """
    r1 = 2.0 * rng.ran1(seed) - 1.0
    r2 = 2.0 * rng.ran1(seed) - 1.0
    r3 = 2.0 * rng.ran1(seed) - 1.0

    xyrad = math.sqrt(1.0 - r2 * r2)
    # float * powf(float, float). Keep these numpy *scalars*: scalar float32 ``**`` calls the C
    # library's powf, whereas numpy's vectorised float32 power differs from it in the last bit.
    rot = float(np.float32(mosaicity) * (np.float32(1.0 - r3 * r3) ** np.float32(1.0 / 3.0)))

    v1 = xyrad * math.sin(math.pi * r1)
    v2 = xyrad * math.cos(math.pi * r1)
    v3 = r2

    # axis-angle (Rodrigues) matrix, with the products grouped as the C code groups them
    c = math.cos(rot)
    omc = 1.0 - c
    s = math.sin(rot)
    omc_v1 = omc * v1
    omc_v1_v2 = omc_v1 * v2
    omc_v1_v3 = omc_v1 * v3
    omc_v2_v3 = omc * v2 * v3
    return np.array([
        [c + omc * (v1 * v1), omc_v1_v2 - s * v3, omc_v1_v3 + s * v2],
        [omc_v1_v2 + s * v3, c + omc * (v2 * v2), omc_v2_v3 - s * v1],
        [omc_v1_v3 - s * v2, omc_v2_v3 + s * v1, c + omc * (v3 * v3)],
    ], dtype=np.float64)


def _norm3(v: list[float]) -> float:
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def _cross_unit(a: list[float], b: list[float]) -> list[float]:
    out = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    m = _norm3(out)
    if m > 0:
        out = [x / m for x in out]
    return out


def umat2misset(umat: np.ndarray) -> tuple[float, float, float]:
    """The missetting angles (rotx, roty, rotz), radians, of a rotation matrix, as nanoBragg's
    ``umat2misset``.

    The rows are normalised; a zero row is rebuilt from the cross product of the other two (twice,
    then the rows are normalised again). The angles satisfy ``U = Rz(rotz) @ Ry(roty) @ Rx(rotx)``
    except in gimbal lock (``|U[2,0]| >= 1``), where nanoBragg returns ``(pi, pi/2, atan2(U[0,1],
    -U[1,1]))``.
    """
    u = np.asarray(umat, dtype=np.float64).reshape(3, 3)
    rows = [[float(x) for x in u[i]] for i in range(3)]
    norms = [_norm3(r) for r in rows]
    rows = [[x / m for x in r] if m > 0 else r for r, m in zip(rows, norms)]
    mx, my, mz = norms
    ex, ey, ez = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    # two (or three) empty rows: fall back to the identity for them (mx >= 0 always holds)
    if my <= 0 and mz <= 0:
        rows[1], rows[2] = list(ey), list(ez)
    if mx <= 0 and mz <= 0:
        rows[0], rows[2] = list(ex), list(ez)
    if mx <= 0 and my <= 0:
        rows[0], rows[1] = list(ex), list(ey)
    for _ in range(2):
        xcy = _cross_unit(rows[0], rows[1])
        ycz = _cross_unit(rows[1], rows[2])
        zcx = _cross_unit(rows[2], rows[0])
        if mx <= 0:
            rows[0] = ycz
        if my <= 0:
            rows[1] = zcx
        if mz <= 0:
            rows[2] = xcy
    rows = [[x / m for x in r] if (m := _norm3(r)) > 0 else r for r in rows]
    (uxx, uxy, _uxz), (uyx, uyy, _uyz), (uzx, uzy, uzz) = rows
    if uzx * uzx < 1.0:
        rotx = math.atan2(uzy, uzz)
        roty = math.atan2(-uzx, math.sqrt(uzy * uzy + uzz * uzz))
        rotz = math.atan2(uyx, uxx)
    else:
        rotx = math.atan2(1, 1) * 4
        roty = math.atan2(1, 1) * 2
        rotz = math.atan2(uxy, -uyy)
    return rotx, roty, rotz


def random_misset(rng: CRandom, seed: SeedCell) -> tuple[float, float, float]:
    """What ``-misset random`` does: a random orientation turned into missetting angles (radians).

    nanoBragg calls ``mosaic_rotation_umat(90.0, ...)``: the cap "diameter" 90 is used as an angle
    in *radians*, so the rotation angle is ``90 * (1 - r3**2) ** (1/3)`` radians, not at most 90 deg.
    """
    return umat2misset(mosaic_rotation_umat(90.0, rng, seed))


def mosaic_umats(spread_rad: float, domains: int, rng: CRandom, seed: SeedCell) -> np.ndarray:
    """The mosaic domain rotations of nanoBragg's main(), shape ``(domains, 3, 3)``.

    Every domain draws a rotation with ``spread_rad`` (radians); the first one is then replaced by the
    identity, but its three draws still advance the generator.
    """
    if domains < 0:
        raise ValueError(f"domains must be >= 0, got {domains}")
    out = np.empty((domains, 3, 3), dtype=np.float64)
    for i in range(domains):
        out[i] = mosaic_rotation_umat(spread_rad, rng, seed)
        if i == 0:
            out[0] = np.eye(3)
    return out


__all__ = [
    "CRandom", "SeedCell", "DEFAULT_MOSAIC_IDUM", "NUMBA_AVAILABLE", "gammln",
    "mosaic_rotation_umat", "umat2misset", "random_misset", "mosaic_umats",
]
