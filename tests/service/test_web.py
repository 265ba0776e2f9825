"""The web page's server side: /, /static/*, /examples.json, and every example accepted and rendered."""

from __future__ import annotations

import httpx

from tests.service.helpers import submit, wait_status


def test_page_and_assets_are_served_without_a_token(service):
    r = httpx.get(f"{service.base_url}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in r.text and 'id="submit"' in r.text
    assert 'id="view"' in r.text and '<script src="/static/viewer.js"' in r.text
    for name, ctype in (("app.js", "javascript"), ("viewer.js", "javascript"),
                        ("trace.js", "javascript"), ("style.css", "text/css")):
        a = httpx.get(f"{service.base_url}/static/{name}")
        assert a.status_code == 200 and ctype in a.headers["content-type"], name
    assert httpx.get(f"{service.base_url}/static/nope.js").status_code == 404
    # the page is no API route: it stays out of the OpenAPI document
    assert "/" not in httpx.get(f"{service.base_url}/openapi.json").json()["paths"]


def test_every_example_is_accepted_and_renders(service, alice):
    examples = httpx.get(f"{service.base_url}/examples.json").json()
    assert {e["name"] for e in examples} >= {"cubic_args", "cubic_config", "mosaic_phi",
                                             "noise_misset"}
    for ex in examples:
        assert ex["title"] and ex["description"], ex["name"]
        rec = wait_status(alice, submit(alice, ex["submission"])["id"], timeout=180)
        assert rec["status"] == "finished", (ex["name"], rec)
        names = {a["name"] for a in rec["artifacts"]}
        assert {"floatimage.bin", "preview.png", "sha256.txt"} <= names, ex["name"]
