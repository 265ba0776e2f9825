"""The viewer draws a still's ground truth (real Chromium): the predicted spots of the image shown,
over the picture, and the spot under the cursor named with its hkl, d, F and summed intensity; a
rotation image without truth shows no spots."""

from __future__ import annotations

import pytest

from tests.service.browser import page, screenshot  # noqa: F401
from tests.service.conftest import wait_for
from tests.service.helpers import submit, wait_status
from tests.service.test_viewer import canvas_pixels, canvas_point, open_job

pytestmark = pytest.mark.browser

#: 2 stills of 96 x 80 pixels with many spots (a large cell)
STILLS = {
    "crystal": {"cell": {"a_A": 90, "b_A": 90, "c_A": 60}, "Na": 6, "Nb": 6, "Nc": 6},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 1.0, "fluence_photons_per_m2": 1e24},
    "detector": {"distance_mm": 60, "fast_pixels": 96, "slow_pixels": 80, "pixel_size_mm": 0.3},
    "sampling": {"oversample": 1},
    "scan": {"images": 2, "random_orientations": True, "orientation_seed": 5},
}


def test_the_viewer_overlays_a_stills_predicted_spots(page, service, alice, tmp_path):
    pg = page
    job = submit(alice, {"config": STILLS, "outputs": ["float", "smv"], "label": "stills"})
    assert wait_status(alice, job["id"], timeout=120)["status"] == "finished"
    table = alice.get(f"/v1/jobs/{job['id']}/images/1/reflections").json()
    spots = [dict(zip(table["columns"], row)) for row in table["reflections"]]
    assert len(spots) >= 3
    open_job(pg, service, "alice", job["id"])
    pg.wait_for_selector(f"#view[data-truth='shown'][data-spots='{len(spots)}']", timeout=30_000)
    assert pg.is_visible("#truth-box") and pg.is_checked("#show-truth")
    assert pg.text_content("#truth-count") == f"({len(spots)})"
    pg.wait_for_selector("#view[data-complete='1']")
    pg.wait_for_timeout(100)
    with_spots = canvas_pixels(pg)
    screenshot(pg, tmp_path, "truth-overlay.png", "#view")

    # hover the strongest spot: its hkl, d, F and summed intensity
    top = spots[0]
    s, f = top["slow_px"] - 0.5, top["fast_px"] - 0.5  # canvas_point adds half a pixel
    pg.mouse.move(*canvas_point(pg, s, f))
    hkl = f"{top['h']},{top['k']},{top['l']}"
    pg.wait_for_selector(f"#truth-tip[data-hkl='{hkl}']", timeout=10_000)
    tip = pg.text_content("#truth-tip")
    assert tip.startswith(f"spot {top['h']} {top['k']} {top['l']} · d {top['d_A']:.3f} Å")
    assert "F 100" in tip and "summed I" in tip
    # the overlay off: the picture without circles
    pg.mouse.move(1, 1)
    pg.uncheck("#show-truth")
    wait_for(lambda: canvas_pixels(pg) != with_spots, 10, what="the picture without the spots")

    # the next image has its own spots
    table2 = alice.get(f"/v1/jobs/{job['id']}/images/2/reflections").json()
    pg.check("#show-truth")
    pg.focus("#view")
    pg.keyboard.press("]")
    pg.wait_for_function("document.querySelector('#series-label').dataset.n === '2'")
    pg.wait_for_selector(f"#view[data-spots='{len(table2['reflections'])}']", timeout=30_000)
    assert pg.errors == []


def test_an_image_without_truth_shows_no_spots(page, service, alice):
    pg = page
    single = {k: v for k, v in STILLS.items() if k != "scan"}
    job = submit(alice, {"config": single, "outputs": ["float"], "label": "no truth"})
    assert wait_status(alice, job["id"], timeout=120)["status"] == "finished"
    open_job(pg, service, "alice", job["id"])
    pg.wait_for_selector("#view[data-truth='none']", timeout=30_000)
    assert pg.is_hidden("#truth-box")
    assert pg.get_attribute("#view", "data-spots") in ("", None)
    assert pg.errors == []
