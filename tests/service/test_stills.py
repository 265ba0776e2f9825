"""Stills datasets through the service: one submission with random orientations renders as a
series whose children write each image's ground truth beside it; the reflections route, the
dataset's experiment list and per-still commands; pricing by the costliest draws; faults and
cancel as for a rotation series."""

from __future__ import annotations

import io
import json
import shlex
import signal
import subprocess
import zipfile

import httpx
import numpy as np
import pytest

from sim_core.config import load_config
from sim_core.cost import estimate
from sim_core.ground_truth import REFLECTION_COLUMNS, image_truth
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.series import image_config, numbered_name
from sim_core.simulate import simulate
from sim_core.stills import costliest_config, draw_shot

from .conftest import wait_for
from .helpers import _evaluations_per_second, get, submit, wait_status

#: 4 stills from number 2 of a 40 x 36 detector, the crystal size (and so the oversampling) and
#: the wavelength varying
STILLS = {
    "crystal": {"cell": {"a_A": 40, "b_A": 40, "c_A": 30}, "Na": 6, "Nb": 6, "Nc": 6,
                "mosaic_spread_deg": 0.2, "mosaic_domains": 3},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 1.0, "fluence_photons_per_m2": 1e24},
    "detector": {"distance_mm": 50, "fast_pixels": 40, "slow_pixels": 36, "pixel_size_mm": 0.4},
    "scan": {"images": 4, "first_image": 2, "random_orientations": True, "orientation_seed": 7,
             "shot_N": {"kind": "uniform", "center": 6, "width": 3},
             "shot_wavelength_A": {"kind": "normal", "center": 1.0, "width": 0.01}},
    "noise": {"seed": 31},
}
NUMBERS = range(2, 6)


