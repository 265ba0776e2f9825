"""The viewer as an analysis tool, in a headless Chromium, against the images' own values: colour
maps, the histogram with the contrast window, min/max/mean, overloads, the values around the
cursor, a line profile, the noisy image, a local CBF beside the job's image in sync, a deep link,
the default rings, and what an idle page with 50 jobs costs. Screenshots go to
``BRAGG_SCREENSHOT_DIR`` (the ones in docs/img come from here)."""

from __future__ import annotations

import fabio
import numpy as np
import pytest
from fabio.cbfimage import CbfImage

from sim_core.io.smv import read_smv
from tests.service.browser import open_page, page, screenshot  # noqa: F401
from tests.service.helpers import submit, wait_status
from tests.service.stored_jobs import spots_image, store_finished_job
from tests.service.test_viewer import canvas_pixels, canvas_point, open_job

pytestmark = pytest.mark.browser

#: the README's example (app/examples/cubic_args.json) with every image output
README_ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda",
               "6.2", "-N", "5", "-distance", "100", "-detpixels", "256"]


@pytest.fixture(scope="module")
def readme_job(service, tmp_path_factory):
    out = tmp_path_factory.mktemp("readme_job")
    with service.client("alice") as alice:
        job = submit(alice, {"nanobragg_args": README_ARGS, "label": "README example",
                             "outputs": ["float", "smv", "noise", "cbf", "png"]})
        rec = wait_status(alice, job["id"], timeout=180)
        assert rec["status"] == "finished", rec
        for name in ("floatimage.bin", "noiseimage.img"):
            (out / name).write_bytes(alice.get(f"/v1/jobs/{rec['id']}/artifacts/{name}").content)
    img = np.fromfile(out / "floatimage.bin", "<f4").reshape(256, 256)
    noisy = read_smv(out / "noiseimage.img")[1]
    return rec, img, noisy


def canvas_rgb(pg, s: int, f: int, prefix: str = "") -> list[int]:
    """The RGB drawn at the centre of pixel (s, f) on a viewer's canvas."""
    return pg.evaluate(f"""() => {{ const v = {'window.compareViewer' if prefix else 'window.viewer'};
        const c = document.querySelector('#{prefix}view');
        const [x, y] = v.toScreen({f} + 0.5, {s} + 0.5);
        return Array.from(c.getContext('2d').getImageData(Math.floor(x), Math.floor(y), 1, 1)
                          .data.slice(0, 3)); }}""")


def lut(pg, name: str, i: int) -> list[int]:
    return pg.evaluate(f"Array.from(COLOUR_MAPS['{name}'].lut.slice({3 * i}, {3 * i + 3}))")


def settle(pg, prefix: str = ""):
    pg.wait_for_selector(f"#{prefix}view[data-complete='1']")
    pg.wait_for_timeout(120)  # the next animation frame has drawn


