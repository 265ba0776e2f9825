"""The master file over a series' NeXus data files: frames, φ and geometry as one file would hold
them, read back with h5py + hdf5plugin and the nxmx package."""

from __future__ import annotations

import shutil

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest

from sim_core.io.nexus import NexusWriter, write_nexus
from sim_core.io.nexus_master import series_master
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.series import series_of

from .test_nexus import CRYSTAL, GEOMETRIES, _nxmx_pixel_centres


def _part(path, config, starts, osc, frames):
    with NexusWriter(path, config, image="float", phi_starts_deg=starts, osc_deg=osc) as w:
        for k, pixels in enumerate(frames):
            w.write(k, pixels)
    return path


def test_the_master_joins_the_data_files_frames_and_angles(tmp_path):
    config = parse_nanobragg_args(CRYSTAL + GEOMETRIES["dials, sample pivot"]
                                  + ["-images", "5", "-seed", "7"]).config
    images = series_of(config)
    starts = [im.phi_start_deg for im in images]
    osc = images[0].osc_deg
    rng = np.random.default_rng(5)
    frames = rng.random((5, 9, 14), dtype=np.float32)
    parts = tmp_path / "parts"
    parts.mkdir()
    split = [(0, 2), (2, 3), (3, 5)]  # children of 2, 1 and 2 images
    names = [f"image_data_{a + 1:05d}.nxs" for a, _ in split]
    for name, (a, b) in zip(names, split):
        _part(parts / name, config, starts[a:b], osc, frames[a:b])
    master = series_master([(name, parts / name) for name in names])
    assert len(master) < 64 << 10  # geometry and links, no pixels

    # unpacked elsewhere, as a dataset zip is: the master finds its data files beside it
    out = tmp_path / "unpacked"
    shutil.copytree(parts, out)
    (out / "image.nxs").write_bytes(master)
    with h5py.File(out / "image.nxs", "r") as f:
        data = f["/entry/data/data"]
        assert data.is_virtual and data.shape == (5, 9, 14)
        assert np.array_equal(data[()], frames)
        assert np.array_equal(f["/entry/instrument/detector/data"][()], frames)
        gonio = f["/entry/sample/transformations"]
        np.testing.assert_array_equal(gonio["phi"][()], starts)
        np.testing.assert_array_equal(gonio["phi_end"][()], np.asarray(starts) + osc)
        assert gonio["phi"].attrs["depends_on"] == "."
        assert f["/entry/sample/beam"] == f["/entry/instrument/beam"]  # one object, linked twice
        assert f["/entry/instrument/detector/pixel_mask"].shape == (9, 14)

    # the geometry of the master is that of one file holding every frame
    whole = write_nexus(tmp_path / "whole.nxs", list(frames), config)
    pos_master, spindle_master, _ = _nxmx_pixel_centres(out / "image.nxs")
    pos_whole, spindle_whole, _ = _nxmx_pixel_centres(whole)
    np.testing.assert_array_equal(pos_master, pos_whole)
    np.testing.assert_array_equal(spindle_master, spindle_whole)


def test_data_files_of_other_frames_are_refused_naming_them(tmp_path):
    config = parse_nanobragg_args(CRYSTAL + ["-images", "2"]).config
    other = parse_nanobragg_args([a if a != "14" else "15" for a in CRYSTAL]
                                 + ["-images", "2"]).config
    a = _part(tmp_path / "a.nxs", config, [3.0], 0.5, [np.zeros((9, 14), np.float32)])
    b = _part(tmp_path / "b.nxs", other, [3.5], 0.5, [np.zeros((9, 15), np.float32)])
    with pytest.raises(ValueError, match=r"b\.nxs: frames of \(9, 15\)"):
        series_master([("a.nxs", a), ("b.nxs", b)])
