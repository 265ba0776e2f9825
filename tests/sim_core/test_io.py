"""File formats against the C program's own files (tests/data/golden) and hand-made cases."""

from __future__ import annotations

import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from sim_core.errors import InputFileError
from sim_core.image import image_stats
from sim_core.io.floatimage import read_float_image, write_float_image
from sim_core.io.hkl import HklGrid, read_fdump, read_hkl, write_fdump
from sim_core.io.mosflm import read_mosflm_matrix
from sim_core.io.pgm import auto_pgm_scale, pgm_bytes, pgm_pixels, write_pgm
from sim_core.io.png import placeholder, preview_pixels, write_png_preview
from sim_core.io.smv import (SmvGeometry, auto_int_scale, header_value, int_image, read_smv,
                             smv_header, write_smv)
from sim_core.io.sources import SourceRow, read_source_file

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _float(case: str, n: int) -> np.ndarray:
    return np.fromfile(GOLDEN / case / "float.bin", dtype="<f4").reshape(n, n)


def _smv_pixels(path: Path, n: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype="<u2", offset=512).reshape(n, n)


# cubic_default_F: -cell 100 -lambda 6.2 -N 5 -distance 100 -detpixels 256 (0.1 mm pixels),
# MOSFLM convention; values from its c_stdout.log (Xbeam=0.01285 Fbeam=0.0129 ...)
CUBIC = SmvGeometry(fpixels=256, spixels=256, pixel_size_m=1e-4, distance_m=0.1,
                    wavelength_m=6.2e-10, xbeam_m=0.01285, ybeam_m=0.01285, fbeam_m=0.0129,
                    sbeam_m=0.0129, detsize_s_m=256 * 1e-4, dials_origin_mm=(-12.9, 12.9, -100.0),
                    orgx=129.5, orgy=129.5, close_distance_m=0.1, byte_order="little_endian")
# noise_smv: -lambda 1 -distance 80 -detpixels 128 -pixel 0.3
NOISE = SmvGeometry(fpixels=128, spixels=128, pixel_size_m=3e-4, distance_m=0.08,
                    wavelength_m=1e-10, xbeam_m=0.01935, ybeam_m=0.01935, fbeam_m=0.0195,
                    sbeam_m=0.0195, detsize_s_m=128 * 3e-4, dials_origin_mm=(-19.5, 19.5, -80.0),
                    orgx=65.5, orgy=65.5, close_distance_m=0.08, byte_order="little_endian")


# --- SMV --------------------------------------------------------------------------------------

def test_smv_header_is_byte_identical_to_c():
    c_header = (GOLDEN / "cubic_default_F" / "intimage.img").read_bytes()[:512]
    assert smv_header(CUBIC) == c_header
    for name in ("int.img", "noise.img"):
        assert smv_header(NOISE) == (GOLDEN / "noise_smv" / name).read_bytes()[:512]
    assert c_header.index(b"DIALS_ORIGIN=-12.9,12.9,-100\nXDS_ORGX") > 0
    assert c_header.rstrip(b" ").endswith(b"BEAMLINE=fake;\n}\f")


def test_smv_header_angles_and_overflow():
    geom = SmvGeometry(**{**CUBIC.__dict__, "phi0_rad": math.radians(30.0),
                          "osc_rad": math.radians(0.25), "twotheta_rad": math.radians(-15.0)})
    text = smv_header(geom).decode()
    assert "PHI=30;\nOSC_START=30;\nOSC_RANGE=0.25;\nTWOTHETA=-15;\n" in text
    huge = SmvGeometry(**{**CUBIC.__dict__, "dials_origin_mm": (-1.23456e-300,) * 3,
                          "orgx": -1.23456e-300, "orgy": -1.23456e-300, "xbeam_m": -1.23456e-300,
                          "ybeam_m": -1.23456e-300, "fbeam_m": -1.23456e-300,
                          "sbeam_m": -1.23456e-300, "detsize_s_m": -1.23456e-300,
                          "close_distance_m": -1.23456e-300})
    long = smv_header(huge)
    # too long for 512 bytes: announced and padded to 1024 (the C program overflows its 512)
    assert len(long) == 1024 and long.startswith(b"{\nHEADER_BYTES=1024;\n")
    assert long.rstrip(b" ").endswith(b"}\f")


