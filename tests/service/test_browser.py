"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright over CDP):
submit an example, watch the job finish in the list, see the preview image load, read a trace.

``make test`` installs Debian's chromium where it is missing (root + apt-get); without one the
tests are skipped, saying so. Set ``BRAGG_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import TOKENS
from tests.service.helpers import get, golden

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture()
def page(tmp_path):
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed and could not be (`make test` installs "
                    "it with apt-get as root: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000})
        pg = ctx.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        # a 4xx answer is logged by Chromium as "Failed to load resource"; the page shows those
        pg.on("console", lambda m: m.type == "error" and not m.text.startswith(
            "Failed to load resource") and pg.errors.append(m.text))
        try:
            yield pg
        finally:
            ctx.close()


def _screenshot(pg, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    pg.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("BRAGG_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)


def _open(pg, service, owner: str | None):
    pg.goto(f"{service.base_url}/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    if owner:
        pg.fill("#token", TOKENS[owner])
        pg.dispatch_event("#token", "change")


def test_submit_watch_and_see_the_preview(page, service, alice, tmp_path):
    pg = page
    _open(pg, service, "alice")
    pg.select_option("#example", "cubic_args")
    assert pg.is_checked("#mode-args")
    assert pg.input_value("#submission").startswith("-cell 100 100 100 90 90 90")
    pg.click("#submit")
    pg.wait_for_function("document.querySelector('#submit-result').dataset.jobId", timeout=30_000)
    job_id = pg.get_attribute("#submit-result", "data-job-id")
    assert pg.text_content("#submit-result") == f"queued job {job_id}"

    # the list shows the job until it is finished; the page then shows its preview image
    pg.wait_for_selector(f"#jobs tr[data-id='{job_id}'][data-status='finished']",
                         timeout=120_000)
    pg.wait_for_function("document.querySelector('#preview').complete && "
                         "document.querySelector('#preview').naturalWidth > 0", timeout=30_000)
    size = pg.evaluate("[document.querySelector('#preview').naturalWidth, "
                       "document.querySelector('#preview').naturalHeight]")
    rec = get(alice, job_id)
    assert rec["status"] == "finished" and rec["label"] == "cubic 256 (args)"
    assert size == [rec["shape"][1], rec["shape"][0]] == [256, 256]
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
    page's file input, uploaded, rendered; the page shows the preview of that job."""
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
    pg.wait_for_function("document.querySelector('#preview').naturalWidth === 256",
                         timeout=30_000)
    with service.client("carol") as carol:
        rec = get(carol, job_id)
    assert rec["status"] == "finished"
    assert rec["evaluations"] == 256 * 256 * 9  # the 3x3 detector oversampling of -mat cases
    assert pg.errors == []
