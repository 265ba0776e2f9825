"""Headless Chromium for the web page's tests (Debian's ``chromium``, driven by Playwright over
CDP): the ``page`` fixture, opening the page with a token, keeping screenshots.

``make test`` installs Debian's chromium where it is missing (root + apt-get); without one the
tests are skipped, saying so. Set ``BRAGG_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import TOKENS

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


def screenshot(pg, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    path = tmp_path / name
    if selector:
        pg.locator(selector).screenshot(path=str(path))
    else:
        pg.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("BRAGG_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def open_page(pg, service, owner: str | None):
    pg.goto(f"{service.base_url}/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    if owner:
        pg.fill("#token", TOKENS[owner])
        pg.dispatch_event("#token", "change")