def test_long_header_round_trips(tmp_path):
    tiny = -1.23456e-300
    geom = SmvGeometry(**{**CUBIC.__dict__, "dials_origin_mm": (tiny,) * 3, "orgx": tiny,
                          "orgy": tiny, "xbeam_m": tiny, "ybeam_m": tiny, "fbeam_m": tiny,
                          "sbeam_m": tiny, "close_distance_m": tiny})
    img = (np.arange(256 * 256) % 65536).astype(np.uint16).reshape(256, 256)
    write_smv(tmp_path / "long.img", img, geom)
    header, back = read_smv(tmp_path / "long.img")
    assert header["HEADER_BYTES"] == "1024"
    np.testing.assert_array_equal(back, img)


def test_int_image_matches_c_intimage_exactly():
    img = _float("cubic_default_F", 256)
    scale = auto_int_scale(float(img.max()))
    assert f"{scale:g}" == "355.636"  # c_stdout.log: intfile_scale = 355.636
    c_pixels = _smv_pixels(GOLDEN / "cubic_default_F" / "intimage.img", 256)
    assert np.array_equal(int_image(img, scale, 40.0), c_pixels)
    noise_float = _float("noise_smv", 128)
    assert np.array_equal(int_image(noise_float, auto_int_scale(float(noise_float.max())), 40.0),
                          _smv_pixels(GOLDEN / "noise_smv" / "int.img", 128))


def test_int_image_rounding_clamp_and_roi():
    assert auto_int_scale(0.0) == 1.0 and auto_int_scale(-3.0) == 1.0
    assert auto_int_scale(110.0) == 500.0
    img = np.array([[100.0, -500.0, 1e9, 2.4999]], dtype=np.float32)
    # 100 * 1.00499999 + 40 + 0.5 = 140.99999... which float rounds up to 141
    assert int_image(img, 1.00499999, 40.0)[0, 0] == 141
    out = int_image(img, 1.0, 40.0)
    assert out.tolist() == [[140, 0, 65535, 42]]
    roi_out = int_image(np.ones((3, 4), np.float32), 1.0, 40.0, roi=(1, 2, 0, 1))
    assert roi_out.tolist() == [[0, 41, 41, 0], [0, 41, 41, 0], [0, 0, 0, 0]]


def test_write_smv_read_back_with_fabio_and_read_smv(tmp_path):
    fabio = pytest.importorskip("fabio")
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 65536, size=(256, 256), dtype=np.uint16)
    path = tmp_path / "x.img"
    write_smv(path, pixels, CUBIC)
    assert path.stat().st_size == 512 + 2 * 256 * 256
    frame = fabio.open(str(path))
    assert np.array_equal(frame.data, pixels)
    assert float(frame.header["DISTANCE"]) == 100.0
    assert float(frame.header["BEAM_CENTER_X"]) == 12.85
    header, back = read_smv(path)
    assert np.array_equal(back, pixels) and back.dtype == np.uint16
    assert header["SIZE1"] == "256" and header["DIALS_ORIGIN"] == "-12.9,12.9,-100"
    # the C file itself
    header, c_pixels = read_smv(GOLDEN / "cubic_default_F" / "intimage.img")
    assert np.array_equal(c_pixels, fabio.open(str(GOLDEN / "cubic_default_F" /
                                                   "intimage.img")).data)


