"""The NeXus output through the service: a single job's ``image.nxs``, a series' master file over its
children's data files in the dataset, read back with h5py + hdf5plugin (pixels, φ) and the
``nxmx`` package (pixel positions), the client's verified fetch, and the viewer on NeXus frames."""

from __future__ import annotations

import io

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest

from client.api_client import BraggClient, read_sha256_list
from jobs.store import sha256_file
from sim_core.config import load_config
from sim_core.geometry.detector import build_detector
from sim_core.geometry.resolution import beam_direction, pixel_centres
from sim_core.io.smv import read_smv
from sim_core.lab_frame import resolve_frame
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.series import series_of
from tests.sim_core.test_nexus import _nxmx_pixel_centres

from .conftest import TOKENS
from .helpers import download_all, submit, upload, wait_status

#: a tilted XDS-convention detector of 14 x 9 pixels (the geometry the file must carry)
SINGLE_ARGS = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "2",
               "-lambda", "1.3", "-pixel", "0.172", "-detpixels_x", "14", "-detpixels_y", "9",
               "-phi", "3", "-osc", "0.5", "-xds", "-distance", "100", "-ORGX", "5", "-ORGY", "3",
               "-twotheta", "5", "-detector_rotz", "2"]

#: 4 images of 0.5 deg from phi 10, tilted by 2-theta, the NeXus frames the SMV counts
SERIES = {
    "crystal": {"cell": {"a_A": 50, "b_A": 60, "c_A": 70}, "Na": 4, "Nb": 4, "Nc": 4},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 1.0, "exposure_s": 2.0},
    "detector": {"distance_mm": 80, "fast_pixels": 20, "slow_pixels": 24, "pixel_size_mm": 0.5,
                 "twotheta_deg": 6.0},
    "scan": {"phi_start_deg": 10.0, "osc_range_deg": 0.5, "phi_steps": 2, "images": 4,
             "first_image": 3},
    "outputs": {"nexus_image": "int"},
    "noise": {"seed": 77},
}


def _frames(path_or_bytes, name: str = "/entry/data/data") -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with h5py.File(src, "r") as f:
        return f[name][()]


