"""Poisson noise images against the C program's noise.img (-seed 12345)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim_core import rng as rng_module
from sim_core.noise import full_roi, poisson_noise
from sim_core.rng import CRandom, SeedCell

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "noise_smv"
REPO = Path(__file__).resolve().parents[2]


def _float_image() -> np.ndarray:
    return np.fromfile(GOLDEN / "float.bin", dtype="<f4").reshape(128, 128)


def _c_noise_image() -> np.ndarray:
    raw = (GOLDEN / "noise.img").read_bytes()
    return np.frombuffer(raw, dtype="<u2", offset=512).reshape(128, 128)


def test_noise_matches_c_noise_image_exactly():
    img = _float_image()
    assert img.max() > 12.0 and img.min() < 12.0  # both poidev methods are exercised
    result = poisson_noise(img, 12345)
    ref = _c_noise_image()
    assert result.image.dtype == np.uint16
    assert np.count_nonzero(result.image != ref) == 0
    # c_stdout.log: "475001 photons on noise image (0 overloads)"
    assert result.photons == 475001.0
    assert result.overloads == 0


def test_roi_is_the_same_stream_as_the_cropped_image():
    img = _float_image()
    roi = (30, 90, 40, 70)  # x = fast, y = slow, inclusive
    res = poisson_noise(img, 12345, roi=roi)
    crop = poisson_noise(img[40:71, 30:91], 12345)
    assert np.array_equal(res.image[40:71, 30:91], crop.image)
    outside = np.ones(img.shape, bool)
    outside[40:71, 30:91] = False
    assert not res.image[outside].any()
    assert res.photons == crop.photons
    assert full_roi(img.shape) == (0, 127, 0, 127)


def test_adc_offset_clamp_and_overloads():
    zeros = np.zeros((4, 5), np.float32)
    res = poisson_noise(zeros, 1, adc_offset=40.0)
    assert np.all(res.image == 40) and res.photons == 0.0 and res.overloads == 0
    res = poisson_noise(zeros, 1, adc_offset=12.9)
    assert np.all(res.image == 12)  # truncation, not rounding
    big = np.full((3, 4), 2.0e6, np.float32)  # gaussian branch, far above 65535
    res = poisson_noise(big, 7)
    assert np.all(res.image == 65535) and res.overloads == 12
    assert res.photons == pytest.approx(12 * 2.0e6, rel=1e-3)


def test_seed_cell_and_rng_continue_the_stream():
    img = _float_image()
    ref = _c_noise_image()
    state, cell = CRandom(), SeedCell.from_user_seed(12345)
    top = poisson_noise(img[:64], cell, rng=state)
    bottom = poisson_noise(img[64:], cell, rng=state)
    assert np.array_equal(np.vstack([top.image, bottom.image]), ref)


@pytest.mark.skipif(not rng_module.NUMBA_AVAILABLE, reason="numba not installed")
def test_pure_python_fallback_agrees_with_numba():
    # the first rows are a prefix of the C stream; rows 60..67 hold the brightest pixels
    img = _float_image()
    script = (
        "import sys, json; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from sim_core import rng\n"
        "from sim_core.noise import poisson_noise\n"
        "assert not rng.NUMBA_AVAILABLE\n"
        f"img = np.fromfile({str(GOLDEN / 'float.bin')!r}, dtype='<f4').reshape(128, 128)\n"
        "a = poisson_noise(img[:6], 12345)\n"
        "b = poisson_noise(img[60:68], 99, adc_offset=10.0)\n"
        "print(json.dumps([a.image.tolist(), a.photons, b.image.tolist(), b.photons]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120, check=True)
    a_img, a_ph, b_img, b_ph = json.loads(out.stdout)
    assert np.array_equal(np.array(a_img), _c_noise_image()[:6])
    numba_b = poisson_noise(img[60:68], 99, adc_offset=10.0)
    assert img[60:68].max() > 1000  # the rejection method runs in both
    assert np.array_equal(np.array(b_img), numba_b.image)
    assert (a_ph, b_ph) == (poisson_noise(img[:6], 12345).photons, numba_b.photons)


@pytest.mark.skipif(not rng_module.NUMBA_AVAILABLE, reason="numba not installed")
def test_megapixel_noise_is_fast():
    img = np.tile(_float_image(), (8, 8))  # 1024 x 1024, mean ~29 photons
    poisson_noise(img[:8, :8], 1)  # warm-up (compile or load the cache)
    start = time.perf_counter()
    res = poisson_noise(img, 12345)
    elapsed = time.perf_counter() - start
    assert res.image.shape == (1024, 1024)
    # the first 128 pixels of row 0 are the C image's first row
    assert np.array_equal(res.image[0, :128], _c_noise_image()[0])
    assert elapsed < 1.0, f"1024x1024 noise took {elapsed:.2f} s"