def test_statistics_histogram_colour_maps_overloads_and_rings(page, service, readme_job,
                                                              tmp_path):
    pg = page
    rec, img, _ = readme_job
    open_job(pg, service, "alice", rec["id"])
    # min, max and mean are the image's (max is not a percentile any more)
    fmt = lambda v: pg.evaluate(f"formatValue(Math.fround({float(v)!r}))")  # noqa: E731
    assert pg.text_content("#st-min") == fmt(img.min())
    assert pg.text_content("#st-max") == fmt(img.max())
    mean = float(pg.evaluate("viewer.job.info.stats.mean"))
    assert mean == pytest.approx(float(img.mean(dtype=np.float64)), rel=1e-9)
    assert pg.text_content("#st-mean") == pg.evaluate(f"formatValue({mean!r})")
    assert float(pg.input_value("#c-hi")) < float(img.max())  # the window's high end, a percentile
    # the histogram counts every pixel; the window is drawn on it
    assert pg.get_attribute("#hist", "data-pixels") == str(img.size)
    x0, x1 = (int(v) for v in pg.get_attribute("#hist", "data-window-px").split(","))
    assert 0 <= x0 < x1
    screenshot(pg, tmp_path, "viewer-histogram.png", "#viewer")
    # a click on the histogram near the window's high end moves it there (and back to auto)
    box = pg.locator("#hist").bounding_box()
    pg.mouse.click(box["x"] + 0.95 * box["width"], box["y"] + box["height"] / 2)
    want = img.min() + np.expm1(0.95 * np.log1p(float(img.max()) - float(img.min())))
    assert float(pg.input_value("#c-hi")) == pytest.approx(want, rel=0.01)
    assert pg.input_value("#contrast-mode") == "manual"
    pg.select_option("#contrast-mode", "99.5")

    # the default rings lie on this detector (10 ... 2 Å drew nothing on it)
    rings = [float(d) for d in pg.input_value("#rings").split()]
    assert len(rings) >= 4
    for d in rings:
        pts = pg.evaluate(f"viewer.job.geo.ring({d}).filter((p) => p && p[0] >= 0 && p[0] <= 256 "
                          f"&& p[1] >= 0 && p[1] <= 256).length")
        assert pts > 0, d

    # colour maps: the brightest pixel (above the window) takes each map's last colour
    s, f = (int(x) for x in np.unravel_index(np.argmax(img), img.shape))
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    settle(pg)
    pictures = []
    for name in ("grey", "heat", "viridis", "inverted"):
        pg.select_option("#c-map", name)
        settle(pg)
        assert pg.get_attribute("#view", "data-map") == name
        assert canvas_rgb(pg, s, f) == lut(pg, name, 255), name
        pictures.append(canvas_pixels(pg))
    assert len(set(pictures)) == 4
    pg.select_option("#c-map", "heat")
    pg.click("#zoom-fit")
    settle(pg)
    screenshot(pg, tmp_path, "viewer-colour-map.png", "#viewer")

    # overloads: at or above the value given, a pixel is drawn in the map's overload colour
    pg.click("#goto button[type=submit]")
    settle(pg)
    below = canvas_rgb(pg, s, f)
    pg.fill("#c-sat", str(float(img.max()) * 0.9))
    pg.dispatch_event("#c-sat", "change")
    settle(pg)
    over = pg.evaluate("COLOUR_MAPS.heat.over")
    assert canvas_rgb(pg, s, f) == over != below
    # a pixel below the overload value keeps its colour
    s2, f2 = s, f + 3
    assert img[s2, f2] < 0.9 * img.max()
    assert canvas_rgb(pg, s2, f2) != over
    pg.click("#zoom-out")
    settle(pg)
    screenshot(pg, tmp_path, "viewer-overload.png", "#viewer")
    assert pg.errors == []


def test_pixel_table_and_line_profile(page, service, readme_job, tmp_path):
    pg = page
    rec, img, _ = readme_job
    open_job(pg, service, "alice", rec["id"])
    s, f = (int(x) for x in np.unravel_index(np.argmax(img), img.shape))
    # at the whole image the table asks to zoom in; at 16 screen pixels a pixel it shows 7 x 7
    pg.mouse.move(*canvas_point(pg, s, f))
    pg.wait_for_function("document.querySelector('#pixtable-note').textContent.includes('zoom')")
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    settle(pg)
    pg.mouse.move(*canvas_point(pg, s, f))
    pg.wait_for_selector(f"#pixtable[data-pixel='{s},{f}'][data-complete='1']")
    cells = pg.evaluate("""Array.from(document.querySelectorAll('#pixtable td[data-v]'))
        .map((td) => [+td.dataset.s, +td.dataset.f, +td.dataset.v, td.className])""")
    assert len(cells) == 49
    for cs, cf, v, cls in cells:
        assert v == pytest.approx(float(img[cs, cf]), rel=1e-6)
        assert (cls == "centre") == ((cs, cf) == (s, f))
    screenshot(pg, tmp_path, "viewer-pixel-table.png", "#viewer")

    # a profile: two clicks in profile mode, the values of the pixels on the line
    pg.click("#zoom-fit")
    settle(pg)
    pg.select_option("#tool", "profile")
    a, b = (s - 40, f - 60), (s + 20, f + 50)
    pg.mouse.click(*canvas_point(pg, *a))
    pg.mouse.click(*canvas_point(pg, *b))
    pg.wait_for_selector("#profile[data-points]")
    data = pg.evaluate("viewer.profileLine.data")
    assert data["from"] == list(a) and data["to"] == list(b)
    assert len(data["values"]) == max(abs(b[0] - a[0]), abs(b[1] - a[1])) + 1 == 111
    assert data["values"] == [float(img[ps, pf]) for ps, pf in data["pixels"]]
    assert float(pg.get_attribute("#profile", "data-max")) == max(data["values"])
    assert "111 pixels" in pg.text_content("#profile-note")
    screenshot(pg, tmp_path, "viewer-profile.png", "#viewer")
    # no trace job was made by those clicks
    assert pg.locator("#trace-view .trace-head").count() == 0
    assert pg.errors == []