def _assert_pixels_where_sim_core_puts_them(path, config):
    """Every pixel's position from the file alone (nxmx) against sim_core's, by the distance from
    the sample and the angle to the beam (quantities no frame changes), within 1 um."""
    frame = resolve_frame(config)
    det = build_detector(config.detector, frame)
    pos, _, shape = _nxmx_pixel_centres(path)
    assert tuple(shape[1:]) == (det.spixels, det.fpixels)
    ss, ff = np.meshgrid(np.arange(det.spixels), np.arange(det.fpixels), indexing="ij")
    beam = beam_direction(frame)
    ours = pixel_centres(det, beam, ss.ravel(), ff.ravel()).numpy() * 1000.0
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), np.linalg.norm(ours, axis=1),
                               rtol=0, atol=1e-3)
    np.testing.assert_allclose(pos @ [0, 0, 1], ours @ beam.numpy(), rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def single(service):
    with service.client("alice") as alice:
        rec = submit(alice, {"nanobragg_args": SINGLE_ARGS,
                             "outputs": ["float", "smv", "nexus"]})
        done = wait_status(alice, rec["id"], timeout=120)
        assert done["status"] == "finished", done
        return done, download_all(alice, done)


@pytest.fixture(scope="module")
def series(service, tmp_path_factory):
    with service.client("alice") as alice:
        rec = submit(alice, {"config": SERIES, "outputs": ["float", "smv", "nexus"]})
        done = wait_status(alice, rec["id"], timeout=180)
        assert done["status"] == "finished", done
    dest = tmp_path_factory.mktemp("nexus") / "dataset"
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        paths = bc.fetch(done["id"], dest)
    return done, dest, paths


def test_a_single_job_writes_its_float_image_with_the_full_geometry(single, tmp_path):
    rec, files = single
    assert "image.nxs" in files
    floats = np.frombuffer(files["floatimage.bin"], "<f4").reshape(rec["shape"])
    frames = _frames(files["image.nxs"])
    assert frames.shape == (1, *rec["shape"]) and frames.dtype == np.float32
    assert np.array_equal(frames[0], floats) and floats.max() > 0
    path = tmp_path / "image.nxs"
    path.write_bytes(files["image.nxs"])
    _assert_pixels_where_sim_core_puts_them(path, parse_nanobragg_args(SINGLE_ARGS).config)
    with h5py.File(path, "r") as f:
        assert f["/entry/sample/transformations/phi"][()] == pytest.approx(3.0)


def test_a_series_fetch_has_one_master_over_every_child_data_file(series):
    rec, dest, paths = series
    names = sorted(p.name for p in paths)
    data_files = [n for n in names if n.startswith("image_data_")]
    # a series is split into at least one child per live worker: several data files
    assert len(data_files) >= 2 and "image.nxs" in names
    listed = read_sha256_list(dest / "sha256.txt")
    for n in data_files + ["image.nxs"]:
        assert listed[n] == sha256_file(dest / n)
    config = load_config(SERIES)
    images = series_of(config)
    with h5py.File(dest / "image.nxs", "r") as f:
        data = f["/entry/data/data"]
        assert data.is_virtual and data.shape == (4, 24, 20) and data.dtype == np.uint16
        assert not np.array_equal(data[0], data[3])  # the frames are in image order
        for k, im in enumerate(images):
            smv = read_smv(dest / f"intimage_{im.n:05d}.img")[1]
            assert np.array_equal(data[k], smv), im.n
        gonio = f["/entry/sample/transformations"]
        np.testing.assert_array_equal(gonio["phi"][()], [im.phi_start_deg for im in images])
        np.testing.assert_array_equal(gonio["phi_end"][()],
                                      [im.phi_start_deg + im.osc_deg for im in images])
        assert [im.phi_start_deg for im in images] == [10.0, 10.5, 11.0, 11.5]
        assert f["/entry/instrument/detector/data"].shape == (4, 24, 20)
    _assert_pixels_where_sim_core_puts_them(dest / "image.nxs", config)


def test_the_viewer_shows_nexus_frames(single, series, alice):
    rec, files = single
    r = alice.get(f"/v1/jobs/{rec['id']}/image", params={"artifact": "image.nxs"})
    assert r.status_code == 200, r.text
    floats = np.frombuffer(files["floatimage.bin"], "<f4").reshape(rec["shape"])
    assert np.array_equal(np.frombuffer(r.content, "<f4").reshape(rec["shape"]), floats)
    srec, dest, _ = series
    for n in (3, 6):  # the first image of one child and the last of another
        r = alice.get(f"/v1/jobs/{srec['id']}/image", params={"artifact": "image.nxs", "n": n})
        assert r.status_code == 200, r.text
        smv = read_smv(dest / f"intimage_{n:05d}.img")[1]
        assert np.array_equal(np.frombuffer(r.content, "<f4").reshape(24, 20), smv)
        info = alice.get(f"/v1/jobs/{srec['id']}/image/info",
                         params={"artifact": "image.nxs", "n": n}).json()
        assert info["stats"]["max"] == smv.max() and info["stats"]["saturation"] == 65535
        assert "image.nxs" in info["artifacts"]
    # a series image's image.nxs is the data file of the child that rendered it, with its phi
    r = alice.get(f"/v1/jobs/{srec['id']}/images/4/artifacts/image.nxs")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-hdf5"
    assert any(r.content == p.read_bytes() for p in dest.glob("image_data_*.nxs"))
    assert 10.5 in _frames(r.content, "/entry/sample/transformations/phi")
    missing = alice.get(f"/v1/jobs/{srec['id']}/images/4/artifacts/nothing.bin")
    assert missing.status_code == 404 and "image.nxs" in missing.json()["hint"]


def test_an_uploaded_nexus_file_opens_and_a_master_alone_is_refused(single, series, alice,
                                                                    tmp_path):
    rec, files = single
    path = tmp_path / "mine.nxs"
    path.write_bytes(files["image.nxs"])
    up = upload(alice, path, "image")
    assert up["summary"]["format"] == "hdf5" and up["summary"]["shape"] == rec["shape"]
    r = alice.get(f"/v1/files/{up['id']}/image")
    floats = np.frombuffer(files["floatimage.bin"], "<f4").reshape(rec["shape"])
    assert np.array_equal(np.frombuffer(r.content, "<f4").reshape(rec["shape"]), floats)
    _, dest, _ = series
    master = alice.post("/v1/files", data={"kind": "image"},
                        files={"file": ("image.nxs", (dest / "image.nxs").read_bytes())})
    assert master.status_code == 422
    message = master.json()["errors"][0]["message"]
    assert "image_data_00003.nxs" in message and "master" in message


def test_a_curved_detector_with_nexus_is_refused_naming_the_field(alice):
    r = alice.post("/v1/jobs", json={"nanobragg_args": ["-curved_det"] + SINGLE_ARGS,
                                     "outputs": ["float", "nexus"]})
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "outputs" and "curved" in err["message"]
