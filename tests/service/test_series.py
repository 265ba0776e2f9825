"""Rotation series through the service: one submission, a parent and child jobs on the normal
queues, every image bit-identical to a single render at its φ, per-image routes, the dataset zip,
cancel of the whole series, and the series' limits."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import time
import zipfile

import fabio
import httpx
import numpy as np
import pytest
from fabio.cbfimage import PilatusHeader

from sim_core.config import load_config
from sim_core.cost import estimate
from sim_core.series import image_config, image_seed, numbered_name
from sim_core.simulate import simulate

from .conftest import wait_for
from .helpers import get, long_args, submit, wait_status, with_flag

#: 6 images of 0.5 deg from phi 10, 3 phi steps each, 4 mosaic domains, 24 x 20 pixels
SERIES = {
    "crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}, "Na": 4, "Nb": 4, "Nc": 4,
                "mosaic_spread_deg": 0.4, "mosaic_domains": 4},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 1.0, "exposure_s": 2.0},
    "detector": {"distance_mm": 80, "fast_pixels": 20, "slow_pixels": 24, "pixel_size_mm": 0.5},
    "scan": {"phi_start_deg": 10.0, "osc_range_deg": 0.5, "phi_steps": 3, "images": 6,
             "first_image": 3},
    "noise": {"seed": 4242},
}


def _floats(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(shape)


@pytest.fixture(scope="module")
def finished_series(service):
    with service.client("alice") as alice:
        rec = submit(alice, {"config": SERIES, "outputs": ["float", "smv", "cbf", "png"],
                             "dtype": "float64", "trace_pixels": [[5, 7]], "label": "six"})
        done = wait_status(alice, rec["id"], timeout=120)
    return rec, done


def test_a_series_is_one_job_with_children(finished_series, alice):
    rec, done = finished_series
    assert rec["kind"] == "series" and rec["series"]["images"] == 6
    per_image = estimate(image_config(load_config(SERIES), 3)).evaluations
    assert rec["series"]["first_image"] == 3 and rec["evaluations"] == 6 * per_image
    assert done["status"] == "finished", done
    s = done["series"]
    assert (s["images_done"], s["images_failed"], s["children_ended"]) == (6, 0, s["children"])
    assert done["progress"] == 1.0
    page = alice.get("/v1/jobs", params={"parent": rec["id"], "limit": 200}).json()
    children = page["jobs"]
    assert sum(len(c["image_numbers"]) for c in children) == 6
    assert sorted(n for c in children for n in c["image_numbers"]) == list(range(3, 9))
    assert all(c["parent"] == rec["id"] and c["status"] == "finished" for c in children)
    # the owner's list shows the series once, not its children
    mine = {j["id"] for j in alice.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert rec["id"] in mine and not mine & {c["id"] for c in children}
    # a child is canceled with its series only
    r = alice.post(f"/v1/jobs/{children[0]['id']}/cancel")
    assert r.status_code == 409 and rec["id"] in r.json()["hint"]


def test_each_image_is_a_single_render_at_its_phi(finished_series, alice, tmp_path):
    rec, _ = finished_series
    series = load_config(SERIES)
    for n in (3, 6, 8):
        r = alice.get(f"/v1/jobs/{rec['id']}/images/{n}/artifacts/floatimage.bin")
        assert r.status_code == 200, r.text
        single = simulate(image_config(series, n), dtype="float64")
        np.testing.assert_array_equal(_floats(r.content, (24, 20)), single.image)
        md = alice.get(f"/v1/jobs/{rec['id']}/images/{n}/artifacts/run_metadata.json").json()
        assert md["seeds"]["seed"] == image_seed(4242, n)
        assert md["series_image"]["phi_start_deg"] == 10.0 + (n - 3) * 0.5
        smv = fabio.open(io.BytesIO(
            alice.get(f"/v1/jobs/{rec['id']}/images/{n}/artifacts/intimage.img").content))
        assert float(smv.header["PHI"]) == float(smv.header["OSC_START"]) == 10.0 + (n - 3) * 0.5
        assert float(smv.header["OSC_RANGE"]) == 0.5
        cbf_bytes = alice.get(f"/v1/jobs/{rec['id']}/images/{n}/artifacts/image.cbf").content
        path = tmp_path / f"image_{n}.cbf"
        path.write_bytes(cbf_bytes)
        cbf = fabio.open(str(path))
        h = PilatusHeader(cbf.header["_array_data.header_contents"])
        assert h["Start_angle"] == 10.0 + (n - 3) * 0.5 and h["Angle_increment"] == 0.5
        assert h["Exposure_time"] == 2.0 and h["Wavelength"] == 1.0
        assert h["Detector_distance"] == pytest.approx(0.08)
        np.testing.assert_array_equal(cbf.data, smv.data.astype(np.int32))
    # the viewer's routes read the same image
    r = alice.get(f"/v1/jobs/{rec['id']}/image", params={"n": 4})
    single = simulate(image_config(series, 4), dtype="float64")
    np.testing.assert_array_equal(_floats(r.content, (24, 20)),
                                  single.image.astype(np.float32))
    info = alice.get(f"/v1/jobs/{rec['id']}/image/info", params={"n": 4}).json()
    assert info["images"] == 6 and info["first_image"] == 3 and info["n"] == 4
    for bad in (2, 9):
        r = alice.get(f"/v1/jobs/{rec['id']}/images/{bad}/artifacts/floatimage.bin")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "n"


def test_traces_of_an_image(finished_series, alice):
    rec, _ = finished_series
    r = alice.get(f"/v1/jobs/{rec['id']}/images/5/trace", params={"pixel": "5,7"})
    assert r.status_code == 200 and "TRACE" in r.text
    assert r.text == simulate(_traced(5, (5, 7)), dtype="float64").traces[0].text
    # an untraced pixel: 404 naming the POST that traces it, then the trace job
    r = alice.get(f"/v1/jobs/{rec['id']}/images/5/trace", params={"pixel": "1,2"})
    assert r.status_code == 404 and f"/images/5/traces" in r.json()["hint"]
    r = alice.post(f"/v1/jobs/{rec['id']}/images/5/traces", json={"pixels": [[1, 2]]})
    assert r.status_code == 202, r.text
    wait_status(alice, r.json()["trace_job"]["id"], timeout=60)
    r = alice.get(f"/v1/jobs/{rec['id']}/images/5/trace", params={"pixel": "1,2"})
    assert r.status_code == 200
    assert r.text == simulate(_traced(5, (1, 2)), dtype="float64").traces[0].text


def _traced(n: int, pixel):
    cfg = image_config(load_config(SERIES), n)
    cfg.run.trace_pixels = [pixel]
    return cfg


def test_the_dataset_is_one_verified_zip(finished_series, alice):
    rec, done = finished_series
    r = alice.get(f"/v1/jobs/{rec['id']}/dataset")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    assert names[-1] == "sha256.txt"
    for stem in ("floatimage_{:05d}.bin", "intimage_{:05d}.img", "image_{:05d}.cbf",
                 "preview_{:05d}.png", "trace_5_7_{:05d}.log"):
        assert {stem.format(n) for n in range(3, 9)} <= set(names), stem
    sums = dict(reversed(line.split("  ")) for line in zf.read("sha256.txt").decode().splitlines())
    assert set(sums) == set(names) - {"sha256.txt"}
    for name in names[:-1]:
        assert hashlib.sha256(zf.read(name)).hexdigest() == sums[name], name
    md = json.loads(zf.read("run_metadata.json"))
    assert md["kind"] == "series" and md["series"]["images"] == 6
    im = {e["n"]: e for e in md["series"]["image"]}
    assert sorted(im) == list(range(3, 9))
    assert im[7]["phi_start_deg"] == 12.0 and im[7]["seed"] == image_seed(4242, 7)
    assert im[7]["files"]["floatimage_00007.bin"] == sums["floatimage_00007.bin"]
    assert im[7]["render_elapsed_s"] > 0
    commands = zf.read("commands.txt").decode()
    assert commands.count("\n0000") == 6 and "-floatfile floatimage_\"$n\".bin" in commands
    # the images in the zip are the ones the image route serves
    one = alice.get(f"/v1/jobs/{rec['id']}/images/7/artifacts/floatimage.bin").content
    assert zf.read("floatimage_00007.bin") == one


def test_series_limits_are_checked_at_submission(alice):
    r = alice.post("/v1/jobs", json={"config": SERIES | {"scan": SERIES["scan"] | {
        "images": 5000}}})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.scan.images" and err["limit"] == "max_series_images"
    r = alice.post("/v1/jobs", json={"config": SERIES | {"scan": SERIES["scan"] | {
        "osc_range_deg": None}}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("config.scan")


def test_a_series_from_a_command_line(alice):
    args = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "100", "-lambda", "1",
            "-N", "4", "-distance", "80", "-detpixels", "16", "-pixel", "0.5", "-phi", "2",
            "-osc", "1", "-phisteps", "2", "-images", "4", "-seed", "99"]
    rec = submit(alice, {"nanobragg_args": args, "outputs": ["float"]})
    assert rec["kind"] == "series" and rec["series"]["images"] == 4
    done = wait_status(alice, rec["id"], timeout=60)
    assert done["status"] == "finished" and done["series"]["images_done"] == 4
    assert get(alice, rec["id"])["progress"] == 1.0


# -- faults and cancel ------------------------------------------------------------------------------
def _series_args(seconds_per_image: float, images: int) -> list[str]:
    """LONG_ARGS as a series: ``images`` images of about ``seconds_per_image`` each on a CPU
    worker of this machine, 64 x 64 pixels."""
    return with_flag(long_args(seconds_per_image * 4), "-detpixels", 64) + [
        "-images", str(images), "-seed", "7"]


def _children(client, job_id: str) -> list[dict]:
    return client.get("/v1/jobs", params={"parent": job_id, "limit": 200}).json()["jobs"]


def test_a_worker_killed_mid_series_loses_no_image(service, alice, tmp_path):
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": _series_args(0.6, 8), "outputs": ["float", "smv"],
                         "label": "survives a SIGKILL"})
    running = wait_for(lambda: next((c for c in _children(alice, job["id"])
                                     if c["status"] == "running" and c["progress"] > 0.05), None),
                       60, what="a child rendering")
    victim = running["worker"]
    service.kill_worker(victim, signal.SIGKILL)
    service.start_worker()
    done = wait_status(alice, job["id"], timeout=120)
    assert done["status"] == "finished", done
    assert done["series"]["images_done"] == 8
    taken_over = get(alice, running["id"])
    assert taken_over["attempts"] == 2 and taken_over["worker"] != victim
    # every image is in the dataset, each verified by sha256.txt
    r = alice.get(f"/v1/jobs/{job['id']}/dataset")
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    assert subprocess.run(["sha256sum", "--quiet", "-c", "sha256.txt"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    assert sorted(p.name for p in tmp_path.glob("floatimage_*.bin")) == [
        numbered_name("floatimage.bin", n) for n in range(1, 9)]
    assert not list((service.data_dir / "tmp").glob(f"job-{running['id']}-*"))
    service.ensure_workers(2)


def test_cancel_of_a_running_series_stops_every_child(service, alice):
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": _series_args(0.3, 40), "outputs": ["float"],
                         "label": "to cancel"})
    assert job["series"]["children"] >= 2
    # the series' progress moves while its children render (before any of them has ended)
    wait_status(alice, job["id"], ("running",), timeout=60, pred=lambda r: r["progress"] > 0)
    t0 = time.monotonic()
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code in (200, 202) and r.json()["cancel_requested"]
    rec = wait_status(alice, job["id"], timeout=10, interval=0.02)
    elapsed = time.monotonic() - t0
    assert rec["status"] == "canceled", rec
    children = _children(alice, job["id"])
    assert {c["status"] for c in children} == {"canceled"} or all(
        c["status"] in ("canceled", "finished") for c in children)
    assert sum(c["status"] == "canceled" for c in children) >= 1
    assert elapsed < 2.0, elapsed
    ids = {c["id"] for c in children}
    time.sleep(3)
    busy = [w for w in httpx.get(f"{service.base_url}/readyz").json()["workers"]
            if w["job"] in ids]
    assert busy == []
    assert alice.get(f"/v1/jobs/{job['id']}/dataset").status_code == 409
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_a_series_fails_with_its_images_and_reasons(service, alice):
    """With BRAGG_JOB_RETRIES=1 a child has two attempts; killing both fails its images, the
    others finish, and the series ends failed naming them."""
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": _series_args(1.5, 2), "outputs": ["float"]})
    first = wait_for(lambda: next((c for c in _children(alice, job["id"])
                                   if c["status"] == "running" and c["progress"] > 0.05), None),
                     60, what="a child rendering")
    service.start_worker()
    service.kill_worker(first["worker"], signal.SIGKILL)
    second = wait_status(alice, first["id"], ("running",), timeout=60,
                         pred=lambda r: r["attempts"] == 2 and r["progress"] > 0)
    service.kill_worker(second["worker"], signal.SIGKILL)
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "failed", done
    s = done["series"]
    assert s["images_failed"] == len(first["image_numbers"])
    assert s["images_done"] == 2 - s["images_failed"]
    assert s["failures"][0]["images"] == first["image_numbers"]
    assert s["failures"][0]["error"]["type"] == "WorkerLost"
    assert done["error"]["type"] == "ImagesFailed"
    assert f"image {first['image_numbers'][0]}" in done["error"]["message"]
    service.ensure_workers(2)


def test_a_series_recorded_by_an_api_that_died_before_enqueueing_is_rendered(service, alice):
    """The parent and its children are written by one script, the children into the outbox: an
    API that dies right after it leaves nothing half made, and the sweeper enqueues the children."""
    body = {"config": SERIES | {"scan": SERIES["scan"] | {"images": 4}},
            "outputs": ["float"], "label": "series in the outbox"}
    service.post_to_an_api_that_dies_after_the_record(body, {"Authorization": "Bearer alice-token"})
    jobs = alice.get("/v1/jobs", params={"limit": 10}).json()["jobs"]
    job = next(j for j in jobs if j["label"] == "series in the outbox")
    assert job["kind"] == "series" and job["series"]["images"] == 4
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "finished" and done["series"]["images_done"] == 4
    assert sorted(n for c in _children(alice, job["id"]) for n in c["image_numbers"]) == [3, 4, 5, 6]
