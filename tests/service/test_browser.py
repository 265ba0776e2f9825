"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright over CDP):
submit an example, watch the job finish in the list, see its image in the viewer, read a trace;
a series from the page, image by image.
The viewer's own tests are in test_viewer.py.
"""

from __future__ import annotations

import json
import zipfile
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from tests.service.browser import open_page as _open, page, screenshot as _screenshot  # noqa: F401
from tests.service.conftest import TOKENS
from tests.service.helpers import get, golden
from tests.service.test_series import SERIES

pytestmark = pytest.mark.browser


def test_submit_watch_and_see_the_image(page, service, alice, tmp_path):
    pg = page
    _open(pg, service, "alice")
    pg.select_option("#example", "cubic_args")
    assert pg.is_checked("#mode-args")
    assert pg.input_value("#submission").startswith("-cell 100 100 100 90 90 90")
    pg.click("#submit")
    pg.wait_for_function("document.querySelector('#submit-result').dataset.jobId", timeout=30_000)
    job_id = pg.get_attribute("#submit-result", "data-job-id")
    assert pg.text_content("#submit-result") == f"queued job {job_id}"

    # the list shows the job until it is finished; the page then shows its image in the viewer,
    # scrolled into view (it lies below the fold of the submit form)
    pg.wait_for_selector(f"#jobs tr[data-id='{job_id}'][data-status='finished']",
                         timeout=120_000)
    pg.wait_for_selector("#view[data-complete='1']", timeout=30_000)
    top = pg.evaluate("document.querySelector('#viewer').getBoundingClientRect().top")
    # (a fraction of a pixel above the top: the browser scrolls in sub-pixel steps)
    assert pg.evaluate("window.scrollY") > 0 and -1 <= top < pg.evaluate("innerHeight") / 2
    rec = get(alice, job_id)
    assert rec["status"] == "finished" and rec["label"] == "cubic 256 (args)"
    assert rec["shape"] == [256, 256] and pg.is_hidden("#preview-box")
    assert pg.text_content("#detail-id") == job_id
    assert pg.text_content("#detail-status") == "finished"
    artifacts = pg.locator("#artifacts a").all_text_contents()
    assert {"floatimage.bin", "intimage.img", "preview.png", "run_metadata.json",
            "commands.txt", "sha256.txt"} <= set(artifacts)

    # the trace given at submission, then a new one traced from the page
    pg.click("#traces li:has-text('trace_128_129.log') button")
    pg.wait_for_function("document.querySelector('#trace-text').textContent.startsWith("
                         "'TRACE_PY_CONFIG')", timeout=30_000)
    assert "tracing pixel (spixel=128, fpixel=129)" in pg.text_content("#trace-text")
    pg.fill("#trace-s", "10")
    pg.fill("#trace-f", "20")
    pg.click("#trace-go")
    pg.wait_for_function("document.querySelector('#trace-text').textContent.includes("
                         "'spixel=10, fpixel=20')", timeout=120_000)
    _screenshot(pg, tmp_path, "web-finished-job.png")
    assert pg.errors == []

    # the row's progress and status came from the same records the API serves
    row = pg.locator(f"#jobs tr[data-id='{job_id}']")
    assert "100%" in row.text_content()


def test_errors_are_shown_with_the_field(page, service, tmp_path):
    pg = page
    _open(pg, service, None)
    # no token on a deployment with tokens: the list says what to do
    pg.wait_for_function("document.querySelector('#jobs-error').textContent.includes('token')",
                         timeout=10_000)
    pg.fill("#token", TOKENS["bob"])
    pg.dispatch_event("#token", "change")
    pg.check("#mode-json")
    pg.fill("#submission", '{"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}}, '
                           '"detector": {"fast_pixels": -3}}')
    pg.click("#submit")
    pg.wait_for_function("document.querySelector('#submit-result').textContent.startsWith('422')",
                         timeout=30_000)
    assert "config.detector.fast_pixels" in pg.text_content("#submit-result")
    _screenshot(pg, tmp_path, "web-error.png")
    assert pg.errors == []


def test_input_files_are_uploaded_from_the_page(page, service, tmp_path):
    """The mosflm_matrix golden case: nanoBragg arguments naming A.mat and p1.hkl, chosen in the
    page's file input, uploaded, rendered; the page shows the image of that job."""
    pg = page
    case = golden("mosflm_matrix")
    _open(pg, service, "carol")  # bob's and alice's uploads are other tests' business
    pg.check("#mode-args")
    pg.fill("#submission", " ".join((case / "args.txt").read_text().split()))
    pg.set_input_files("#files", [str(case / "A.mat"), str(case / "p1.hkl")])
    pg.click("#submit")
    pg.wait_for_function("document.querySelector('#submit-result').dataset.jobId", timeout=60_000)
    job_id = pg.get_attribute("#submit-result", "data-job-id")
    pg.wait_for_selector(f"#jobs tr[data-id='{job_id}'][data-status='finished']",
                         timeout=120_000)
    pg.wait_for_selector("#view[data-complete='1']", timeout=30_000)
    with service.client("carol") as carol:
        rec = get(carol, job_id)
    assert rec["status"] == "finished"
    assert rec["evaluations"] == 256 * 256 * 9  # the 3x3 detector oversampling of -mat cases
    assert pg.errors == []


