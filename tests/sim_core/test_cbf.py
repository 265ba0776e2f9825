"""miniCBF output and the rotation keys of the SMV header, read back with fabio (and pyFAI)."""

from __future__ import annotations

import math

import fabio
import numpy as np
import pytest
from sim_core.geometry.resolution import beam_direction, pixel_resolution
from sim_core.io.cbf import HEADER_CONVENTION, minicbf_header, write_cbf
from sim_core.io.smv import SmvGeometry, read_smv
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.outputs import smv_geometry, write_outputs
from sim_core.simulate import simulate

# a small, fast render with a rotation: 48 x 40 pixels (fast x slow), an off-centre beam
ARGS = ["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "100", "-N", "4",
        "-lambda", "1.3", "-distance", "120", "-pixel", "0.172", "-detpixels_x", "48",
        "-detpixels_y", "40", "-Xbeam", "3.1", "-Ybeam", "4.2", "-phi", "12.5", "-osc", "0.25",
        "-phisteps", "2", "-exposure", "0.5", "-detector_thick", "450", "-seed", "77"]


@pytest.fixture(scope="module")
def result():
    return simulate(parse_nanobragg_args(ARGS).config, device="cpu", dtype="float64")


def _pilatus(frame):
    """The header fields as fabio parses them itself (only for a PILATUS_1.2 header)."""
    assert frame.pilatus_headers is not None, "fabio did not parse the Pilatus header"
    return frame.pilatus_headers


def test_cbf_output_reads_back_with_fabio(result, tmp_path):
    report = write_outputs(result, tmp_path, {"smv": "image.img", "cbf": "image.cbf"})
    assert set(report.paths) == {"smv", "cbf"}
    _, ints = read_smv(tmp_path / "image.img")
    frame = fabio.open(str(tmp_path / "image.cbf"))
    assert frame.data.dtype == np.int32 and frame.data.shape == (40, 48)
    np.testing.assert_array_equal(frame.data, ints.astype(np.int32))
    assert int(ints.max()) > 40  # the render put photons on the detector, not just the ADC offset
    assert frame.header["conversions"] == "x-CBF_BYTE_OFFSET"
    assert frame.header["_array_data.header_convention"] == HEADER_CONVENTION == "PILATUS_1.2"
    assert frame.header["X-Binary-Size-Fastest-Dimension"] == "48"
    assert frame.header["X-Binary-Size-Second-Dimension"] == "40"

    h = _pilatus(frame)
    geom = smv_geometry(result)
    assert h["Detector"].startswith("nanoBragg simulated") and "PILATUS" not in h["Detector"]
    assert h["Pixel_size"] == pytest.approx((172e-6, 172e-6), rel=1e-12)
    assert h["sensor"] == ("Silicon", pytest.approx(450e-6, rel=1e-12))
    assert h["Exposure_time"] == pytest.approx(0.5) and h["Exposure_period"] == pytest.approx(0.5)
    assert h["Count_cutoff"] == 65535
    assert h["Wavelength"] == pytest.approx(1.3, rel=1e-12)
    assert h["Detector_distance"] == pytest.approx(0.120, rel=1e-12)
    # MOSFLM convention: Fbeam = Ybeam + 0.5 px, Sbeam = Xbeam + 0.5 px; Beam_xy is (fast, slow)
    assert h["Beam_xy"] == pytest.approx(((4.2 + 0.086) / 0.172, (3.1 + 0.086) / 0.172), rel=1e-9)
    assert h["Beam_xy"] == pytest.approx((geom.fbeam_m / geom.pixel_size_m,
                                          geom.sbeam_m / geom.pixel_size_m), rel=1e-9)
    assert h["Start_angle"] == 12.5 and h["Phi"] == 12.5
    assert h["Angle_increment"] == 0.25 and h["Phi_increment"] == 0.25
    assert h["Detector_2theta"] == 0.0


def test_cbf_of_the_noise_image_matches_the_noise_file(result, tmp_path):
    write_outputs(result, tmp_path, {"noise": "noise.img"})
    write_outputs(result, tmp_path, {"cbf": "noise.cbf"}, cbf_counts="noise")
    _, noise = read_smv(tmp_path / "noise.img")
    np.testing.assert_array_equal(fabio.open(str(tmp_path / "noise.cbf")).data, noise)
    with pytest.raises(ValueError, match="cbf_counts"):
        write_outputs(result, tmp_path, {"cbf": "x.cbf"}, cbf_counts="float")


