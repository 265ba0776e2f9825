"""A command line with several mistakes: the API answers every one at once, each at the index of
its flag (the parser's ArgumentError.errors); a C-style completion and the local command's -force
are warnings."""

from __future__ import annotations

from tests.service.helpers import wait_status


def test_every_error_of_a_command_line_at_its_flag(alice):
    args = ["-cell", "100", "-default_F", "1", "-distance", "far", "-detpixelz", "64",
            "-dtype", "half", "-pixel", "-1"]
    r = alice.post("/v1/jobs", json={"nanobragg_args": args})
    assert r.status_code == 422, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert list(errors) == ["nanobragg_args.4", "nanobragg_args.6", "nanobragg_args.8",
                            "nanobragg_args.10"]
    assert errors["nanobragg_args.6"] == "unknown flag -detpixelz (did you mean -detpixels?)"
    assert "-pixel (detector.pixel_size_mm)" in errors["nanobragg_args.10"]


def test_a_completed_cell_and_force_are_warnings_of_the_job(alice):
    r = alice.post("/v1/jobs", json={"nanobragg_args": ["-cell", "100", "60", "-default_F", "1",
                                                        "-detpixels", "8", "-force"]})
    assert r.status_code in (200, 201, 202), r.text
    job = r.json()
    assert any(w.startswith("-cell 100 60: completed as nanoBragg does, to the cell "
                            "100 60 100 90 90 90") for w in job["warnings"]), job["warnings"]
    assert "-force is ignored: the service's own limits apply (BRAGG_MAX_*)" in job["warnings"]
    assert wait_status(alice, job["id"])["status"] == "finished"
