"""The image viewer in a headless Chromium: the value and resolution under the cursor against the
float image and sim_core, contrast, tracing by a click, a series, no request leaving the service,
and the bytes a 2463 x 2527 image costs before its first picture."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.service.browser import open_page, page, screenshot  # noqa: F401
from tests.service.helpers import submit, wait_status
from tests.service.stored_jobs import spots_image, store_finished_job
from tests.service.test_images import TILTED
from tests.service.test_series import SERIES

pytestmark = pytest.mark.browser

PILATUS_6M = {  # 2463 x 2527 pixels of 172 µm
    "crystal": {"cell": {"a_A": 78, "b_A": 78, "c_A": 38}, "Na": 10, "Nb": 10, "Nc": 10},
    "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 0.98},
    "detector": {"distance_mm": 250, "fast_pixels": 2463, "slow_pixels": 2527,
                 "pixel_size_mm": 0.172},
}


def open_job(pg, service, owner: str, job_id: str) -> float:
    """Open the page, click the job in the list; the seconds until the viewer's first picture."""
    open_page(pg, service, owner)
    row = f"#jobs tr[data-id='{job_id}']"
    pg.wait_for_selector(row, timeout=30_000)
    t0 = time.monotonic()
    pg.click(row)
    pg.wait_for_selector("#view[data-complete='1']", timeout=60_000)
    return time.monotonic() - t0


def canvas_point(pg, s: int, f: int) -> tuple[float, float]:
    """The page coordinates of pixel (s, f)'s centre on the viewer's canvas."""
    pg.locator("#view").scroll_into_view_if_needed()
    box = pg.locator("#view").bounding_box()
    x, y = pg.evaluate(f"document.querySelector('#view') && window.viewer.cssOf({s}, {f})")
    return box["x"] + x, box["y"] + y


def canvas_pixels(pg) -> str:
    """A digest of the canvas's pixels (FNV-1a over the RGBA bytes), computed in the page."""
    return pg.evaluate("""() => { const c = document.querySelector('#view');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let h = 2166136261;
        for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619) >>> 0;
        return `${c.width}x${c.height}:${h}`; }""")


@pytest.fixture(scope="module")
def tilted(service):
    with service.client("alice") as alice:
        job = submit(alice, {"config": TILTED, "outputs": ["float", "png"], "label": "tilted"})
        rec = wait_status(alice, job["id"], timeout=120)
        assert rec["status"] == "finished", rec
        img = np.frombuffer(alice.get(f"/v1/jobs/{job['id']}/artifacts/floatimage.bin").content,
                            "<f4").reshape(rec["shape"])
    return rec, img