def test_read_smv_big_endian_and_other_header_sizes(tmp_path):
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000 + 7
    big = SmvGeometry(**{**CUBIC.__dict__, "fpixels": 4, "spixels": 3,
                         "byte_order": "big_endian"})
    write_smv(tmp_path / "b.img", pixels, big)
    raw = (tmp_path / "b.img").read_bytes()
    assert raw[512:514] == b"\x00\x07"
    header, back = read_smv(tmp_path / "b.img")
    assert header["BYTE_ORDER"] == "big_endian" and np.array_equal(back, pixels)
    text = "{\nHEADER_BYTES=1024;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n" \
           "SIZE1=4;\nSIZE2=3;\nDISTANCE=250;\n}\f"
    (tmp_path / "k.img").write_bytes(text.encode().ljust(1024, b" ") + pixels.astype("<u2").tobytes())
    header, back = read_smv(tmp_path / "k.img")
    assert np.array_equal(back, pixels) and header_value(header, "DISTANCE") == 250.0


def test_read_smv_errors(tmp_path):
    with pytest.raises(InputFileError, match="nothere.img") as err:
        read_smv(tmp_path / "nothere.img")
    assert err.value.path.endswith("nothere.img")
    (tmp_path / "p.img").write_bytes(b"P5\n2 2\n255\n" + bytes(600))
    with pytest.raises(InputFileError, match="not an SMV"):
        read_smv(tmp_path / "p.img")
    good = (GOLDEN / "noise_smv" / "noise.img").read_bytes()
    (tmp_path / "t.img").write_bytes(good[:-2])
    with pytest.raises(InputFileError, match="truncated"):
        read_smv(tmp_path / "t.img")


def test_header_value_has_c_valueof_semantics():
    header, _ = read_smv(GOLDEN / "cubic_default_F" / "intimage.img")
    assert header_value(header, "PIXEL_SIZE") == 0.1
    assert header_value(header, "ORGX") == 129.5  # a substring of XDS_ORGX
    assert header_value(header, "BEAM_CENTER_Y") == 12.85
    assert header_value(header, "NO_SUCH_KEY") is None
    assert header_value(header, "DIALS_ORIGIN") == -12.9  # atof stops at the comma
    text = "{\nDISTANCE=100;\nCLOSE_DISTANCE=95;\nPHI=1;\nPHI=2;\nNOTE=abc;\nEND\n}"
    assert header_value(text, "DISTANCE") == 95.0  # the last match is inside CLOSE_DISTANCE
    assert header_value(text, "PHI") == 2.0
    assert header_value(text, "NOTE") == 0.0  # atof of text
    assert header_value(text, "END") == 0.0  # no '=' after it
    assert header_value({"A": "1", "B": "2", "A2": "3"}, "A") == 3.0


# --- float images, stats, PGM, PNG ------------------------------------------------------------

def test_float_image_round_trip_and_size_check(tmp_path):
    img = _float("cubic_default_F", 256)
    write_float_image(tmp_path / "f.bin", img.astype(np.float64))
    assert (tmp_path / "f.bin").read_bytes() == (GOLDEN / "cubic_default_F" / "float.bin").read_bytes()
    assert np.array_equal(read_float_image(tmp_path / "f.bin", (256, 256)), img)
    with pytest.raises(InputFileError, match="65536 float32 values"):
        read_float_image(tmp_path / "f.bin", (128, 128))
    with pytest.raises(InputFileError, match="missing.bin"):
        read_float_image(tmp_path / "missing.bin", (2, 2))


def test_image_stats_and_pgm_scale_match_c_stdout():
    # c_stdout.log: max_I = 154.652 ; mean= 3.29012 rms= 13.3558 rmsd= 12.9442 ; pgm_scale = 3.86273
    full = (0, 256, 0, 256)
    stats = image_stats(_float("cubic_default_F", 256), full, None)
    assert (f"{stats.max_I:g}", f"{stats.mean:g}", f"{stats.rms:g}", f"{stats.rmsd:g}") == \
        ("154.652", "3.29012", "13.3558", "12.9442")
    assert f"{auto_pgm_scale(stats.rmsd, 355.636):g}" == "3.86273"
    assert auto_pgm_scale(0.0, 355.636) == 355.636
    # noise_smv: pgm_scale = 0.320505
    noise = image_stats(_float("noise_smv", 128), (0, 128, 0, 128), None)
    assert f"{auto_pgm_scale(noise.rmsd, 1.0):g}" == "0.320505"


