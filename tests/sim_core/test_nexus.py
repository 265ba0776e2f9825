"""NXmx NeXus output read back by an independent reader.

The pixel positions come from the file alone through the ``nxmx`` package (the NXmx reader written
for DIALS), following the ``depends_on`` chains the way dxtbx builds its panel; they are compared
with ``sim_core``'s own pixel centres (``geometry.resolution.pixel_centres``), mapped into the
McStas frame by a rotation this test builds itself (scipy), and through quantities no frame
changes (distance from the sample, angle to the beam, angle to the rotation axis).
"""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import nxmx
import pytest
from scipy.spatial.transform import Rotation

from sim_core import cli
from sim_core.errors import ConfigError
from sim_core.geometry.detector import build_detector, c_unitize
from sim_core.geometry.resolution import beam_direction, pixel_centres
from sim_core.io.nexus import nexus_geometry, write_nexus
from sim_core.io.smv import read_smv
from sim_core.lab_frame import resolve_frame
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from sim_core.series import series_of

CRYSTAL = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "2",
           "-lambda", "1.3", "-pixel", "0.172", "-detpixels_x", "14", "-detpixels_y", "9",
           "-phi", "3", "-osc", "0.5"]

#: the geometries of the acceptance, and the other named conventions
GEOMETRIES = {
    "off-centre beam": ["-distance", "120", "-Xbeam", "3.1", "-Ybeam", "4.2"],
    "two-theta": ["-distance", "60", "-twotheta", "8"],
    "detector rotations": ["-distance", "80", "-detector_rotx", "3", "-detector_roty", "-5",
                           "-detector_rotz", "7"],
    "custom vectors": ["-distance", "90", "-fdet_vector", "0", "0.6", "0.8", "-sdet_vector", "0",
                       "0.8", "-0.6", "-odet_vector", "1", "0", "0", "-beam_vector", "1", "0",
                       "0", "-Xbeam", "1", "-Ybeam", "0.5", "-detector_rotz", "4"],
    "xds": ["-xds", "-distance", "100", "-ORGX", "5", "-ORGY", "3", "-twotheta", "5",
            "-detector_rotz", "2"],
    "dials, sample pivot": ["-dials", "-distance", "100", "-pivot", "sample", "-twotheta", "10",
                            "-detector_rotx", "2", "-Xbeam", "1.2", "-Ybeam", "0.7"],
    "oblique custom beam, spindle along it": [
        "-beam_vector", "0", "0.6", "0.8", "-fdet_vector", "1", "0", "0", "-sdet_vector", "0",
        "0.8", "-0.6", "-odet_vector", "0", "0.6", "0.8", "-spindle_axis", "0", "0.6", "0.8",
        "-polar_vector", "1", "0", "0", "-distance", "100", "-twotheta", "4",
        "-detector_roty", "3"],
    "adxv": ["-adxv", "-distance", "100", "-twotheta", "-6", "-detector_roty", "2"],
    "denzo": ["-denzo", "-distance", "70", "-Xbeam", "0.5", "-detector_rotx", "-4"],
}