def test_cursor_value_resolution_contrast_and_trace(page, service, alice, tilted, tmp_path):
    pg = page
    rec, img = tilted
    open_job(pg, service, "alice", rec["id"])
    s, f = (int(x) for x in np.unravel_index(np.argmax(img), img.shape))
    geo = alice.get(f"/v1/jobs/{rec['id']}/geometry", params={"pixel": f"{s},{f}"}).json()

    # zoom onto the brightest pixel and read what is under the cursor
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    pg.wait_for_selector("#view[data-level='0'][data-complete='1']")
    pg.mouse.move(*canvas_point(pg, s, f))
    pg.wait_for_selector(f"#readout[data-pixel='{s},{f}'][data-exact='1']")
    assert (pg.text_content("#ro-s"), pg.text_content("#ro-f")) == (str(s), str(f))
    shown = pg.text_content("#ro-v")
    assert float(shown) == pytest.approx(float(img[s, f]), rel=5e-6), shown
    assert shown == pg.evaluate(f"formatValue(Math.fround({float(img[s, f])!r}))")
    assert pg.text_content("#ro-d") == f"{geo['pixels'][0]['d_A']:.3f}"
    assert pg.text_content("#ro-tt") == f"{geo['pixels'][0]['twotheta_deg']:.3f}"
    # another pixel: the readout follows the cursor, resolution as sim_core computes it
    geo2 = alice.get(f"/v1/jobs/{rec['id']}/geometry", params={"pixel": f"{s + 1},{f - 1}"}).json()
    pg.mouse.move(*canvas_point(pg, s + 1, f - 1))
    pg.wait_for_selector(f"#readout[data-pixel='{s + 1},{f - 1}'][data-exact='1']")
    assert float(pg.text_content("#ro-v")) == pytest.approx(float(img[s + 1, f - 1]), rel=5e-6)
    assert pg.text_content("#ro-d") == f"{geo2['pixels'][0]['d_A']:.3f}"

    # the wheel zooms about the cursor
    before = float(pg.get_attribute("#view", "data-scale"))
    pg.mouse.wheel(0, 300)
    pg.wait_for_function(f"+document.querySelector('#view').dataset.scale < {before}")

    # contrast: a lower high end of the window, a log scale, inverted greys each change the picture
    pg.click("#zoom-fit")
    pg.wait_for_selector("#view[data-complete='1']")
    pixels = [canvas_pixels(pg)]
    pg.fill("#c-hi", str(float(img.max()) / 50))
    pg.dispatch_event("#c-hi", "change")
    pg.wait_for_timeout(100)
    pixels.append(canvas_pixels(pg))
    pg.select_option("#c-scale", "log")
    pg.wait_for_timeout(100)
    pixels.append(canvas_pixels(pg))
    pg.select_option("#c-map", "inverted")
    pg.wait_for_timeout(100)
    pixels.append(canvas_pixels(pg))
    assert all(a != b for a, b in zip(pixels, pixels[1:]))
    assert pg.input_value("#contrast-mode") == "manual"
    pg.select_option("#c-map", "grey")
    pg.select_option("#contrast-mode", "99.5")

    # a click traces the pixel; the table shows its final value, equal to the float image's
    posts = []
    pg.on("request", lambda r: r.method == "POST" and r.url.endswith("/traces")
          and posts.append(r.url))
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    pg.mouse.click(*canvas_point(pg, s, f))
    pg.wait_for_selector("#trace-final", timeout=120_000)
    assert pg.text_content(".trace-head strong") == f"pixel ({s}, {f})"
    final = float(pg.text_content("#trace-final"))
    assert final == pytest.approx(float(img[s, f]), rel=1e-6)  # the float file holds float32
    assert pg.locator(".trace-table.phi tbody tr").count() == 1  # one φ step
    assert pg.locator(".trace-table tr[data-key='I_pixel_final']").count() == 1
    assert pg.get_attribute("#trace-raw", "download") == f"trace_{s}_{f}.log"
    assert len(posts) == 1
    screenshot(pg, tmp_path, "viewer-trace.png")
    # a trace made before opens at once, without a new trace job
    pg.mouse.click(*canvas_point(pg, s, f))
    pg.wait_for_function(f"document.querySelector('.trace-head strong')?.textContent === "
                         f"'pixel ({s}, {f})'", timeout=10_000)
    assert len(posts) == 1
    assert pg.errors == []