def test_the_noisy_image_and_a_local_cbf_beside_it_in_sync(page, service, readme_job, tmp_path):
    pg = page
    rec, img, noisy = readme_job
    open_job(pg, service, "alice", rec["id"])
    options = pg.locator("#image-artifact option").evaluate_all("os => os.map((o) => o.value)")
    assert options == ["floatimage.bin", "noiseimage.img", "intimage.img", "image.cbf"]
    pg.select_option("#image-artifact", "noiseimage.img")
    pg.wait_for_selector("#view[data-image='noiseimage.img'][data-complete='1']")
    assert pg.text_content("#st-max") == pg.evaluate(f"formatValue({float(noisy.max())!r})")
    assert pg.input_value("#c-sat") == "65535"  # the SMV image's overload value
    s, f = 100, 150
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    settle(pg)
    pg.mouse.move(*canvas_point(pg, s, f))
    pg.wait_for_selector(f"#readout[data-pixel='{s},{f}'][data-exact='1']")
    assert float(pg.text_content("#ro-v")) == float(noisy[s, f])
    pg.click("#zoom-fit")
    settle(pg)
    screenshot(pg, tmp_path, "viewer-noisy.png", "#viewer")

    # a frame of one's own: here the float image x 3 + 7 as counts, with one hot pixel
    frame = np.rint(img * 3 + 7).astype(np.int32)
    frame[20, 30] = 2_000_000
    path = tmp_path / "my_frame.cbf"
    CbfImage(data=frame).write(str(path))
    assert np.array_equal(fabio.open(str(path)).data, frame)
    pg.set_input_files("#local-file", str(path))
    pg.wait_for_selector("#b-view[data-complete='1']", timeout=30_000)
    assert pg.text_content("#b-compare-title") == "my_frame.cbf"
    assert pg.text_content("#b-st-max") == pg.evaluate("formatValue(2000000)")
    # the same zoom; the cursor over one image marks the same pixel in the other
    pg.fill("#goto-s", str(s))
    pg.fill("#goto-f", str(f))
    pg.click("#goto button[type=submit]")
    settle(pg)
    settle(pg, "b-")
    assert pg.get_attribute("#b-view", "data-scale") == pg.get_attribute("#view", "data-scale")
    assert pg.get_attribute("#b-view", "data-centre") == pg.get_attribute("#view", "data-centre")
    pg.mouse.move(*canvas_point(pg, s + 1, f - 2))
    pg.wait_for_selector(f"#b-readout[data-pixel='{s + 1},{f - 2}'][data-exact='1']")
    assert float(pg.text_content("#b-ro-v")) == float(frame[s + 1, f - 2])
    assert float(pg.text_content("#ro-v")) == float(noisy[s + 1, f - 2])
    assert pg.text_content("#b-ro-d") == pg.text_content("#ro-d")  # the job's geometry
    # and back: the cursor over the local image moves the job's readout; the wheel zooms both
    box = pg.locator("#b-view").bounding_box()
    x, y = pg.evaluate(f"compareViewer.cssOf({s - 2}, {f + 1})")
    pg.mouse.move(box["x"] + x, box["y"] + y)
    pg.wait_for_selector(f"#readout[data-pixel='{s - 2},{f + 1}'][data-exact='1']")
    assert float(pg.text_content("#ro-v")) == float(noisy[s - 2, f + 1])
    before = float(pg.get_attribute("#view", "data-scale"))
    pg.mouse.wheel(0, 300)
    pg.wait_for_function(f"+document.querySelector('#view').dataset.scale < {before}")
    settle(pg, "b-")
    assert pg.get_attribute("#b-view", "data-scale") == pg.get_attribute("#view", "data-scale")
    screenshot(pg, tmp_path, "viewer-local-cbf.png", "#detail")
    assert pg.errors == []