def _nxmx_pixel_centres(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel centres (slow*fast, 3) in mm, goniometer axis, detector data shape) from the file,
    built as dxtbx builds its panel: the origin at the end of the module's chain, the fast and
    slow axes turned by the chain's rotations, a pixel's centre half a pixel in from its corner.
    Checks on the way that the beam centre and distance fields agree with the chain."""
    with h5py.File(path, "r") as f:
        entry = nxmx.NXmx(f).entries[0]
        assert entry.definition == "NXmx"
        module = entry.instruments[0].detectors[0].modules[0]
        chain = nxmx.get_dependency_chain(module.fast_pixel_direction.depends_on)
        origin = nxmx.get_cumulative_transformation(chain)[0, :3, 3]

        def axis(t):
            rotations = [x for x in nxmx.get_dependency_chain(t.depends_on)
                         if x.transformation_type == "rotation"]
            R = nxmx.get_cumulative_transformation(rotations)[0, :3, :3]
            return R @ np.asarray(t.vector, dtype=float)

        fast, slow = axis(module.fast_pixel_direction), axis(module.slow_pixel_direction)
        px_f = module.fast_pixel_direction[()].to("mm").magnitude.item()
        px_s = module.slow_pixel_direction[()].to("mm").magnitude.item()
        S, F = (int(n) for n in module.data_size)
        ss, ff = np.meshgrid(np.arange(S), np.arange(F), indexing="ij")
        pos = (origin + ((ff.ravel() + 0.5) * px_f)[:, None] * fast
               + ((ss.ravel() + 0.5) * px_s)[:, None] * slow)
        gonio = nxmx.get_dependency_chain(entry.samples[0].depends_on)
        spindle = np.asarray(gonio[0].vector, dtype=float)
        det = entry.instruments[0].detectors[0]
        spot = (origin + det.beam_center_x.magnitude * px_f * fast
                + det.beam_center_y.magnitude * px_s * slow)
        # the beam centre fields name where the direct beam (McStas +z) meets the detector
        np.testing.assert_allclose(spot, [0, 0, det.distance.to("mm").magnitude], atol=1e-9)
        return pos, spindle, np.array(f["/entry/data/data"].shape)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_every_pixel_from_the_file_alone_is_where_sim_core_puts_it(name, tmp_path):
    config = parse_nanobragg_args(CRYSTAL + GEOMETRIES[name]).config
    frame = resolve_frame(config)
    det = build_detector(config.detector, frame)
    S, F = det.spixels, det.fpixels
    path = write_nexus(tmp_path / "g.nxs", [np.zeros((S, F), np.float32)], config)
    pos, spindle, shape = _nxmx_pixel_centres(path)
    assert tuple(shape) == (1, S, F)

    ss, ff = np.meshgrid(np.arange(S), np.arange(F), indexing="ij")
    beam = beam_direction(frame)
    ours = pixel_centres(det, beam, ss.ravel(), ff.ravel()).numpy() * 1000.0  # mm
    beam = beam.numpy()
    spindle_lab = np.asarray(c_unitize(frame.spindle)[0])

    # quantities no rotation changes: distance from the sample, angles to the beam (McStas +z)
    # and to the goniometer axis the file names
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), np.linalg.norm(ours, axis=1),
                               rtol=0, atol=1e-3)
    np.testing.assert_allclose(pos @ [0, 0, 1], ours @ beam, rtol=0, atol=1e-3)
    np.testing.assert_allclose(pos @ spindle, ours @ spindle_lab, rtol=0, atol=1e-3)

    # and the positions themselves, in McStas by a rotation built here: the beam to +z, the
    # spindle's part across the beam to -x (the polarization's, when the spindle lies along it)
    across = spindle_lab - (spindle_lab @ beam) * beam
    if np.linalg.norm(across) < 1e-9:
        polar = np.asarray(c_unitize(frame.polar)[0])
        across = polar - (polar @ beam) * beam
    to_mcstas, _ = Rotation.align_vectors([[0, 0, 1], [-1, 0, 0]], [beam, across],
                                          weights=[np.inf, 1])
    err = np.abs(pos - to_mcstas.apply(ours)).max()
    assert err < 1e-3, f"{name}: a pixel is {err * 1000:.3g} um from sim_core's"
    np.testing.assert_allclose(spindle, to_mcstas.apply(spindle_lab), atol=1e-12)


def test_the_chains_are_the_detector_motions_in_nanobragg_order(tmp_path):
    """Sample pivot: placed, then turned about the sample; beam pivot: turned about the spot."""
    for args, order in (
            (["-dials", "-distance", "100", "-twotheta", "10"],
             ["module_offset", "detector_distance", "detector_rotx", "detector_roty",
              "detector_rotz", "two_theta"]),
            (["-mosflm", "-distance", "100", "-twotheta", "10"],
             ["module_offset", "detector_rotx", "detector_roty", "detector_rotz", "two_theta",
              "detector_distance"])):
        config = parse_nanobragg_args(CRYSTAL + args).config
        path = write_nexus(tmp_path / "c.nxs", [np.zeros((9, 14), np.float32)], config)
        with h5py.File(path, "r") as f:
            module = nxmx.NXmx(f).entries[0].instruments[0].detectors[0].modules[0]
            chain = nxmx.get_dependency_chain(module.module_offset)
            assert [t.path.rsplit("/", 1)[1] for t in chain] == order
            two_theta = f["/entry/instrument/detector/transformations/two_theta"]
            assert two_theta[()] == 10.0 and two_theta.attrs["units"] == "deg"
            det = f["/entry/instrument/detector"]
            assert det["depends_on"][()].decode() == chain[1].path


@pytest.mark.parametrize("kind", ["float", "noise"])
def test_a_series_is_one_file_of_every_image_with_its_phi(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = CRYSTAL + ["-distance", "100", "-images", "3", "-first_image", "4", "-seed", "9",
                      "-nopgm", "-noisefile", "noise.img", "-nexus", "series.nxs",
                      "-nexus_image", kind]
    assert cli.main(args) == 0
    config = parse_nanobragg_args(args).config
    images = series_of(config)
    with h5py.File("series.nxs", "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (3, 9, 14)
        assert data.dtype == (np.float32 if kind == "float" else np.uint16)
        assert "32008" in data._filters  # bitshuffle
        assert data._filters["32008"][-1] == 2  # ... with LZ4 (bitshuffle's option 2)
        for k, im in enumerate(images):
            if kind == "float":
                pixels = np.fromfile(f"floatimage_{im.n:05d}.bin",
                                     dtype=np.float32).reshape(9, 14)
            else:
                _, pixels = read_smv(f"noise_{im.n:05d}.img")
            np.testing.assert_array_equal(data[k], pixels)
        assert data[:].max() > 0
        gonio = f["/entry/sample/transformations"]
        np.testing.assert_array_equal(gonio["phi"][()], [im.phi_start_deg for im in images])
        np.testing.assert_array_equal(gonio["phi_end"][()],
                                      [im.phi_start_deg + im.osc_deg for im in images])
        assert gonio["phi_increment_set"][()] == 0.5
        assert list(gonio["phi"][()]) == [3.0, 3.5, 4.0]
        assert f["/entry/sample/depends_on"][()].decode() == gonio["phi"].name
        # the frames are linked where NXdetector keeps them too
        assert f["/entry/instrument/detector/data"].id == data.id


@pytest.mark.parametrize("kind, smv", [("noise", "noise.img"), ("int", "int.img")])
def test_counts_equal_the_smv_images(kind, smv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = CRYSTAL + ["-distance", "100", "-seed", "5", "-nopgm", "-noisefile", "noise.img",
                      "-intfile", "int.img", "-nexus", "one.nxs", "-nexus_image", kind,
                      "-detector_thick", "320", "-flux", "1e22", "-exposure", "0.2"]
    assert cli.main(args) == 0
    _, pixels = read_smv(smv)
    with h5py.File("one.nxs", "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (1, 9, 14) and data.dtype == np.uint16
        np.testing.assert_array_equal(data[0], pixels)
        assert pixels.max() > 40  # photons, not just the ADC offset
        det = nxmx.NXmx(f).entries[0].instruments[0].detectors[0]
        assert det.saturation_value == 65535
        assert det.sensor_material == "Silicon"
        assert det.sensor_thickness.to("um").magnitude == pytest.approx(320)
        assert det.count_time.to("s").magnitude == pytest.approx(0.2)
        beam = nxmx.NXmx(f).entries[0].instruments[0].beams[0]
        assert beam.incident_wavelength.to("angstrom").magnitude == pytest.approx(1.3)
        assert beam.total_flux.to("Hz").magnitude == pytest.approx(1e22)
        assert det.distance.to("mm").magnitude == pytest.approx(100)
        # a single image: one φ start and its range
        gonio = f["/entry/sample/transformations"]
        assert list(gonio["phi"][()]) == [3.0] and list(gonio["phi_end"][()]) == [3.5]


def test_results_give_their_own_pixels_and_angles(tmp_path):
    from sim_core.simulate import render_series

    config = parse_nanobragg_args(CRYSTAL + ["-distance", "100", "-images", "2",
                                             "-seed", "3"]).config
    results = [r for _, r in render_series(config, device="cpu")]
    path = write_nexus(tmp_path / "r.nxs", results, config, image="float")
    with h5py.File(path, "r") as f:
        for k, r in enumerate(results):
            np.testing.assert_array_equal(f["/entry/data/data"][k], r.image)
        assert list(f["/entry/sample/transformations/phi"][()]) == [3.0, 3.5]


def test_a_curved_detector_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_nanobragg_args(CRYSTAL + ["-curved_det", "-nexus", "c.nxs"])
    assert err.value.field == "detector.curved"
    config = parse_nanobragg_args(CRYSTAL + ["-curved_det", "-distance", "100"]).config
    with pytest.raises(ConfigError, match="curved") as err:
        write_nexus(tmp_path / "c.nxs", [np.zeros((9, 14), np.float32)], config)
    assert err.value.field == "detector.curved"
    assert not list(tmp_path.iterdir())


def test_the_flags_round_trip_and_a_failed_write_leaves_nothing(tmp_path):
    config = parse_nanobragg_args(CRYSTAL + ["-nexus", "x.nxs", "-nexus_image", "noise"]).config
    assert (config.outputs.nexus_file, config.outputs.nexus_image) == ("x.nxs", "noise")
    args = config_to_args(config)
    assert args[args.index("-nexus") + 1] == "x.nxs"
    assert args[args.index("-nexus_image") + 1] == "noise"
    with pytest.raises(ValueError, match="shape"):
        write_nexus(tmp_path / "x.nxs", [np.zeros((3, 3), np.float32)], config)
    assert not list(tmp_path.iterdir())
    # nanoBragg's MOSFLM default beam centre: (14 + 1) / 2 pixels plus MOSFLM's half pixel
    assert nexus_geometry(config).beam_center_px[0] == pytest.approx(8.0, abs=1e-12)


def test_a_2theta_axis_that_scales_the_detector_is_refused():
    # nanoBragg turns the detector about -twotheta_axis as given: a non-unit axis also scales it
    config = parse_nanobragg_args(CRYSTAL + ["-twotheta_axis", "0", "0", "2",
                                             "-twotheta", "5"]).config
    with pytest.raises(ConfigError, match="unit") as err:
        nexus_geometry(config)
    assert err.value.field == "detector.twotheta_axis"


def test_pixels_the_render_skipped_are_masked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(CRYSTAL + ["-distance", "100", "-roi", "2", "10", "1", "6", "-nopgm",
                               "-nonoise", "-nexus", "roi.nxs"]) == 0
    with h5py.File("roi.nxs", "r") as f:
        mask = f["/entry/instrument/detector/pixel_mask"][()]
        data = f["/entry/data/data"][0]
    inside = np.zeros((9, 14), dtype=bool)
    inside[1:7, 2:11] = True  # slow 1..6, fast 2..10 inclusive
    np.testing.assert_array_equal(mask, np.where(inside, 0, 256))
    assert (data[~inside] == 0).all() and data[inside].max() > 0
    # arrays alone carry no render: every pixel counts
    config = parse_nanobragg_args(CRYSTAL).config
    path = write_nexus(tmp_path / "a.nxs", [np.ones((9, 14), np.float32)], config)
    with h5py.File(path, "r") as f:
        assert not f["/entry/instrument/detector/pixel_mask"][()].any()