def test_keyboard_zoom_pan_and_a_series(page, service, bob, tmp_path):
    """A series of 3 images numbered from 2: the viewer opens on image 2 and steps through 2..4."""
    pg = page
    config = SERIES | {"detector": dict(SERIES["detector"], fast_pixels=100, slow_pixels=120,
                                        pixel_size_mm=0.2),
                       "scan": SERIES["scan"] | {"images": 3, "first_image": 2}}
    job_id = submit(bob, {"config": config, "outputs": ["float"], "label": "series of 3"})["id"]
    assert wait_status(bob, job_id, timeout=120)["status"] == "finished"
    images = [np.frombuffer(bob.get(f"/v1/jobs/{job_id}/images/{n}/artifacts/floatimage.bin")
                            .content, "<f4").reshape(120, 100) for n in (2, 3, 4)]
    open_job(pg, service, "bob", job_id)
    assert pg.text_content("#series-label") == "image 2 (1 of 3)"
    assert (pg.get_attribute("#series", "min"), pg.get_attribute("#series", "max")) == ("2", "4")
    first = canvas_pixels(pg)
    pg.focus("#view")
    scale = float(pg.get_attribute("#view", "data-scale"))
    pg.keyboard.press("+")
    pg.wait_for_function(f"+document.querySelector('#view').dataset.scale > {scale}")
    pg.keyboard.press("0")
    pg.wait_for_function(f"+document.querySelector('#view').dataset.scale == {scale}")
    pg.keyboard.press("]")
    pg.wait_for_function("document.querySelector('#series-label').textContent === "
                         "'image 3 (2 of 3)'")
    pg.wait_for_selector("#view[data-complete='1']")
    pg.wait_for_timeout(100)
    second = canvas_pixels(pg)
    assert second != first
    pg.keyboard.press("PageDown")
    pg.wait_for_function("document.querySelector('#series-label').textContent === "
                         "'image 4 (3 of 3)'")
    pg.keyboard.press("PageDown")  # the last image stays the last
    pg.keyboard.press("[")
    pg.keyboard.press("[")
    pg.wait_for_function("document.querySelector('#series-label').textContent === "
                         "'image 2 (1 of 3)'")
    # the slider steps with the arrow keys, as a range input does
    pg.focus("#series")
    pg.keyboard.press("ArrowRight")
    pg.wait_for_function("document.querySelector('#series-label').textContent === "
                         "'image 3 (2 of 3)'")
    # the value under the cursor is image 3's
    s, f = (int(x) for x in np.unravel_index(np.argmax(images[1]), images[1].shape))
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    pg.mouse.move(*canvas_point(pg, s, f))
    pg.wait_for_selector(f"#readout[data-pixel='{s},{f}'][data-exact='1']")
    assert float(pg.text_content("#ro-v")) == pytest.approx(float(images[1][s, f]), rel=5e-6)
    assert pg.errors == []


def test_nothing_leaves_the_origin(page, service, tilted):
    """With every request to another host refused, the page, the viewer, /docs and /redoc render
    in full: none of them asks another host for anything."""
    pg = page
    origin = urlsplit(service.base_url).netloc
    outside = []

    def guard(route):
        if urlsplit(route.request.url).netloc != origin and not route.request.url.startswith(
                ("data:", "blob:")):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    pg.context.route("**/*", guard)
    rec, _ = tilted
    open_job(pg, service, "alice", rec["id"])
    assert pg.text_content("#detail-status") == "finished"
    pg.goto(f"{service.base_url}/docs")
    pg.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "bragg-service" in pg.text_content(".swagger-ui .info .title")
    pg.wait_for_selector(".opblock-tag-section", timeout=30_000)
    assert pg.locator(".opblock").count() > 10
    pg.goto(f"{service.base_url}/redoc")
    pg.wait_for_selector("h1:has-text('bragg-service')", timeout=30_000)
    pg.wait_for_function("document.body.innerText.includes('Pixels of the float image')",
                         timeout=30_000)
    assert outside == []


def test_a_pilatus_6m_image_opens_in_a_few_megabytes(page, service, tmp_path):
    """2463 x 2527 pixels (25 MB of float32) with a noisy background everywhere, so that
    compression helps little: the page, the job and the viewer's first picture together
    transfer less than 3 MB."""
    pg = page
    img = spots_image((2527, 2463), 3000, seed=7, background=2.0)
    job_id = store_finished_job(service, "carol", PILATUS_6M, img, label="pilatus 6M")
    cdp = pg.context.new_cdp_session(pg)
    cdp.send("Network.enable")
    received = {}
    cdp.on("Network.loadingFinished",
           lambda e: received.__setitem__(e["requestId"], e["encodedDataLength"]))
    seconds = open_job(pg, service, "carol", job_id)
    total = sum(received.values())
    print(f"\nopening a 2463 x 2527 job's viewer: {total / 1e6:.2f} MB in {len(received)} "
          f"responses (page included), first picture {seconds:.2f} s after the click")
    assert total < 3_000_000
    assert pg.get_attribute("#view", "data-level") != "0"
    assert pg.errors == []
