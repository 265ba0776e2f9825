"""Models and MTZ files through the service: upload checks with summaries and located 422s, jobs
whose structure factors come from them, and the P1 table artifact that the C program can read."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.simulate import simulate
from sim_core.experiment import local_files
from tests.service.helpers import download_all, submit, wait_status
from tests.structures import synthetic_structure, write_model, write_mtz

CELL = (40.0, 40.0, 30.0, 90.0, 90.0, 90.0)
GEOMETRY = {"crystal": {"Na": 5, "Nb": 5, "Nc": 5, "misset_deg": [10, 20, 30]},
            "beam": {"wavelength_A": 1.0},
            "detector": {"distance_mm": 60, "fast_pixels": 24, "slow_pixels": 24,
                         "pixel_size_mm": 2},
            "sampling": {"oversample": 1}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("structures")
    st = synthetic_structure(60, "P 43 21 2", CELL, seed=4)
    write_model(st, d / "m.pdb")
    write_mtz(d / "data.mtz", "P 43 21 2", CELL, 2.5, columns=(("FP", "F"), ("SIGFP", "Q")))
    write_mtz(d / "intensities.mtz", "P 21 21 21", (30, 35, 40, 90, 90, 90), 3.0,
              columns=(("SIGI", "Q"),))
    return d


def _post(client, name: str, data: bytes, kind: str):
    return client.post("/v1/files", data={"kind": kind}, files={"file": (name, data)})


def test_uploads_answer_with_a_summary(alice, inputs):
    r = _post(alice, "m.pdb", (inputs / "m.pdb").read_bytes(), "model")
    assert r.status_code == 201, r.text
    assert r.json()["summary"] == {"format": "pdb", "cell": list(CELL), "space_group": "P 43 21 2",
                                   "atoms": 60, "anisotropic_atoms": 0}
    r = _post(alice, "data.mtz", (inputs / "data.mtz").read_bytes(), "mtz")
    assert r.status_code == 201, r.text
    summary = r.json()["summary"]
    assert summary["space_group"] == "P 43 21 2" and summary["column"] == "FP"
    assert summary["reflections"] > 100 and summary["cell"] == list(CELL)
    assert [c["label"] for c in summary["columns"]] == ["H", "K", "L", "FP", "SIGFP"]
    # kept in the file's record: GET shows the same summary
    assert alice.get(f"/v1/files/{r.json()['id']}").json()["summary"] == summary


def test_bad_models_are_422_naming_the_line(alice, inputs):
    text = (inputs / "m.pdb").read_text()
    r = _post(alice, "cut.pdb", text[:300].encode(), "model")
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["line"] == 4 and err["message"].startswith("cut.pdb line 4: the file ends inside")
    assert "truncated" in err["message"] and "/tmp" not in err["message"]
    r = _post(alice, "nocell.pdb", "\n".join(x for x in text.split("\n")
                                             if not x.startswith("CRYST1")).encode(), "model")
    assert r.status_code == 422 and "no unit cell (no CRYST1 record)" in r.text
    r = _post(alice, "sg.pdb", text.replace("P 43 21 2 ", "P 43 21 7 ").encode(), "model")
    err = r.json()["errors"][0]
    assert r.status_code == 422 and err["line"] == 1
    assert err["message"] == "sg.pdb line 1: unknown space group 'P 43 21 7'"


def test_bad_mtz_files_are_422_naming_the_columns(alice, inputs):
    r = _post(alice, "intensities.mtz", (inputs / "intensities.mtz").read_bytes(), "mtz")
    assert r.status_code == 422
    assert r.json()["errors"][0]["message"] == (
        "intensities.mtz: no amplitude or intensity column (type F or J); the file has SIGI (Q)")
    data = (inputs / "data.mtz").read_bytes()
    r = _post(alice, "cut.mtz", data[:len(data) // 2], "mtz")
    assert r.status_code == 422 and "cut.mtz: truncated MTZ file" in r.text
    r = _post(alice, "sg.mtz", data.replace(b"'P 43 21 2'", b"'Q 99 99 9'"), "mtz")
    assert r.status_code == 422 and "unknown space group 'Q 99 99 9'" in r.text


def test_submission_checks_cell_column_and_outputs(alice, inputs):
    model = _post(alice, "m.pdb", (inputs / "m.pdb").read_bytes(), "model").json()["id"]
    mtz = _post(alice, "data.mtz", (inputs / "data.mtz").read_bytes(), "mtz").json()["id"]
    far = {**GEOMETRY, "crystal": {**GEOMETRY["crystal"], "cell": {"a_A": 41, "b_A": 40,
                                                                    "c_A": 30}},
           "structure_factors": {"model_file": model}}
    r = alice.post("/v1/jobs", json={"config": far})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.crystal.cell"
    assert "crystal.cell (41 40 30 90 90 90) differs from the cell of m.pdb" in err["message"]
    r = alice.post("/v1/jobs", json={"config": {**GEOMETRY, "structure_factors": {
        "mtz_file": mtz, "mtz_column": "FOBS"}}})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.structure_factors.mtz_column"
    assert "no column 'FOBS'; the file has FP (F), SIGFP (Q)" in err["message"]
    r = alice.post("/v1/jobs", json={"config": {**GEOMETRY, "crystal": {
        **GEOMETRY["crystal"], "cell": {"a_A": 40, "b_A": 40, "c_A": 30}},
        "structure_factors": {"default_F": 1}}, "outputs": ["float", "hkl"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "outputs"


@pytest.fixture(scope="module")
def model_job(service, inputs):
    with service.client("alice") as c:
        r = _post(c, "m.pdb", (inputs / "m.pdb").read_bytes(), "model")
        job = submit(c, {"config": {**GEOMETRY, "structure_factors": {"model_file": r.json()["id"]},
                                    "noise": {"seed": 1}},
                         "outputs": ["float", "hkl"]})
        rec = wait_status(c, job["id"], timeout=120)
        return job, rec, download_all(c, rec)


def test_model_job_publishes_its_p1_table(model_job):
    job, rec, files = model_job
    assert rec["status"] == "finished", rec
    assert "note: unit cell from m.pdb: 40 40 30 90 90 90 (P 43 21 2)" in job["warnings"]
    # the worker's note, from the table it computed
    assert any(w.startswith("note: structure factors") and "m.pdb (P 43 21 2, 60 atoms)" in w
               for w in rec["warnings"]), rec["warnings"]
    assert {"floatimage.bin", "structure_factors.hkl", "commands.txt"} <= set(files)
    first = files["structure_factors.hkl"].decode().split("\n", 1)[0].split()
    assert len(first) == 4 and all(x.lstrip("-").isdigit() for x in first[:3])


def test_commands_txt_shows_the_c_programs_way_and_it_reproduces_the_image(model_job, tmp_path):
    _, _, files = model_job
    script = files["commands.txt"].decode()
    ours = shlex.split(next(x for x in script.splitlines() if x.startswith("nanobragg ")))
    assert ours[ours.index("-model") + 1] == "m.pdb"
    c_line = next(x for x in script.splitlines() if x.startswith("# nanoBragg "))
    args = shlex.split(c_line[len("# nanoBragg "):])
    assert args[args.index("-cell") + 1:args.index("-cell") + 7] == ["40", "40", "30", "90",
                                                                      "90", "90"]
    assert args[args.index("-hkl") + 1] == "structure_factors.hkl"
    assert not {"-model", "-dtype", "-phi_mode", "-compile"} & set(args)
    # the C program's command line, run by our simulator, renders the job's image exactly
    (tmp_path / "structure_factors.hkl").write_bytes(files["structure_factors.hkl"])
    config = parse_nanobragg_args(args, base_dir=tmp_path).config
    image = simulate(config, local_files(tmp_path)).image
    job_image = np.frombuffer(files["floatimage.bin"], dtype="<f4").reshape(image.shape)
    assert job_image.max() > 0 and np.array_equal(image, job_image)


def test_mtz_job_in_the_args_form_names_its_column(alice, inputs):
    mtz = _post(alice, "data.mtz", (inputs / "data.mtz").read_bytes(), "mtz").json()["id"]
    job = submit(alice, {"nanobragg_args": ["-mtz", "data.mtz", "-lambda", "1", "-N", "5",
                                            "-distance", "60", "-detpixels", "24", "-pixel", "2",
                                            "-oversample", "1"],
                         "files": {"data.mtz": mtz}, "outputs": ["float"]})
    assert "note: data.mtz: data from column FP, the first amplitude column (choose another " \
           "with mtz_column / -mtz_column)" in job["warnings"]
    rec = wait_status(alice, job["id"], timeout=120)
    assert rec["status"] == "finished", rec


def test_a_series_from_a_model(alice, inputs, tmp_path):
    """Each image of a series from a model is the single render at its φ; the P1 table is one
    file of the dataset, and every image's route serves it."""
    import io
    import zipfile

    from sim_core.config import load_config
    from sim_core.series import image_config

    model = _post(alice, "m.pdb", (inputs / "m.pdb").read_bytes(), "model").json()["id"]
    config = {**GEOMETRY, "structure_factors": {"model_file": model},
              "scan": {"phi_start_deg": 5, "osc_range_deg": 1, "phi_steps": 2, "images": 3},
              "noise": {"seed": 3}}
    job = submit(alice, {"config": config, "outputs": ["float", "hkl"], "dtype": "float64"})
    rec = wait_status(alice, job["id"], timeout=120)
    assert rec["status"] == "finished", rec
    zf = zipfile.ZipFile(io.BytesIO(alice.get(f"/v1/jobs/{job['id']}/dataset").content))
    assert zf.namelist().count("structure_factors.hkl") == 1
    table = alice.get(f"/v1/jobs/{job['id']}/images/2/artifacts/structure_factors.hkl")
    assert table.status_code == 200 and table.content == zf.read("structure_factors.hkl")
    (tmp_path / "m.pdb").write_bytes((inputs / "m.pdb").read_bytes())
    series = load_config({**config, "structure_factors": {"model_file": "m.pdb"}})
    single = simulate(image_config(series, 2), local_files(tmp_path), dtype="float64")
    np.testing.assert_array_equal(
        np.frombuffer(zf.read("floatimage_00002.bin"), dtype="<f4").reshape(24, 24), single.image)