def test_a_deep_link_reloads_into_the_same_view(page, service, readme_job, tmp_path):
    pg = page
    rec, img, noisy = readme_job
    open_job(pg, service, "alice", rec["id"])
    pg.select_option("#image-artifact", "noiseimage.img")
    pg.wait_for_selector("#view[data-image='noiseimage.img'][data-complete='1']")
    pg.select_option("#c-map", "viridis")
    pg.fill("#goto-s", "60")
    pg.fill("#goto-f", "70")
    pg.click("#goto button[type=submit]")
    settle(pg)
    pg.wait_for_function("location.hash.includes('zoom=16') && location.hash.includes('viridis')")
    url = pg.url
    assert f"job={rec['id']}" in url and "image=noiseimage.img" in url and "pixel=60%2C70" in url
    view = {k: pg.get_attribute("#view", f"data-{k}") for k in ("scale", "centre", "image", "map")}
    assert view == {"scale": "16", "centre": "60,70", "image": "noiseimage.img", "map": "viridis"}

    # a new page at that address: the same job, image, zoom, centre and colours
    pg.goto("about:blank")
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    pg.wait_for_selector("#view[data-image='noiseimage.img'][data-complete='1']", timeout=30_000)
    settle(pg)
    assert pg.text_content("#detail-id") == rec["id"]
    again = {k: pg.get_attribute("#view", f"data-{k}") for k in ("scale", "centre", "image", "map")}
    assert again == view
    assert pg.input_value("#c-map") == "viridis"
    pg.mouse.move(*canvas_point(pg, 60, 70))
    pg.wait_for_selector("#readout[data-pixel='60,70'][data-exact='1']")
    assert float(pg.text_content("#ro-v")) == float(noisy[60, 70])
    screenshot(pg, tmp_path, "viewer-deep-link.png", "#viewer")
    assert pg.errors == []


def test_an_idle_page_with_50_jobs_transfers_under_2_kb_a_second(page, service, tmp_path):
    """50 jobs in the list; the page polls it every second with its ETag and gets 304s (the list
    itself is about 20 kB of JSON, 3 kB compressed)."""
    pg = page
    small = {"crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}},
             "structure_factors": {"default_F": 10},
             "detector": {"fast_pixels": 8, "slow_pixels": 8}}
    with service.client("dave") as dave:
        have = len(dave.get("/v1/jobs", params={"limit": 50}).json()["jobs"])
    for i in range(50 - have):
        store_finished_job(service, "dave", small, spots_image((8, 8), 2, seed=i), label=f"idle {i}")
    cdp = pg.context.new_cdp_session(pg)
    cdp.send("Network.enable")
    events = []
    cdp.on("Network.loadingFinished", lambda e: events.append(("done", e["encodedDataLength"])))
    cdp.on("Network.responseReceived", lambda e: events.append(
        ("status", e["response"]["url"], e["response"]["status"])))
    # the raw response headers too (the body's length may or may not count them: an upper bound)
    cdp.on("Network.responseReceivedExtraInfo",
           lambda e: events.append(("headers", len(e.get("headersText") or "")
                                    or sum(len(k) + len(v) + 4 for k, v in e["headers"].items()))))
    open_page(pg, service, "dave")
    pg.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 50",
                         timeout=30_000)
    pg.wait_for_timeout(1500)
    events.clear()
    seconds = 6.0
    pg.wait_for_timeout(seconds * 1000)
    received = sum(e[1] for e in events if e[0] in ("done", "headers"))
    lists = [e[2] for e in events if e[0] == "status" and "/v1/jobs?" in e[1]]
    rate = received / seconds
    print(f"\nidle page, 50 jobs listed: {received} bytes in {seconds:.0f} s = {rate:.0f} B/s, "
          f"{len(lists)} list polls answered {sorted(set(lists))}")
    assert len(lists) >= 4 and set(lists) == {304}
    assert rate <= 2000
    # the full list, compressed, when it changes
    with service.client("dave") as dave:
        r = dave.get("/v1/jobs", params={"limit": 50})
        assert len(r.json()["jobs"]) == 50 and r.headers.get("content-encoding") == "gzip"
        print(f"the list of 50 jobs: {len(r.content)} bytes of JSON, {r.num_bytes_downloaded} "
              "bytes sent compressed")
    assert pg.errors == []


def test_a_job_without_a_float_image_opens_on_its_smv_image(page, service, tmp_path):
    pg = page
    with service.client("carol") as carol:
        job = submit(carol, {"nanobragg_args": README_ARGS[:-1] + ["64"], "outputs": ["smv", "png"]})
        rec = wait_status(carol, job["id"], timeout=120)
        assert rec["status"] == "finished", rec
        path = tmp_path / "intimage.img"
        path.write_bytes(carol.get(f"/v1/jobs/{rec['id']}/artifacts/intimage.img").content)
    smv = read_smv(path)[1]
    open_job(pg, service, "carol", rec["id"])
    assert pg.get_attribute("#view", "data-image") == "intimage.img"
    assert pg.is_hidden("#preview-box")
    assert pg.locator("#image-artifact option").count() == 1
    assert pg.text_content("#st-max") == pg.evaluate(f"formatValue({float(smv.max())!r})")
    assert pg.errors == []