def _floats(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(shape)


@pytest.fixture(scope="module")
def finished_stills(service):
    with service.client("alice") as alice:
        rec = submit(alice, {"config": STILLS, "outputs": ["float", "smv"], "dtype": "float64",
                             "label": "four stills"})
        done = wait_status(alice, rec["id"], timeout=120)
    return rec, done


def _reference(n: int):
    """Image n rendered here, alone, from its own config (and its truth)."""
    cfg = image_config(load_config(STILLS), n)
    cfg.run.dtype = "float64"
    result = simulate(cfg)
    return result, image_truth(result)


def test_a_stills_dataset_is_a_series_priced_by_its_costliest_draws(finished_stills):
    rec, done = finished_stills
    assert rec["kind"] == "series" and rec["series"]["images"] == 4
    assert done["status"] == "finished", done
    assert done["series"]["images_done"] == 4
    stills = load_config(STILLS)
    per_image = estimate(costliest_config(stills)).evaluations
    assert rec["evaluations"] == 4 * per_image
    # the draws differ: the first image alone would have underpriced the dataset
    first = estimate(image_config(stills, 2)).evaluations
    assert per_image > first


def test_each_still_and_its_truth_are_its_own_single_render(finished_stills, alice):
    rec, _ = finished_stills
    for n in (2, 5):
        result, truth = _reference(n)
        base = f"/v1/jobs/{rec['id']}/images/{n}/artifacts"
        got = _floats(alice.get(f"{base}/floatimage.bin").content, (36, 40))
        assert np.array_equal(got, np.asarray(result.image, dtype="<f4")), n
        assert alice.get(f"{base}/reflections.csv").text == truth.reflections_csv()
        assert alice.get(f"{base}/crystal.mat").text == truth.mosflm_text()
        record = alice.get(f"{base}/truth.json").json()
        assert record["image"] == n and record["real_space_A"] == truth.record()["real_space_A"]
        shot = draw_shot(load_config(STILLS), n)
        assert record["shot"]["quaternion"] == list(shot.quaternion)


def test_the_reflections_route(finished_stills, alice):
    rec, _ = finished_stills
    _, truth = _reference(3)
    r = alice.get(f"/v1/jobs/{rec['id']}/images/3/reflections")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == list(REFLECTION_COLUMNS) and body["n"] == 3
    assert body["total"] == truth.count > 3 and not body["truncated"]
    top = body["reflections"][0]
    assert top[:3] == [int(truth.reflections[c][0]) for c in "hkl"]
    assert top[3:] == [float(truth.reflections[c][0]) for c in REFLECTION_COLUMNS[3:]]
    # strongest first, bounded by limit
    short = alice.get(f"/v1/jobs/{rec['id']}/images/3/reflections", params={"limit": 2}).json()
    assert short["reflections"] == body["reflections"][:2]
    assert short["truncated"] and short["total"] == body["total"]
    r = alice.get(f"/v1/jobs/{rec['id']}/images/3/reflections", params={"limit": 10 ** 6})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"
    r = alice.get(f"/v1/jobs/{rec['id']}/images/9/reflections")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "n"


def test_an_image_without_truth_has_no_reflections(alice):
    args = ["-cell", "50", "50", "50", "90", "90", "90", "-default_F", "100", "-lambda", "1",
            "-N", "3", "-distance", "80", "-detpixels", "16", "-pixel", "0.5"]
    rec = submit(alice, {"nanobragg_args": args, "outputs": ["float"]})
    assert wait_status(alice, rec["id"], timeout=60)["status"] == "finished"
    r = alice.get(f"/v1/jobs/{rec['id']}/images/1/reflections")
    assert r.status_code == 404 and "stills dataset" in r.json()["hint"]


def test_the_dataset_has_the_experiment_list_and_each_stills_command(finished_stills, alice,
                                                                     tmp_path):
    rec, _ = finished_stills
    r = alice.get(f"/v1/jobs/{rec['id']}/dataset")
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    for stem in ("intimage.img", "reflections.csv", "crystal.mat", "truth.json"):
        assert {numbered_name(stem, n) for n in NUMBERS} <= names, stem
    expt = json.loads(zf.read("experiments.expt"))
    assert expt["__id__"] == "ExperimentList" and len(expt["experiment"]) == 4
    for i, n in enumerate(NUMBERS):
        truth = json.loads(zf.read(numbered_name("truth.json", n)))
        image = expt["imageset"][expt["experiment"][i]["imageset"]]["images"]
        assert image == [numbered_name("intimage.img", n)] and image[0] in names
        crystal = expt["crystal"][expt["experiment"][i]["crystal"]]
        assert crystal["real_space_a"] == truth["real_space_A"]["a"]
        beam = expt["beam"][expt["experiment"][i]["beam"]]
        assert beam["wavelength"] == truth["wavelength_A"]
    md = json.loads(zf.read("run_metadata.json"))
    shots = md["series"]["stills"]["shots"]
    assert [s["n"] for s in shots] == list(NUMBERS)
    # commands.txt: one nanobragg line per still, each re-rendering its image byte for byte
    lines = [line for line in zf.read("commands.txt").decode().splitlines()
             if line.startswith("nanobragg ")]
    assert len(lines) == 4
    words = shlex.split(lines[2])[1:-3]  # image 4, without "</dev/null || exit"
    assert numbered_name("floatimage.bin", 4) in words
    cfg = parse_nanobragg_args(words).config
    cfg.run.dtype = "float64"
    again = np.asarray(simulate(cfg).image, dtype="<f4")
    assert np.array_equal(again, _floats(zf.read(numbered_name("floatimage.bin", 4)), (36, 40)))


def test_one_still_from_a_command_line(alice):
    args = ["-cell", "40", "40", "30", "90", "90", "90", "-default_F", "100", "-lambda", "1",
            "-N", "5", "-distance", "50", "-detpixels", "24", "-pixel", "0.4", "-oversample", "1",
            "-random_orientations", "-orientation_seed", "3", "-seed", "5"]
    rec = submit(alice, {"nanobragg_args": args, "outputs": ["float", "noise"]})
    assert rec["kind"] == "series" and rec["series"]["images"] == 1
    done = wait_status(alice, rec["id"], timeout=60)
    assert done["status"] == "finished", done
    r = alice.get(f"/v1/jobs/{rec['id']}/images/1/reflections")
    assert r.status_code == 200 and r.json()["total"] >= 1
    zf = zipfile.ZipFile(io.BytesIO(alice.get(f"/v1/jobs/{rec['id']}/dataset").content))
    expt = json.loads(zf.read("experiments.expt"))
    assert expt["imageset"][0]["images"] == [numbered_name("noiseimage.img", 1)]


def test_a_stills_dataset_with_the_client(service, tmp_path):
    from client.api_client import BraggClient

    from .conftest import TOKENS

    args = ["-cell", "40", "40", "30", "90", "90", "90", "-default_F", "100", "-lambda", "1",
            "-N", "5", "-distance", "50", "-detpixels", "24", "-pixel", "0.4", "-oversample", "1",
            "-random_orientations", "-orientation_seed", "9"]
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.submit_args(args, images=3, outputs=["float", "cbf"])
        assert rec["kind"] == "series" and rec["series"]["images"] == 3
        assert bc.wait(rec["id"], timeout=120)["status"] == "finished"
        paths = bc.fetch_dataset(rec["id"], tmp_path / "stills")
        names = {p.name for p in paths}
        assert {"experiments.expt", "reflections_00003.csv", "truth_00002.json"} <= names
        expt = json.loads((tmp_path / "stills" / "experiments.expt").read_text())
        assert [s["images"] for s in expt["imageset"]] == [
            [numbered_name("image.cbf", n)] for n in (1, 2, 3)]
        spots = bc.reflections(rec["id"], 2, limit=5)
        table = (tmp_path / "stills" / "reflections_00002.csv").read_text().splitlines()
        assert 1 <= len(spots) <= 5 and len(spots) == min(5, len(table) - 1)
        assert [spots[0][c] for c in "hkl"] == [int(x) for x in table[1].split(",")[:3]]


def test_stills_submissions_that_cannot_work_are_422(alice):
    r = alice.post("/v1/jobs", json={"config": STILLS, "outputs": ["float"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "outputs"
    assert "DIALS" in r.json()["errors"][0]["message"]
    # a dataset over the series' limit of images
    many = STILLS | {"scan": STILLS["scan"] | {"images": 100_000}}
    r = alice.post("/v1/jobs", json={"config": many})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.scan.images" and err["limit"] == "max_series_images"
    bad = STILLS | {"scan": STILLS["scan"] | {
        "shot_flux_scale": {"kind": "normal", "center": 1, "width": 5}}}
    r = alice.post("/v1/jobs", json={"config": bad})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.scan.shot_flux_scale" and "image" in err["message"]


# -- faults and cancel ------------------------------------------------------------------------------
def _stills_args(seconds_per_image: float, images: int) -> list[str]:
    """Stills of about ``seconds_per_image`` each on a CPU worker of this machine: 64 x 64 pixels,
    4 subpixels, as many mosaic domains as that takes."""
    per_domain = 64 * 64 * 4
    domains = int(min(2000, max(4, _evaluations_per_second() * seconds_per_image / per_domain)))
    return ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "1",
            "-N", "5", "-distance", "100", "-detpixels", "64", "-oversample", "2",
            "-mosaic", "0.5", "-mosaic_domains", str(domains), "-images", str(images),
            "-random_orientations", "-orientation_seed", "11", "-seed", "7"]


def _children(client, job_id: str) -> list[dict]:
    return client.get("/v1/jobs", params={"parent": job_id, "limit": 200}).json()["jobs"]


def test_a_worker_killed_mid_dataset_loses_no_still(service, alice, tmp_path):
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": _stills_args(0.6, 8), "outputs": ["float", "smv"],
                         "label": "stills survive a SIGKILL"})
    running = wait_for(lambda: next((c for c in _children(alice, job["id"])
                                     if c["status"] == "running" and c["progress"] > 0.05), None),
                       60, what="a child rendering")
    victim = running["worker"]
    service.kill_worker(victim, signal.SIGKILL)
    service.start_worker()
    done = wait_status(alice, job["id"], timeout=180)
    assert done["status"] == "finished", done
    assert done["series"]["images_done"] == 8
    assert get(alice, running["id"])["attempts"] == 2
    r = alice.get(f"/v1/jobs/{job['id']}/dataset")
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    assert subprocess.run(["sha256sum", "--quiet", "-c", "sha256.txt"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    for stem in ("floatimage.bin", "reflections.csv", "crystal.mat", "truth.json"):
        assert sorted(p.name for p in tmp_path.glob(stem.replace(".", "_*."))) == [
            numbered_name(stem, n) for n in range(1, 9)], stem
    expt = json.loads((tmp_path / "experiments.expt").read_text())
    assert len(expt["experiment"]) == 8
    service.ensure_workers(2)


def test_cancel_of_a_stills_dataset_stops_every_child(service, alice):
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": _stills_args(0.3, 40), "outputs": ["float", "smv"],
                         "label": "stills to cancel"})
    assert job["series"]["children"] >= 2
    wait_status(alice, job["id"], ("running",), timeout=60, pred=lambda r: r["progress"] > 0)
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code in (200, 202) and r.json()["cancel_requested"]
    rec = wait_status(alice, job["id"], timeout=30, interval=0.05)
    assert rec["status"] == "canceled", rec
    children = _children(alice, job["id"])
    assert all(c["status"] in ("canceled", "finished") for c in children)
    assert sum(c["status"] == "canceled" for c in children) >= 1
    ids = {c["id"] for c in children}
    busy = wait_for(lambda: not [w for w in httpx.get(f"{service.base_url}/readyz").json()["workers"]
                                 if w["job"] in ids], 30, what="no worker on a child")
    assert busy
    assert alice.get(f"/v1/jobs/{job['id']}/dataset").status_code == 409


def test_a_rotation_series_asks_for_its_reflections(alice):
    """Any render may ask for the output 'reflections': a rotation image's truth at its middle φ."""
    rotation = {k: v for k, v in STILLS.items() if k != "scan"} | {
        "scan": {"phi_start_deg": 5.0, "osc_range_deg": 0.3, "phi_steps": 2, "images": 2}}
    rec = submit(alice, {"config": rotation, "outputs": ["float", "reflections"],
                         "dtype": "float64"})
    assert rec["kind"] == "series"
    assert wait_status(alice, rec["id"], timeout=120)["status"] == "finished"
    cfg = image_config(load_config(rotation), 2)
    cfg.run.dtype = "float64"
    truth = image_truth(simulate(cfg))
    body = alice.get(f"/v1/jobs/{rec['id']}/images/2/reflections").json()
    assert body["total"] == truth.count >= 1
    assert body["reflections"][0][:3] == [int(truth.reflections[c][0]) for c in "hkl"]
    r = alice.get(f"/v1/jobs/{rec['id']}/images/2/artifacts/reflections.csv")
    assert r.text == truth.reflections_csv() and r.headers["content-type"].startswith("text/csv")
