"""The viewer's other images: a job's noisy and integer SMV and CBF images (read with fabio in the
API), an image a user uploads to compare (kind ``image``), line profiles, the statistics and
histogram; the job list's ETag and compression."""

from __future__ import annotations

import fabio
import numpy as np
import pytest
from fabio.cbfimage import CbfImage

from sim_core.io.png import reduce_max
from sim_core.io.smv import read_smv
from tests.service.helpers import SMALL_CONFIG, submit, wait_status
from tests.service.test_images import floats


@pytest.fixture(scope="module")
def every_image(service, tmp_path_factory):
    """A 64 x 64 job with every image output, and its files as the worker wrote them."""
    out = tmp_path_factory.mktemp("every_image")
    with service.client("alice") as alice:
        job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float", "smv", "noise", "cbf"]})
        rec = wait_status(alice, job["id"], timeout=120)
        assert rec["status"] == "finished", rec
        files = {}
        for name in ("floatimage.bin", "intimage.img", "noiseimage.img", "image.cbf"):
            (out / name).write_bytes(alice.get(f"/v1/jobs/{rec['id']}/artifacts/{name}").content)
            files[name] = out / name
    pixels = {"floatimage.bin": np.fromfile(files["floatimage.bin"], "<f4").reshape(64, 64),
              "intimage.img": read_smv(files["intimage.img"])[1],
              "noiseimage.img": read_smv(files["noiseimage.img"])[1],
              "image.cbf": fabio.open(str(files["image.cbf"])).data}
    return rec, pixels