def test_cbf_bytes_depend_only_on_the_image(result, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_outputs(result, a, {"cbf": "image.cbf"})
    write_outputs(result, b, {"cbf": "image.cbf"})
    assert (a / "image.cbf").read_bytes() == (b / "image.cbf").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["image.cbf"]  # no temporary left behind
    assert b"data_image\r\n" in (a / "image.cbf").read_bytes()


def test_write_cbf_int32_range_shape_and_lines(tmp_path):
    geom = SmvGeometry(fpixels=3, spixels=2, pixel_size_m=1e-4, distance_m=0.1,
                       wavelength_m=1e-10, xbeam_m=1e-4, ybeam_m=1e-4, fbeam_m=1.5e-4,
                       sbeam_m=0.5e-4, detsize_s_m=2e-4, dials_origin_mm=(0.0, 0.0, -100.0),
                       orgx=1.5, orgy=0.5, close_distance_m=0.1, phi0_rad=math.radians(-30),
                       osc_rad=math.radians(1e-3), twotheta_rad=math.radians(20))
    big = np.array([[0, -5, 2**31 - 1], [1, 2, 1_000_000]], dtype=np.int64)
    write_cbf(tmp_path / "big.cbf", big, geom, exposure_s=2.0)
    frame = fabio.open(str(tmp_path / "big.cbf"))
    np.testing.assert_array_equal(frame.data, big)
    h = _pilatus(frame)
    assert h["Start_angle"] == -30.0 and h["Angle_increment"] == 0.001
    assert h["Detector_2theta"] == 20.0 and h["Beam_xy"] == (1.5, 0.5)
    with pytest.raises(ValueError, match="32-bit"):
        write_cbf(tmp_path / "x.cbf", big + 1, geom, exposure_s=1.0)
    with pytest.raises(ValueError, match="shape"):
        write_cbf(tmp_path / "x.cbf", big.T, geom, exposure_s=1.0)
    with pytest.raises(ValueError, match="integers"):
        write_cbf(tmp_path / "x.cbf", big.astype(float), geom, exposure_s=1.0)
    # the lines dxtbx's FormatCBFMini reads, each once
    text = minicbf_header(geom, exposure_s=2.0)
    for key in ("# Detector:", "# Pixel_size", "# Silicon sensor, thickness", "# Exposure_time",
                "# Exposure_period", "# Count_cutoff", "# Wavelength", "# Detector_distance",
                "# Beam_xy", "# Start_angle", "# Angle_increment", "# Phi "):
        assert sum(line.startswith(key) for line in text.splitlines()) == 1, key


def test_smv_rotation_keys_read_back_with_fabio(result, tmp_path):
    write_outputs(result, tmp_path, {"smv": "image.img", "noise": "noise.img"})
    for name in ("image.img", "noise.img"):
        header = fabio.open(str(tmp_path / name)).header
        assert float(header["PHI"]) == 12.5
        assert float(header["OSC_START"]) == 12.5
        assert float(header["OSC_RANGE"]) == 0.25
        assert float(header["DISTANCE"]) == pytest.approx(120.0)
        assert float(header["WAVELENGTH"]) == pytest.approx(1.3)
        assert float(header["PIXEL_SIZE"]) == pytest.approx(0.172)


def test_pyfai_from_the_header_fields_alone_puts_the_rings_where_sim_core_does(result, tmp_path):
    """A pyFAI geometry built from nothing but the fields fabio parses gives every pixel the 2θ
    that sim_core's detector gives it, so powder rings of any d-spacing land on the same pixels."""
    from pyFAI.detectors import Detector
    from pyFAI.geometry import Geometry

    write_outputs(result, tmp_path, {"cbf": "image.cbf"})
    frame = fabio.open(str(tmp_path / "image.cbf"))
    h = _pilatus(frame)
    px_fast, px_slow = h["Pixel_size"]
    beam_fast, beam_slow = h["Beam_xy"]
    assert h["Detector_2theta"] == 0.0
    shape = frame.data.shape
    geometry = Geometry(dist=h["Detector_distance"], poni1=beam_slow * px_slow,
                        poni2=beam_fast * px_fast, wavelength=h["Wavelength"] * 1e-10,
                        detector=Detector(pixel1=px_slow, pixel2=px_fast, max_shape=shape))
    tth_pyfai = np.degrees(geometry.center_array(shape, unit="2th_rad"))

    exp = result.experiment
    slow, fast = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    d_ours, tth_ours = pixel_resolution(exp.detector, beam_direction(exp.frame), 1.3,
                                        slow.ravel(), fast.ravel())
    np.testing.assert_allclose(tth_pyfai.ravel(), tth_ours.numpy(), rtol=0, atol=1e-7)
    # rings: for a few d-spacings on the detector, the pixels pyFAI puts within a pixel's width of
    # the ring are those whose sim_core resolution is that d to the same precision
    lam = h["Wavelength"]
    for d in (np.quantile(d_ours.numpy(), q) for q in (0.1, 0.5, 0.9)):
        ring = np.degrees(2 * np.arcsin(lam / (2 * d)))
        near_pyfai = np.abs(tth_pyfai.ravel() - ring) < 0.02
        near_ours = np.abs(tth_ours.numpy() - ring) < 0.02
        assert near_pyfai.sum() > 0 and np.array_equal(near_pyfai, near_ours)
