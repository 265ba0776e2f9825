"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright over CDP):
submit an example, watch the job finish in the list, see its image in the viewer, read a trace.
The viewer's own tests are in test_viewer.py.
"""

from __future__ import annotations

import pytest

from tests.service.browser import open_page as _open, page, screenshot as _screenshot  # noqa: F401
from tests.service.conftest import TOKENS
from tests.service.helpers import get, golden

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

    # the list shows the job until it is finished; the page then shows its image in the viewer
    pg.wait_for_selector(f"#jobs tr[data-id='{job_id}'][data-status='finished']",
                         timeout=120_000)
    pg.wait_for_selector("#view[data-complete='1']", timeout=30_000)
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