@pytest.mark.parametrize("artifact", ["noiseimage.img", "intimage.img", "image.cbf"])
def test_each_image_of_a_job_is_served_as_float32(alice, every_image, artifact):
    rec, pixels = every_image
    want = pixels[artifact].astype(np.float32)
    base = f"/v1/jobs/{rec['id']}/image"
    info = alice.get(f"{base}/info", params={"artifact": artifact}).json()
    assert info["artifact"] == artifact and info["shape"] == [64, 64]
    assert info["artifacts"] == ["floatimage.bin", "noiseimage.img", "intimage.img", "image.cbf"]
    st = info["stats"]
    assert (st["min"], st["max"]) == (float(want.min()), float(want.max()))
    assert st["mean"] == pytest.approx(float(want.mean(dtype=np.float64)), rel=1e-9)
    assert st["saturation"] == 65535.0
    assert st["overloads"] == int(np.count_nonzero(want >= 65535))
    assert sum(st["histogram"]["counts"]) == want.size
    assert np.array_equal(floats(alice.get(base, params={"artifact": artifact})), want)
    half = alice.get(base, params={"artifact": artifact, "step": 2, "slow": "1:64"})
    assert np.array_equal(floats(half), reduce_max(want[1:], 2))
    # the float image stays the default; an unknown artifact names the field
    assert alice.get(f"{base}/info").json()["artifact"] == "floatimage.bin"
    bad = alice.get(base, params={"artifact": "run_metadata.json"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "artifact"


def test_statistics_say_min_max_mean_and_the_histogram_bins(alice, every_image):
    rec, pixels = every_image
    img = pixels["floatimage.bin"]
    st = alice.get(f"/v1/jobs/{rec['id']}/image/info").json()["stats"]
    assert st["max"] == float(img.max()) and st["min"] == float(img.min())
    assert st["max"] > st["percentiles"]["99.5"]  # the maximum is the maximum, not a percentile
    h = st["histogram"]
    assert (h["lo"], h["hi"], h["scale"]) == (st["min"], st["max"], "log1p")
    x = np.log1p(img.astype(np.float64) - h["lo"]) / np.log1p(h["hi"] - h["lo"])
    want = np.bincount(np.minimum((x * 256).astype(int), 255).ravel(), minlength=256)
    assert h["counts"] == want.tolist()
    assert h["counts"][-1] >= 1  # the brightest pixel is in the last bin


def test_a_profile_is_the_pixels_on_the_line(alice, every_image):
    rec, pixels = every_image
    img = pixels["floatimage.bin"]
    r = alice.get(f"/v1/jobs/{rec['id']}/image/profile", params={"start": "2,3", "end": "40,60"})
    assert r.status_code == 200, r.text
    p = r.json()
    assert len(p["pixels"]) == 58 and p["pixels"][0] == [2, 3] and p["pixels"][-1] == [40, 60]
    assert p["values"] == [float(img[s, f]) for s, f in p["pixels"]]
    assert p["distance_px"][-1] == pytest.approx(np.hypot(38, 57), abs=1e-4)
    noisy = alice.get(f"/v1/jobs/{rec['id']}/image/profile",
                      params={"start": "5,0", "end": "5,63", "artifact": "noiseimage.img"}).json()
    assert noisy["values"] == pixels["noiseimage.img"][5].astype(float).tolist()
    out = alice.get(f"/v1/jobs/{rec['id']}/image/profile", params={"start": "2,3", "end": "64,0"})
    assert out.status_code == 422 and out.json()["errors"][0]["field"] == "end"


def test_an_uploaded_image_is_viewed_like_a_job_s(alice, bob, every_image, tmp_path):
    rec, pixels = every_image
    frame = (pixels["floatimage.bin"] * 3 + 7).astype(np.int32)
    frame[10, 11] = 1_000_000
    path = tmp_path / "frame.cbf"
    CbfImage(data=frame).write(str(path))
    r = alice.post("/v1/files", data={"kind": "image"},
                   files={"file": ("frame.cbf", path.read_bytes())})
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["kind"] == "image"
    assert up["summary"] == {"format": "cbf", "shape": [64, 64], "dtype": "int32",
                             "saturation": None}
    base = f"/v1/files/{up['id']}/image"
    assert np.array_equal(floats(alice.get(base)), frame.astype(np.float32))
    info = alice.get(f"{base}/info").json()
    assert info["stats"]["max"] == 1_000_000.0 and info["name"] == "frame.cbf"
    prof = alice.get(f"{base}/profile", params={"start": "10,0", "end": "10,20"}).json()
    assert prof["values"][11] == 1_000_000.0
    # another owner's file is not found; a file of another kind is not an image
    assert bob.get(base).status_code == 404
    hkl = alice.post("/v1/files", data={"kind": "hkl"},
                     files={"file": ("p1.hkl", b"0 0 1 100.0\n1 0 0 120.0\n")}).json()
    not_image = alice.get(f"/v1/files/{hkl['id']}/image/info")
    assert not_image.status_code == 409 and "hkl" in not_image.json()["detail"]
    # an SMV image from the job uploads too; garbage is refused naming the file
    smv = alice.post("/v1/files", data={"kind": "image"}, files={
        "file": ("noisy.img", alice.get(f"/v1/jobs/{rec['id']}/artifacts/noiseimage.img").content)})
    assert smv.json()["summary"]["format"] == "smv"
    got = floats(alice.get(f"/v1/files/{smv.json()['id']}/image"))
    assert np.array_equal(got, pixels["noiseimage.img"].astype(np.float32))
    junk = alice.post("/v1/files", data={"kind": "image"}, files={"file": ("x.img", b"hello")})
    assert junk.status_code == 422 and "x.img" in junk.json()["errors"][0]["message"]


def test_the_job_list_answers_304_while_unchanged_and_is_compressed(alice, every_image):
    first = alice.get("/v1/jobs", params={"limit": 50})
    assert first.status_code == 200 and first.headers["etag"]
    assert first.headers.get("content-encoding") == "gzip" or len(first.content) < 1024
    again = alice.get("/v1/jobs", params={"limit": 50},
                      headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # a change in the list changes the tag
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float"]})
    changed = alice.get("/v1/jobs", params={"limit": 50},
                        headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and job["id"] in changed.text
    wait_status(alice, job["id"], timeout=120)
