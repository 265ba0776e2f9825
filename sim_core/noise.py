"""Poisson counting noise on a rendered image, exactly as nanoBragg writes its ``-noisefile``.

The C program walks the float image row by row (slow index major), skips pixels outside the region of
interest (they stay 0), draws ``poidev(pixel)`` with the noise seed, adds the ADC offset, clamps at
65535 (counting overloads) and truncates to ``unsigned short``. The generator loop is compiled with
numba (see :mod:`sim_core.rng`); the same code runs as plain Python when numba is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import rng as _rng
from .rng import CRandom, SeedCell

#: (xmin, xmax, ymin, ymax): fast (x) and slow (y) pixel bounds, both ends included
Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class NoiseResult:
    """The noise image and the numbers nanoBragg prints about it."""

    #: uint16 image, shape (slow, fast); pixels outside the ROI are 0
    image: np.ndarray
    #: sum of the Poisson deviates before the ADC offset ("photons on noise image")
    photons: float
    #: pixels clamped at 65535
    overloads: int


def full_roi(shape: tuple[int, int]) -> Roi:
    """The ROI covering a whole (slow, fast) image."""
    nslow, nfast = shape
    return (0, nfast - 1, 0, nslow - 1)


def poisson_noise(float_image: np.ndarray, seed: int | SeedCell, *, adc_offset: float = 40.0,
                  roi: Optional[Roi] = None, rng: Optional[CRandom] = None) -> NoiseResult:
    """Draw nanoBragg's noise image from a float image.

    Args:
        float_image: photons per pixel, shape (slow, fast). It is rounded to float32 first, as the
            C program holds its image in ``float``.
        seed: the ``-seed`` value of the command line (stored negated, i.e. ``idum = -seed``), or a
            :class:`~sim_core.rng.SeedCell` to continue from; a cell is updated in place.
        adc_offset: added to every drawn count (``-adc``).
        roi: inclusive (xmin, xmax, ymin, ymax) bounds on the fast and slow indices, or None for the
            whole image. Bounds past the image edge are allowed, as in C.
        rng: the process-wide generator state to use (and advance); a fresh one when None. A fresh one
            gives the C result whenever ``-seed`` is >= 0 (``idum <= 0``), since such a seed reloads
            the shuffle table. A negative ``-seed`` continues the table that the C program's mosaic
            domains (always generated before the noise) left behind: pass that ``CRandom``.

    Returns:
        The uint16 image, the photon sum and the overload count.
    """
    image = np.ascontiguousarray(float_image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"float_image must be 2-D (slow, fast), got shape {image.shape}")
    cell = seed if isinstance(seed, SeedCell) else SeedCell.from_user_seed(seed)
    state = rng if rng is not None else CRandom()
    xmin, xmax, ymin, ymax = (int(v) for v in (roi if roi is not None else full_roi(image.shape)))
    out = np.zeros(image.shape, dtype=np.uint16)
    photons, overloads = _rng._fill_poisson(image, out, xmin, xmax, ymin, ymax, float(adc_offset),
                                            cell.array, state.istate, state.fstate)
    return NoiseResult(image=out, photons=float(photons), overloads=int(overloads))


__all__ = ["NoiseResult", "Roi", "full_roi", "poisson_noise"]
