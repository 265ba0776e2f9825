"""The first hour of a new user of the API: a submission's problems are answered all at once, and
what the service does differently from the C program (its own file names, a short -cell completed
as nanoBragg does) is said in the job's warnings."""

from __future__ import annotations

from .helpers import SMALL_CONFIG

SMALL_ARGS = ["-default_F", "100", "-lambda", "6.2", "-N", "5", "-distance", "100",
              "-detpixels", "32"]


def _warnings_of(client, body: dict) -> list[str]:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    client.post(f"/v1/jobs/{r.json()['id']}/cancel")  # under the queued-jobs limit of the owner
    return r.json()["warnings"]


def test_every_problem_of_a_submission_is_answered_at_once(bob):
    # limits crossed (pixels, orientations, evaluations), a traced pixel off the detector and an
    # output the job cannot write: one 422 with each
    r = bob.post("/v1/jobs", json={
        "nanobragg_args": ["-cell", "100", "100", "100", "90", "90", "90", *SMALL_ARGS,
                           "-detpixels", "1000", "-mosaic_domains", "1000", "-phisteps", "2000",
                           "-mosaic", "1"],
        "trace_pixels": [[5000, 1]], "outputs": ["float", "hkl"]})
    assert r.status_code == 422, r.text
    body = r.json()
    limits = [e.get("limit") for e in body["errors"]]
    assert {"max_detector_pixels", "max_orientations", "max_evaluations"} <= set(limits), body
    fields = [e["field"] for e in body["errors"]]
    assert "outputs" in fields and "trace_pixels.0" in fields, body
    assert body["detail"].startswith(f"{len(body['errors'])} problems: "), body["detail"]
    # every file of 'files' at fault, not only the first
    r = bob.post("/v1/jobs", json={"nanobragg_args": ["-hkl", "a.hkl", "-mat", "b.mat", "-N", "3"],
                                   "files": {"a.hkl": "sha256:" + "0" * 64, "b.mat": "nonsense"}})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["files.a.hkl", "files.b.mat"], r.text
    # a header file not in 'files' beside a bad entry of it
    r = bob.post("/v1/jobs", json={"nanobragg_args": ["-img", "x.img", "-mask", "m.img", "-N", "3"],
                                   "files": {"m.img": "nonsense"}})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["files.m.img", "nanobragg_args.1"], r.text
    # a config naming two unknown uploads: both
    cfg = dict(SMALL_CONFIG, structure_factors={"hkl_file": "sha256:" + "1" * 64},
               crystal=dict(SMALL_CONFIG["crystal"], matrix_file="sha256:" + "2" * 64))
    r = bob.post("/v1/jobs", json={"config": cfg})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"config.structure_factors.hkl_file",
                                                        "config.crystal.matrix_file"}, r.text


def test_output_names_and_a_completed_cell_are_warned_about(bob):
    warnings = _warnings_of(bob, {"nanobragg_args": [
        "-cell", "50", "60", *SMALL_ARGS, "-floatfile", "mine.bin", "-intimage", "mine.img",
        "-noisefile", "noisy.img", "-nonoise"], "outputs": ["float", "smv"]})
    assert ("-floatfile mine.bin is ignored: the service names its files itself; the job writes "
            "it as floatimage.bin") in warnings, warnings
    assert ("-intimage mine.img is ignored: the service names its files itself; the job writes "
            "it as intimage.img") in warnings, warnings
    assert ("-noisefile noisy.img is ignored: the service names its files itself; the job writes "
            "the files its 'outputs' list asks for; add \"noise\" to it for noiseimage.img"
            ) in warnings, warnings
    assert ("-nonoise is ignored: the job writes the files its 'outputs' list asks for "
            "(float, smv)") in warnings, warnings
    # as the C program completes it: b is a, c is a, the angles 90
    assert any(w.startswith("-cell 50 60: completed as nanoBragg does, to the cell "
                            "50 60 50 90 90 90 (A, deg)") for w in warnings), warnings
    warnings = _warnings_of(bob, {"config": dict(SMALL_CONFIG, outputs={"float_file": "x.bin"}),
                                  "outputs": ["float"]})
    assert warnings == ["config.outputs.float_file is ignored: the service names its files "
                        "itself; the job writes it as floatimage.bin"], warnings
    # nothing to say about a plain submission
    assert _warnings_of(bob, {"nanobragg_args": ["-cell", "50", "60", "70", "90", "90", "90",
                                                 *SMALL_ARGS]}) == []