def test_pgm_file_layout(tmp_path):
    img = np.array([[0.0, 1.0, 2.6], [100.0, -1.0, np.nan]], dtype=np.float32)
    data = pgm_bytes(img, 10.0)
    header = b"P5\n3 2\n# pixels scaled by 10\n255\n"
    assert data.startswith(header) and len(data) == len(header) + 6
    # float32(2.6) * 10 = 25.9999... truncates to 25; -10 wraps to 246 as the C cast does
    assert list(data[len(header):]) == [0, 10, 25, 255, 246, 0]
    assert pgm_pixels(img, 10.0, roi=(1, 2, 0, 0)).tolist() == [[0, 10, 25], [0, 0, 0]]
    write_pgm(tmp_path / "i.pgm", img, 3.86273)
    assert (tmp_path / "i.pgm").read_bytes().startswith(b"P5\n3 2\n# pixels scaled by 3.86273\n255\n")


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", body)
            assert (depth, colour) == (8, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter type 0 everywhere
    return rows[:, 1:]


def test_png_preview_contrast_comes_from_the_image(tmp_path):
    img = np.zeros((3, 5), np.float32)
    img[0, 0], img[1, 2], img[2, 4], img[2, 3] = 1000.0, 250.0, -5.0, np.nan
    write_png_preview(tmp_path / "p.png", img)
    px = _decode_png((tmp_path / "p.png").read_bytes())
    assert px.shape == (3, 5)
    assert np.array_equal(px, preview_pixels(img))
    # white is the 99.5th percentile of the positive pixels; square-root scale
    white = np.percentile([250.0, 1000.0], 99.5)
    assert px[0, 0] == 255 and px[1, 2] == round(255 * math.sqrt(250.0 / white))
    assert px[2, 4] == 0 and px[2, 3] == 0 and px[0, 1] == 0


def test_png_preview_keeps_single_pixel_spots_of_a_large_image():
    img = np.zeros((2500, 2100), np.float32)
    img[1234, 2099] = 1.0  # in the last, partial block
    img[7, 8] = 50.0
    img[2499, 0] = np.inf  # not finite: black, and not the white level
    px = preview_pixels(img)
    assert px.shape == (834, 700)  # blocks of 3 x 3, the last row partial
    assert px.max() == 255 and px[7 // 3, 8 // 3] == 255
    assert px[1234 // 3, 2099 // 3] == round(255 * math.sqrt(1 / np.percentile([1.0, 50.0], 99.5)))
    assert px[2499 // 3, 0] == 0


def test_png_preview_placeholders_are_not_black():
    for img, text in ((np.zeros((300, 200)), "NO SIGNAL"), (np.full((40, 60), np.nan), "NOT FINITE"),
                      (-np.ones((8, 8)), "NO SIGNAL")):
        px = preview_pixels(img)
        assert px.shape == img.shape and px.min() >= 70 and len(np.unique(px)) > 1, text
    assert np.array_equal(preview_pixels(np.zeros((300, 200))), placeholder((300, 200), "NO SIGNAL"))
    assert (placeholder((300, 200), "NO SIGNAL") == 255).any()


# --- HKL and Fdump ----------------------------------------------------------------------------

def test_hkl_matches_the_c_fdump(tmp_path):
    start = time.perf_counter()
    grid = read_hkl(GOLDEN / "hkl_nearest" / "p1.hkl")
    assert time.perf_counter() - start < 1.0
    assert grid.bounds == (-12, 12, -12, 12, -12, 12) and grid.count == 15625
    assert grid.F[0, 0, 0] == 70.438 and grid.F[0, 0, 2] == 125.755  # -12 -12 -12 / -12 -12 -10
    dump = read_fdump(GOLDEN / "hkl_nearest" / "Fdump.bin")
    assert dump.bounds == grid.bounds and np.array_equal(dump.F, grid.F)
    write_fdump(tmp_path / "Fdump.bin", grid)
    assert (tmp_path / "Fdump.bin").read_bytes() == (GOLDEN / "hkl_nearest" / "Fdump.bin").read_bytes()


def test_hkl_sparse_file_defaults_duplicates_and_extra_columns(tmp_path):
    path = tmp_path / "s.hkl"
    path.write_text("# comment\n\n  1 0 0 10.5  0.3 extra\n-1.0 2 1 20\n1 0 0 11\n   \n0 0 -1 5e1\n")
    grid = read_hkl(path, default_F=7.0)
    assert grid.bounds == (-1, 1, 0, 2, -1, 1) and grid.count == 4
    assert grid.F.shape == (3, 3, 3)
    assert grid.F[2, 0, 1] == 11.0  # the later '1 0 0' wins
    assert grid.F[0, 2, 2] == 20.0 and grid.F[1, 0, 0] == 50.0
    assert np.count_nonzero(grid.F == 7.0) == 27 - 3
    write_fdump(tmp_path / "F.bin", grid)
    raw = (tmp_path / "F.bin").read_bytes()
    assert raw.startswith(b"-1 1 0 2 -1 1\n\f") and len(raw) == 15 + 4 * 4 * 4 * 8
    full = np.frombuffer(raw[15:], "<f8").reshape(4, 4, 4)
    assert not full[3].any() and not full[:, 3].any() and not full[:, :, 3].any()
    back = read_fdump(tmp_path / "F.bin")
    assert np.array_equal(back.F, grid.F) and back.count == 27


@pytest.mark.parametrize("body, line, message", [
    ("1 2 3 4\n2 2 2 5\n\n# note\nabc\n", 5, "expected 'h k l F', got 'abc'"),
    ("1 2 3 4\n1 2 3\n", 2, "expected 'h k l F', got '1 2 3'"),
    ("1 2 3 4\n1.5 2 3 4\n", 2, "h index 1.5 is not an integer"),
    ("1 2 3 4\n1 2 -3.25 4\n", 2, "l index -3.25 is not an integer"),
    ("1 2 3 nan\n", 1, "expected 'h k l F'"),
    ("1 2 3 4x\n", 1, "expected 'h k l F'"),
])
def test_hkl_malformed_lines_name_file_and_line(tmp_path, body, line, message):
    path = tmp_path / "p1.hkl"
    path.write_text(body)
    with pytest.raises(InputFileError) as err:
        read_hkl(path)
    assert f"p1.hkl line {line}: {message}" in str(err.value)
    assert err.value.line == line and err.value.path == str(path)


def test_hkl_missing_empty_and_huge(tmp_path):
    with pytest.raises(InputFileError, match="nope.hkl: HKL file not found"):
        read_hkl(tmp_path / "nope.hkl")
    (tmp_path / "e.hkl").write_text("# only a comment\n\n")
    with pytest.raises(InputFileError, match="no 'h k l F' records"):
        read_hkl(tmp_path / "e.hkl")
    (tmp_path / "h.hkl").write_text("0 0 0 1\n100000 100000 100000 1\n")
    with pytest.raises(InputFileError, match="grid of"):
        read_hkl(tmp_path / "h.hkl")


def test_fdump_errors(tmp_path):
    good = (GOLDEN / "hkl_nearest" / "Fdump.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(good[:-8])
    with pytest.raises(InputFileError, match="bytes of data"):
        read_fdump(tmp_path / "short.bin")
    (tmp_path / "bad.bin").write_bytes(b"hello\n\f" + bytes(8))
    with pytest.raises(InputFileError, match="not an Fdump"):
        read_fdump(tmp_path / "bad.bin")
    with pytest.raises(InputFileError, match="not found"):
        read_fdump(tmp_path / "none.bin")
    with pytest.raises(ValueError):
        write_fdump(tmp_path / "x.bin", HklGrid(0, 1, 0, 0, 0, 0, np.zeros((1, 1, 1)), 1))


# --- MOSFLM matrix ----------------------------------------------------------------------------

def test_mosflm_matrix_as_c_prints_it():
    a = read_mosflm_matrix(GOLDEN / "mosflm_matrix" / "A.mat")
    # c_stdout.log (lambda 1 A): rows X, Y, Z; columns a_star b_star c_star
    assert np.array_equal(a, [[0.02282500, -0.00650928, 0.00409960],
                              [0.00880583, 0.01866154, -0.00121326],
                              [-0.00514555, 0.00306207, 0.01610897]])
    real = np.linalg.inv(a)  # rows: a, b, c (a . a* = 1) at lambda = 1 A
    # "Unit Cell: 40 50 60"; real a = (36.52000046, 14.08932989, -8.23288972)
    assert np.linalg.norm(real, axis=1) == pytest.approx([40, 50, 60], rel=1e-6)
    assert real[0] == pytest.approx([36.52000046, 14.08932989, -8.23288972], abs=1e-6)


def test_mosflm_matrix_errors_and_free_layout(tmp_path):
    (tmp_path / "flat.mat").write_text("1 2 3 4\n5 6 7 8 10 junk\n")
    assert read_mosflm_matrix(tmp_path / "flat.mat").tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 10]]
    for text in ("0 0 0\n0 0 0\n0 0 0\n", "1 2 3\n4 5 6\n7 8 9\n"):
        (tmp_path / "singular.mat").write_text(text)
        with pytest.raises(InputFileError, match="singular"):
            read_mosflm_matrix(tmp_path / "singular.mat")
    (tmp_path / "short.mat").write_text("1 2 3\n4 5 6\n7 8\n")
    with pytest.raises(InputFileError, match="expected 9 numbers .* found 8"):
        read_mosflm_matrix(tmp_path / "short.mat")
    (tmp_path / "bad.mat").write_text("1 2 3\n4 five 6\n7 8 9\n")
    with pytest.raises(InputFileError, match="bad.mat line 2: .*'five'") as err:
        read_mosflm_matrix(tmp_path / "bad.mat")
    assert err.value.line == 2
    with pytest.raises(InputFileError, match="not found"):
        read_mosflm_matrix(tmp_path / "none.mat")


# --- source files -----------------------------------------------------------------------------

def test_source_file_as_c_reads_it():
    rows = read_source_file(GOLDEN / "sourcefile" / "sources.txt")
    # c_stdout.log: "-10 0 0   1 1e-10", "-10 0.0001 0   1 1e-10", ...
    assert rows == [SourceRow(-10.0, 0.0, 0.0, 1.0, 1e-10), SourceRow(-10.0, 1e-4, 0.0, 1.0, 1e-10),
                    SourceRow(-10.0, -1e-4, 0.0, 1.0, 1e-10), SourceRow(-10.0, 0.0, 1e-4, 1.0, 1e-10),
                    SourceRow(-10.0, 0.0, -1e-4, 1.0, 1e-10)]


def test_source_file_delimiters_missing_columns_and_errors(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("\n  -10,0;0:2!1.5e-10 99\n\t\n# comment\n-10\t1e-3\n0 0 -1 nan 2e-10\r\n5 6 7")
    assert read_source_file(path) == [
        SourceRow(-10.0, 0.0, 0.0, 2.0, 1.5e-10),
        SourceRow(-10.0, 1e-3, None, None, None),
        SourceRow(0.0, 0.0, -1.0, None, 2e-10),
        SourceRow(5.0, 6.0, 7.0, None, None),
    ]
    path.write_text("-10 0 0\n\n-10 zero 0 1\n")
    with pytest.raises(InputFileError, match=r"s.txt line 3: column Y is not a number: 'zero'") as e:
        read_source_file(path)
    assert e.value.line == 3
    path.write_text("\n \n")
    with pytest.raises(InputFileError, match="no sources"):
        read_source_file(path)
    with pytest.raises(InputFileError, match="not found"):
        read_source_file(tmp_path / "none.txt")
