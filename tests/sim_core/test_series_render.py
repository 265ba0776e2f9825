"""Rendering a rotation series: image n equals a single render at its φ, one crystal for every image,
per-image noise seeds, numbered files and headers from the `nanobragg` CLI."""

from __future__ import annotations

import json

import fabio
import numpy as np
import pytest
from fabio.cbfimage import PilatusHeader

from sim_core import cli
from sim_core.errors import ConfigError
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from sim_core.series import (image_config, image_seed, numbered_name, series_command_loop,
                             series_image, series_metadata, series_of)
from sim_core.simulate import render_series, simulate

# a random misset, mosaic domains and 3 φ steps per image, on a 20 x 16 detector
ARGS = ["-cell", "60", "70", "80", "90", "90", "90", "-default_F", "100", "-N", "4",
        "-lambda", "1.2", "-distance", "80", "-detpixels_x", "20", "-detpixels_y", "16",
        "-pixel", "0.4", "-mosaic", "0.5", "-mosaic_domains", "3", "-misset", "random",
        "-phi", "10", "-osc", "0.5", "-phisteps", "3", "-oversample", "1", "-seed", "321",
        "-images", "4", "-first_image", "2"]


@pytest.fixture(scope="module")
def config():
    return parse_nanobragg_args(ARGS).config


@pytest.fixture(scope="module")
def series(config):
    return list(render_series(config, device="cpu", dtype="float64"))


def test_image_config_is_the_series_config_at_the_image_angle_and_seed(config):
    cfg = image_config(config, 4)
    assert (cfg.scan.phi_start_deg, cfg.scan.images, cfg.scan.first_image) == (11.0, 1, 1)
    assert cfg.noise.seed == image_seed(321, 4)
    # a random misset's seed is fixed to the series seed, the same for every image
    assert cfg.crystal.misset_seed == 321 == image_config(config, 2).crystal.misset_seed
    assert cfg.scan.osc_range_deg == 0.5 and cfg.scan.phi_steps == 3
    with pytest.raises(ConfigError, match="not in the series"):
        image_config(config, 6)
    unseeded = config.model_copy(deep=True)
    unseeded.noise.seed = None
    with pytest.raises(ConfigError, match="seed") as err:
        image_config(unseeded, 2)
    assert err.value.field == "noise.seed"


def test_image_n_is_bit_identical_to_a_single_render_at_its_phi(config, series):
    assert [im.n for im, _ in series] == [2, 3, 4, 5]
    assert [im.phi_start_deg for im, _ in series] == [10.0, 10.5, 11.0, 11.5]
    for im, result in series:
        single = config.model_copy(deep=True)
        single.scan.images = 1
        single.scan.phi_start_deg = im.phi_start_deg
        alone = simulate(single, device="cpu", dtype="float64")
        np.testing.assert_array_equal(result.image, alone.image)
        assert result.config.noise.seed == im.seed == image_seed(321, im.n)
        assert result.seeds["misset_seed"] == 321
    # one crystal: the same misset and mosaic domains, the rotation differs
    first, last = series[0][1].experiment, series[-1][1].experiment
    np.testing.assert_array_equal(first.mosaic_umats, last.mosaic_umats)
    assert first.notes == last.notes  # the note that gives the random misset angles
    assert not np.array_equal(series[0][1].image, series[1][1].image)


def test_a_plain_simulate_of_a_series_refuses_and_points_at_render_series(config):
    with pytest.raises(ConfigError, match="render_series") as err:
        simulate(config, device="cpu")
    assert err.value.field == "scan.images"


def test_a_series_needs_an_oscillation_range():
    with pytest.raises(ConfigError, match="-osc") as err:
        parse_nanobragg_args(["-cell", "60", "60", "60", "90", "90", "90", "-default_F", "1",
                              "-images", "3"])
    assert err.value.field == "scan.osc_range_deg"


def test_series_metadata_lists_every_image(config):
    md = series_metadata(config)
    assert (md["images"], md["first_image"], md["series_seed"], md["misset_seed"]) == (4, 2, 321,
                                                                                      321)
    assert md["image"] == [im.as_dict() for im in series_of(config)]
    assert series_image(config, 3) == series_of(config)[1]
    assert md["image"][1] == {"n": 3, "phi_start_deg": 10.5, "osc_deg": 0.5,
                              "seed": image_seed(321, 3)}
    json.dumps(md)


def test_the_command_loop_leaves_our_series_flags_out(config):
    config = config.model_copy(deep=True)
    config.outputs.cbf_file = "image.cbf"
    args = config_to_args(config, outputs="explicit")
    assert args[-6:] == ["-cbf", "image.cbf", "-images", "4", "-first_image", "2"]
    command = series_command_loop(args, series_of(config)).splitlines()[1]
    assert "-images" not in command and "-first_image" not in command
    # every output is numbered, those at nanoBragg's default names too
    for flag, name in (("-floatfile", "floatimage"), ("-intfile", "intimage"),
                       ("-noisefile", "noiseimage"), ("-pgmfile", "image"), ("-cbf", "image")):
        assert f'{flag} {name}_"$n".' in command


def test_cli_writes_numbered_files_with_the_rotation_in_their_headers(config, series, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.run(ARGS + ["-cbf", "image.cbf", "-nopgm"]) == 0
    out = capsys.readouterr().out
    assert "image 2/4 (number 3): phi 10.5 to 11 deg" in out
    names = ["floatimage.bin", "intimage.img", "noiseimage.img", "image.cbf"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(
        [numbered_name(x, n) for x in names for n in (2, 3, 4, 5)] + ["series_metadata.json"])
    meta = json.loads((tmp_path / "series_metadata.json").read_text())
    assert meta["series"] == series_metadata(config)
    # the float image is the series render's; image 3 (the second) read back with fabio
    im, result = series[1]
    floats = np.fromfile(tmp_path / "floatimage_00003.bin", dtype="<f4").reshape(16, 20)
    np.testing.assert_array_equal(floats, result.image)
    for name in ("intimage_00003.img", "noiseimage_00003.img"):
        h = fabio.open(str(tmp_path / name)).header
        assert float(h["PHI"]) == 10.5 and float(h["OSC_START"]) == 10.5
        assert float(h["OSC_RANGE"]) == 0.5
    cbf = fabio.open(str(tmp_path / "image_00003.cbf"))
    h = PilatusHeader(cbf.header["_array_data.header_contents"])
    assert h["Start_angle"] == 10.5 and h["Phi"] == 10.5
    assert h["Angle_increment"] == 0.5 and h["Phi_increment"] == 0.5
    ints = fabio.open(str(tmp_path / "intimage_00003.img")).data
    np.testing.assert_array_equal(cbf.data, ints.astype(np.int32))
    # each image's noise comes from its own seed: the series render's, written directly
    from sim_core.outputs import write_outputs
    assert result.config.noise.seed == image_seed(321, 3)
    write_outputs(result, tmp_path / "direct", {"noise": "n.img"})
    assert (tmp_path / "direct" / "n.img").read_bytes() == \
        (tmp_path / "noiseimage_00003.img").read_bytes()
