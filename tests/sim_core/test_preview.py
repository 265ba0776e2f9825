"""The preview of a sparse diffraction image shows its spots: rendered, reduced, counted."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sim_core.io.png import PREVIEW_MAX, preview_factor, preview_pixels
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import simulate

# sharp spots (N = 20) of a small cell on a detector larger than the preview (1.7 s on a laptop)
SPARSE = ("-cell 60 70 80 90 90 90 -default_F 100 -lambda 1.0 -N 20 -misset 10 20 30 "
          "-distance 120 -detpixels_x 1100 -detpixels_y 1200 -pixel 0.1 -oversample 1 -nonoise")


def local_maxima(img: np.ndarray, above: float) -> np.ndarray:
    """(slow, fast) of the pixels that are the maximum of their 3 x 3 neighbourhood and > above."""
    pad = np.pad(img, 1, constant_values=-np.inf)
    around = sliding_window_view(pad, (3, 3)).max(axis=(2, 3))
    return np.argwhere((img == around) & (img > above))


def test_a_sparse_preview_shows_its_spots():
    img = np.asarray(simulate(parse_nanobragg_args(SPARSE.split()).config).image, np.float32)
    spots = local_maxima(img, 0.01 * img.max())
    assert len(spots) > 100  # a sparse pattern of many one- or two-pixel spots
    assert (img > 0.01 * img.max()).mean() < 0.01
    px = preview_pixels(img)
    k = preview_factor(img.shape)
    assert k == 2 and max(px.shape) <= PREVIEW_MAX and px.shape == (600, 550)
    shown = px[spots[:, 0] // k, spots[:, 1] // k] >= 64
    assert shown.mean() >= 0.9, f"{shown.mean():.1%} of {len(spots)} spots shown"
    # and the space between the spots stays dark
    assert np.median(px) < 32
