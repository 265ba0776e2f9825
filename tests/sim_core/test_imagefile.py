"""Detector images read for viewing (sim_core.io.imagefile): SMV of any pixel type and byte order
through a memory map, CBF through fabio, the overload value from the header, errors naming the
file; the upload kind ``image`` of sim_core.inputs."""

from __future__ import annotations

import numpy as np
import pytest
from fabio.cbfimage import CbfImage

from sim_core.errors import InputFileError
from sim_core.inputs import KINDS, summarize
from sim_core.io.imagefile import open_image
from sim_core.io.smv import read_smv
from tests.golden import GOLDEN


def smv_bytes(pixels: np.ndarray, kind: str, order: str, extra: str = "") -> bytes:
    head = (f"{{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER={order};\nTYPE={kind};\n"
            f"SIZE1={pixels.shape[1]};\nSIZE2={pixels.shape[0]};\n{extra}}}\f").encode()
    return head.ljust(512, b" ") + pixels.tobytes()


def test_nanobragg_s_smv_image_is_its_pixels_with_65535_as_overload():
    path = GOLDEN / "cubic_default_F" / "intimage.img"
    im = open_image(path)
    assert isinstance(im.pixels, np.memmap)
    assert np.array_equal(im.pixels, read_smv(path)[1])
    assert (im.format, im.saturation) == ("smv", 65535.0)
    assert summarize(path, "image") == {"format": "smv", "shape": [256, 256], "dtype": "uint16",
                                        "saturation": 65535.0}


def test_a_big_endian_32_bit_smv_and_its_saturated_value(tmp_path):
    px = (np.arange(12, dtype=np.uint32).reshape(3, 4) * 100_000).astype(">u4")
    path = tmp_path / "frame.img"
    path.write_bytes(smv_bytes(px, "unsigned_int", "big_endian", "SATURATED_VALUE=900000;\n"))
    im = open_image(path)
    assert im.pixels.shape == (3, 4) and np.array_equal(im.pixels, px)
    assert im.saturation == 900000.0
    path.write_bytes(smv_bytes(px, "unsigned_int", "big_endian"))
    assert open_image(path).saturation == float(2 ** 32 - 1)
    signed = tmp_path / "signed.img"
    signed.write_bytes(smv_bytes(np.array([[-1, 2]], "<i2"), "signed_short", "little_endian"))
    assert open_image(signed).saturation is None
    assert open_image(signed).pixels.tolist() == [[-1, 2]]


def test_a_cbf_image_is_decoded(tmp_path):
    data = np.arange(-3, 17, dtype=np.int32).reshape(4, 5) * 1000
    path = tmp_path / "frame.cbf"
    CbfImage(data=data).write(str(path))
    im = open_image(path)
    assert np.array_equal(im.pixels, data) and not im.pixels.flags.writeable
    assert (im.format, im.saturation) == ("cbf", None)


@pytest.mark.parametrize("content, says", [
    (b"hello, not an image", "neither an SMV image"),
    (smv_bytes(np.zeros((4, 4), "<u2"), "unsigned_short", "little_endian")[:530], "truncated SMV"),
    (smv_bytes(np.zeros((2, 2), "<u2"), "rgb", "little_endian"), "TYPE=rgb"),
])
def test_a_file_that_is_no_image_is_refused_naming_it(tmp_path, content, says):
    path = tmp_path / "mine.img"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        open_image(path, "mine.img")
    assert str(err.value).startswith("mine.img: ") and says in str(err.value)


def test_image_is_an_upload_kind_no_simulation_reads():
    from sim_core.inputs import BY_KIND, FLAG_KINDS
    assert "image" in KINDS and "image" not in BY_KIND and "image" not in FLAG_KINDS.values()