def test_a_series_from_the_page(page, service, bob, tmp_path):
    """A series of 4 images numbered from 3, submitted from the page: the list and the detail show
    its images, the viewer opens on image 3 and steps to image 4 (asking the API for n=4), the
    files and traces are image 4's, and the dataset link downloads the zip of every image."""
    pg = page
    config = SERIES | {"detector": dict(SERIES["detector"], fast_pixels=16, slow_pixels=12),
                       "scan": SERIES["scan"] | {"images": 4}}
    first = config["scan"]["first_image"]
    assert first == 3
    _open(pg, service, "bob")
    pg.check("#mode-json")
    pg.fill("#submission", json.dumps({"config": config, "label": "four images",
                                       "outputs": ["float", "smv", "cbf", "png"]}))
    asked = []
    pg.on("request", lambda r: asked.append((r.method, urlsplit(r.url).path,
                                             parse_qs(urlsplit(r.url).query))))
    pg.click("#submit")
    pg.wait_for_function("document.querySelector('#submit-result').dataset.jobId", timeout=30_000)
    job_id = pg.get_attribute("#submit-result", "data-job-id")
    row = f"#jobs tr[data-id='{job_id}']"
    pg.wait_for_selector(f"{row}[data-status='finished']", timeout=120_000)
    assert pg.text_content(f"{row} .series-note") == "series · 4 images · 4/4 done"
    assert pg.evaluate("seriesSummary({images: 36, images_done: 10, images_failed: 2, "
                       "images_canceled: 0})") == "series · 36 images · 10/36 done · 2 failed"
    rec = get(bob, job_id)
    assert rec["kind"] == "series" and rec["series"]["images_done"] == 4

    # the viewer opened on an image of the series once one was rendered (which one depends on
    # how far the series was when the page looked); opened anew, on the first image
    pg.wait_for_selector("#series-label[data-n]", timeout=30_000)
    assert int(pg.get_attribute("#series-label", "data-n")) in range(first, first + 4)
    _open(pg, service, "bob")
    asked.clear()
    pg.click(row)
    pg.wait_for_selector("#series-label[data-n='3']", timeout=30_000)
    pg.wait_for_selector("#view[data-complete='1']", timeout=30_000)
    fields = dict(zip(pg.locator("#detail-fields dt").all_text_contents(),
                      pg.locator("#detail-fields dd").all_text_contents()))
    assert fields["images"] == "4, numbered 3–6" and fields["done"] == "4 of 4"
    assert fields["size"] == "16 × 12 pixels each"
    assert pg.text_content("#series-label") == "image 3 (1 of 4)"
    assert pg.is_visible("#series-box")
    assert pg.text_content("#image-files-n") == "3"

    # the next image: the viewer asks for n=4, the files listed are image 4's
    pg.focus("#view")
    pg.keyboard.press("]")
    pg.wait_for_selector("#series-label[data-n='4']")
    pg.wait_for_selector("#view[data-complete='1']")
    assert pg.text_content("#series-label") == "image 4 (2 of 4)"
    viewer_paths = (f"/v1/jobs/{job_id}/image", f"/v1/jobs/{job_id}/image/info")
    image_asks = [q.get("n") for m, path, q in asked if path in viewer_paths]
    assert ["4"] in image_asks and ["3"] in image_asks
    assert all(n in (["3"], ["4"]) for n in image_asks), image_asks
    pg.wait_for_selector("#image-files-n:text-is('4')")
    links = {a.text_content(): a.get_attribute("href") for a in pg.locator("#image-files a").all()}
    assert set(links) == {"floatimage.bin", "intimage.img", "image.cbf", "preview.png",
                          "run_metadata.json", "commands.txt"}
    for name, href in links.items():
        assert href == f"/v1/jobs/{job_id}/images/4/artifacts/{name}"
    with pg.expect_download() as dl:
        pg.click("#image-files a:text-is('floatimage.bin')")
    assert dl.value.suggested_filename == "floatimage_00004.bin"
    img = np.fromfile(dl.value.path(), "<f4").reshape(12, 16)
    assert img.tobytes() == bob.get(links["floatimage.bin"]).content

    # a trace of image 4's brightest pixel, traced from the page
    s, f = (int(x) for x in np.unravel_index(np.argmax(img), img.shape))
    pg.fill("#trace-s", str(s))
    pg.fill("#trace-f", str(f))
    pg.click("#trace-go")
    pg.wait_for_selector("#trace-final, #trace-view .error", timeout=120_000)
    assert pg.locator("#trace-view .error").count() == 0, pg.text_content("#trace-view")
    assert pg.text_content(".trace-head strong") == f"pixel ({s}, {f})"
    assert float(pg.text_content("#trace-final")) == pytest.approx(float(img[s, f]), rel=1e-6)
    assert pg.get_attribute("#trace-raw", "download") == f"trace_{s}_{f}_00004.log"
    posts = [path for m, path, q in asked if m == "POST" and path.endswith("/traces")]
    assert posts == [f"/v1/jobs/{job_id}/images/4/traces"]

    # the dataset: one zip of every image, with its sha256.txt
    assert pg.get_attribute("#dataset-link", "href") == f"/v1/jobs/{job_id}/dataset"
    with pg.expect_download() as dl:
        pg.click("#dataset-link")
    assert dl.value.suggested_filename == f"{job_id}.zip"
    names = zipfile.ZipFile(dl.value.path()).namelist()
    assert names[-1] == "sha256.txt"
    assert {f"floatimage_{n:05d}.bin" for n in range(first, first + 4)} <= set(names)
    _screenshot(pg, tmp_path, "web-series.png")
    assert pg.errors == []
