"""The image viewer's routes against the float image and sim_core: regions at any step, statistics,
geometry; a series; the offline API docs."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from sim_core.config import load_config
from sim_core.geometry.detector import build_detector
from sim_core.geometry.resolution import beam_direction, pixel_resolution
from sim_core.lab_frame import resolve_frame
from sim_core.io.png import reduce_max
from tests.service.helpers import SMALL_CONFIG, submit, wait_status
from tests.service.test_series import SERIES

TILTED = {  # a tilted detector on a two-theta arm, beam centre off the middle
    "crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}, "Na": 5, "Nb": 5, "Nc": 5},
    "structure_factors": {"default_F": 50}, "beam": {"wavelength_A": 1.2},
    "detector": {"distance_mm": 120, "fast_pixels": 96, "slow_pixels": 80, "pixel_size_mm": 0.2,
                 "rotx_deg": 5, "roty_deg": 3, "rotz_deg": 2, "twotheta_deg": 15},
}


def floats(r: httpx.Response) -> np.ndarray:
    rows, cols = (int(x) for x in r.headers["x-image-shape"].split(","))
    return np.frombuffer(r.content, "<f4").reshape(rows, cols)


@pytest.fixture(scope="module")
def tilted_job(service):
    with service.client("alice") as alice:
        job = submit(alice, {"config": TILTED, "outputs": ["float", "png"]})
        rec = wait_status(alice, job["id"], timeout=120)
        assert rec["status"] == "finished", rec
        img = np.frombuffer(alice.get(f"/v1/jobs/{job['id']}/artifacts/floatimage.bin").content,
                            "<f4").reshape(rec["shape"])
    return rec, img


def test_regions_are_block_maxima_of_the_float_image(alice, tilted_job):
    rec, img = tilted_job
    base = f"/v1/jobs/{rec['id']}/image"
    whole = alice.get(base)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/octet-stream"
    assert np.array_equal(floats(whole), img)
    r = alice.get(base, params={"slow": "8:77", "fast": "3:96", "step": 4})
    assert r.headers["x-image-shape"] == "18,24" and r.headers["x-image-region"] == "8:77,3:96"
    assert np.array_equal(floats(r), reduce_max(img[8:77, 3:96], 4))
    s, f = np.unravel_index(np.argmax(img), img.shape)
    one = alice.get(base, params={"slow": f"{s}:{s + 1}", "fast": f"{f}:{f + 1}"})
    assert len(one.content) == 4 and floats(one)[0, 0] == img.max()
    # httpx asks for gzip and unpacks it: the bytes on the wire were compressed
    assert whole.headers.get("content-encoding") == "gzip"
    half = alice.get(base, params={"step": 2})
    assert np.array_equal(floats(half), reduce_max(img, 2))
    # unchanged: the ETag answers 304
    again = alice.get(base, params={"step": 2}, headers={"If-None-Match": half.headers["etag"]})
    assert again.status_code == 304


def test_region_errors_name_the_field(alice, bob, tilted_job):
    rec, _ = tilted_job
    base = f"/v1/jobs/{rec['id']}/image"
    for params, field in (({"slow": "5:5"}, "slow"), ({"fast": "0:97"}, "fast"),
                          ({"slow": "a:b"}, "slow"), ({"n": 2}, "n"), ({"step": 0}, "step")):
        r = alice.get(base, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["field"] == field, r.text
    assert bob.get(base).status_code == 404  # another owner's job does not exist for bob


def test_info_statistics_and_geometry_match_sim_core(alice, tilted_job):
    rec, img = tilted_job
    info = alice.get(f"/v1/jobs/{rec['id']}/image/info").json()
    assert info["shape"] == [80, 96] and info["images"] == 1 and info["n"] == 1
    pos = img[img > 0]
    assert info["stats"]["max"] == pytest.approx(float(img.max()))
    assert info["stats"]["positive"] == pos.size
    assert info["stats"]["percentiles"]["99.5"] == pytest.approx(np.percentile(pos, 99.5), rel=1e-6)

    pixels = [(0, 0), (79, 95), (40, 17), (3, 90)]
    g = alice.get(f"/v1/jobs/{rec['id']}/geometry",
                  params=[("pixel", f"{s},{f}") for s, f in pixels]).json()
    cfg = load_config(TILTED)
    frame = resolve_frame(cfg)
    det = build_detector(cfg.detector, frame)
    d, tt = pixel_resolution(det, beam_direction(frame), 1.2,
                             [p[0] for p in pixels], [p[1] for p in pixels])
    assert [p["pixel"] for p in g["pixels"]] == [list(p) for p in pixels]
    assert [p["d_A"] for p in g["pixels"]] == pytest.approx(d.tolist(), rel=1e-12)
    assert [p["twotheta_deg"] for p in g["pixels"]] == pytest.approx(tt.tolist(), rel=1e-12)
    assert g["shape"] == [80, 96] and g["twotheta_deg"] == pytest.approx(15)
    assert g["pix0_m"] == pytest.approx(det.pix0.tolist())
    r = alice.get(f"/v1/jobs/{rec['id']}/geometry", params={"pixel": "80,0"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "pixel.0"


def test_a_series_is_served_image_by_image(alice):
    """A series submitted through the API: ``n`` (numbered from the series' first image) picks the
    image, each the float file of that image; numbers outside the series are 422."""
    first = SERIES["scan"]["first_image"]
    rec = submit(alice, {"config": SERIES | {"scan": SERIES["scan"] | {"images": 3}},
                         "outputs": ["float"]})
    job_id = rec["id"]
    assert wait_status(alice, job_id, timeout=120)["status"] == "finished"
    images = []
    for n in range(first, first + 3):
        img = np.frombuffer(alice.get(f"/v1/jobs/{job_id}/images/{n}/artifacts/floatimage.bin")
                            .content, "<f4").reshape(24, 20)
        info = alice.get(f"/v1/jobs/{job_id}/image/info", params={"n": n}).json()
        assert (info["images"], info["first_image"], info["n"]) == (3, first, n)
        assert info["name"] == f"floatimage_{n:05d}.bin" and info["shape"] == [24, 20]
        assert info["stats"]["max"] == pytest.approx(float(img.max()))
        assert np.array_equal(floats(alice.get(f"/v1/jobs/{job_id}/image", params={"n": n})), img)
        half = alice.get(f"/v1/jobs/{job_id}/image", params={"n": n, "step": 2})
        assert np.array_equal(floats(half), reduce_max(img, 2))
        images.append(img)
    assert not np.array_equal(images[0], images[1])  # each image is its own φ range
    # without n: the first image
    assert alice.get(f"/v1/jobs/{job_id}/image/info").json()["n"] == first
    assert np.array_equal(floats(alice.get(f"/v1/jobs/{job_id}/image")), images[0])
    for bad in (first - 1, first + 3):
        r = alice.get(f"/v1/jobs/{job_id}/image", params={"n": bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "n", r.text


def test_jobs_without_a_float_image(alice):
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["smv"]})
    assert wait_status(alice, job["id"], timeout=60)["status"] == "finished"
    r = alice.get(f"/v1/jobs/{job['id']}/image/info")
    assert r.status_code == 404 and "float" in r.json()["hint"]
    # the geometry comes from the config alone
    assert alice.get(f"/v1/jobs/{job['id']}/geometry").json()["shape"] == [64, 64]


def test_api_docs_are_served_from_the_service(service):
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = httpx.get(service.base_url + page).text
        assert "cdn." not in html and "googleapis" not in html, page
        src = html.split(asset)[0].rsplit('"', 1)[1] + asset
        assert src.startswith("/"), src
        r = httpx.get(service.base_url + src)
        assert r.status_code == 200 and len(r.content) > 100_000, src
