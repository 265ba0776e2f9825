"""nanoBragg flags -> config: defaults, implicit rules, C quirks kept, errors that name the flag."""

import numpy as np
import pytest

from sim_core.errors import ArgumentError, ConfigError, InputFileError
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from tests.golden import case_names, load_case

CELL = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "10"]


def parse(*args, **kw):
    return parse_nanobragg_args(CELL + list(args), **kw)


def test_basic_values_and_units():
    c = parse("-lambda", "1.5", "-distance", "120", "-pixel", "0.2", "-detpixels", "64",
              "-N", "5", "-misset", "1", "2", "3", "-mosaic", "0.3", "-phi", "10", "-osc", "1",
              "-water", "5", "-dmin", "2", "-roi", "1", "10", "2", "20").config
    assert c.beam.wavelength_A == 1.5
    assert c.detector.distance_mm == 120 and c.detector.pixel_size_mm == 0.2
    assert c.detector.fast_pixels == c.detector.slow_pixels == 64
    assert (c.crystal.Na, c.crystal.Nb, c.crystal.Nc) == (5, 5, 5)
    assert c.crystal.misset_deg == (1.0, 2.0, 3.0)
    assert c.crystal.mosaic_spread_deg == 0.3
    assert c.scan.phi_start_deg == 10 and c.scan.osc_range_deg == 1
    assert c.background.water_um == 5 and c.sampling.dmin_A == 2
    assert c.sampling.roi == (1, 10, 2, 20)
    assert c.crystal.cell.a_A == 50 and c.crystal.cell.gamma_deg == 90


def test_energy_converts_to_wavelength():
    assert parse("-energy", "12398.42").config.beam.wavelength_A == pytest.approx(1.0)


def test_cell_with_fewer_values_uses_nanobraggs_defaults():
    c = parse_nanobragg_args(["-cell", "40", "-default_F", "1"]).config
    assert (c.crystal.cell.b_A, c.crystal.cell.c_A, c.crystal.cell.beta_deg) == (40, 40, 90)


def test_vectors_switch_to_custom_and_pivots():
    c = parse("-fdet_vector", "0", "0", "1").config
    assert c.detector.convention == "custom" and c.detector.pivot == "beam"
    c = parse("-spindle_axis", "1", "0", "0", "-twotheta", "5").config
    assert c.detector.convention == "custom" and c.detector.pivot == "sample"
    c = parse("-spindle_axis", "1", "0", "0", "-twotheta", "5", "-distance", "90").config
    assert c.detector.pivot == "beam"  # later flags win, as in nanoBragg
    c = parse("-xds").config
    assert c.detector.convention == "xds" and c.detector.pivot is None
    c = parse("-fdet_vector", "0", "0", "1", "-Xclose", "10").config
    assert c.detector.pivot == "sample"
    c = parse("-fdet_vector", "0", "0", "1", "-ORGX", "10").config
    assert c.detector.pivot == "sample"


def test_named_convention_pivot_overrides_flags_with_a_warning():
    p = parse("-pivot", "sample", "-close_distance", "100")
    assert p.config.detector.convention == "mosflm" and p.config.detector.pivot is None
    assert any("pivots about the beam" in w for w in p.warnings)


def test_misset_seed_reads_the_next_three_tokens_as_angles_like_nanobragg():
    p = parse("-misset", "random", "-misset_seed", "7", "-N", "3")
    # "-misset_seed 7 -N 3": nanoBragg sets misset angles (7, atof("-N")=0, 3)
    assert p.config.crystal.misset_deg == (7.0, 0.0, 3.0)
    assert not p.config.crystal.misset_random
    assert any("-misset_seed" in w for w in p.warnings)
    p = parse("-misset_seed", "7", "-misset", "random")
    assert p.config.crystal.misset_random and p.config.crystal.misset_seed == 7


def test_twotheta_axis_also_sets_twotheta_like_nanobragg():
    p = parse("-twotheta", "15", "-twotheta_axis", "0", "0", "-1")
    assert p.config.detector.twotheta_deg == 0.0
    p = parse("-twotheta_axis", "0", "0", "-1", "-twotheta", "15")
    assert p.config.detector.twotheta_deg == 15.0 and p.config.detector.pivot == "sample"


def test_output_flags():
    c = parse().config
    assert c.outputs.noise_file == "noiseimage.img" and c.outputs.pgm_file == "image.pgm"
    c = parse("-nonoise", "-nopgm", "-floatfile", "f.bin", "-intfile", "i.img").config
    assert c.outputs.noise_file is None and c.outputs.pgm_file is None
    assert c.outputs.float_file == "f.bin" and c.outputs.int_file == "i.img"
    c = parse("-nonoise", "-noisefile", "n.img").config  # order matters, as in C
    assert c.outputs.noise_file == "n.img"
    c = parse("-seed", "5", "-scale", "2", "-adc", "10", "-pgmscale", "3").config
    assert (c.noise.seed, c.outputs.int_scale, c.outputs.adc_offset, c.outputs.pgm_scale) == \
        (5, 2, 10, 3)


def test_extension_flags():
    p = parse("-dtype", "float32", "-device", "cpu", "-phi_mode", "c-parity",
              "-trace_pixel", "3", "4", "-trace_pixel", "5", "6", "-trace_file", "t.log")
    c = p.config
    assert (c.run.dtype, c.run.device, c.run.phi_mode) == ("float32", "cpu", "c-parity")
    assert c.run.trace_pixels == [(3, 4), (5, 6)] and p.trace_file == "t.log"


@pytest.mark.parametrize("args,flag,text", [
    (["-distancex", "100"], "-distancex", "unknown flag -distancex"),
    (["-dist", "100"], "-dist", "unknown flag -dist"),
    (["-distance"], "-distance", "-distance needs a value"),
    (["-distance", "far"], "-distance", "expected a number, got 'far'"),
    (["-misset", "1", "2"], "-misset", "three angles"),
    (["-dtype", "half"], "-dtype", "float64 or float32"),
    (["100"], "100", "unexpected argument '100'"),
])
def test_bad_flags_are_errors_naming_the_flag(args, flag, text):
    with pytest.raises(ArgumentError) as exc:
        parse(*args)
    assert exc.value.flag == flag
    assert text in str(exc.value)


def test_unknown_flag_suggests_the_right_one():
    with pytest.raises(ArgumentError, match="did you mean -detpixels"):
        parse("-detpixel", "10")


def test_impossible_geometry_from_flags_names_the_field():
    with pytest.raises(ConfigError) as exc:
        parse("-distance", "0")
    assert exc.value.field == "detector.distance_mm"


def test_missing_structure_factors_is_an_error():
    with pytest.raises(ConfigError, match="hkl_file"):
        parse_nanobragg_args(["-cell", "50", "50", "50", "90", "90", "90"])


def test_img_header_presets_detector(tmp_path):
    from sim_core.io.smv import SmvGeometry, write_smv
    geom = SmvGeometry(fpixels=40, spixels=30, pixel_size_m=0.2e-3, distance_m=0.15,
                       wavelength_m=1.3e-10, xbeam_m=3e-3, ybeam_m=4e-3, fbeam_m=3e-3,
                       sbeam_m=4e-3, detsize_s_m=6e-3, dials_origin_mm=(0, 0, 0), orgx=10, orgy=11,
                       close_distance_m=0.15)
    write_smv(tmp_path / "h.img", np.zeros((30, 40), np.uint16), geom)
    c = parse_nanobragg_args(CELL + ["-img", "h.img", "-pixel", "0.25"], base_dir=tmp_path).config
    assert (c.detector.fast_pixels, c.detector.slow_pixels) == (40, 30)
    assert c.detector.pixel_size_mm == 0.25  # flags override the header
    assert c.beam.wavelength_A == pytest.approx(1.3)
    assert c.detector.beam_x_mm == pytest.approx(3) and c.detector.beam_y_mm == pytest.approx(4)
    m = parse_nanobragg_args(CELL + ["-mask", "h.img"], base_dir=tmp_path).config
    assert m.detector.mask_file == "h.img"
    assert m.detector.beam_y_mm == pytest.approx(0.2 * 30 - 4)  # the mask flips Y, as in C


def test_missing_img_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="nothere.img"):
        parse_nanobragg_args(CELL + ["-img", "nothere.img"], base_dir=tmp_path)


def test_fdump_fallback_only_when_allowed(tmp_path):
    (tmp_path / "Fdump.bin").write_bytes(b"0 0 0 0 0 0\n\f" + b"\0" * 64)
    args = ["-cell", "50", "50", "50", "90", "90", "90"]
    p = parse_nanobragg_args(args, base_dir=tmp_path, allow_fdump=True)
    assert p.config.structure_factors.hkl_file == "Fdump.bin"
    with pytest.raises(ConfigError):
        parse_nanobragg_args(args, base_dir=tmp_path)


@pytest.mark.parametrize("name", case_names())
def test_config_to_args_round_trips(name):
    case = load_case(name)
    first = parse_nanobragg_args(case.our_args, base_dir=case.folder).config
    again = parse_nanobragg_args(config_to_args(first), base_dir=case.folder).config
    assert again == first


def test_named_convention_after_vectors_replaces_them():
    p = parse("-spindle_axis", "0", "1", "0", "-twotheta_axis", "0", "0", "-1", "-mosflm")
    c = p.config
    assert c.detector.convention == "mosflm"
    assert c.goniometer.spindle_axis is None and c.detector.twotheta_axis is None
    assert c.detector.twotheta_deg == 0.0  # still set from the axis' first component
    assert sum("is ignored" in w for w in p.warnings) == 2


def test_curved_det_as_the_last_argument_is_ignored_like_nanobragg():
    assert parse("-curved_det", "-N", "2").config.detector.curved
    p = parse("-N", "2", "-curved_det")
    assert not p.config.detector.curved
    assert any("last argument" in w for w in p.warnings)


def test_nanobragg_leniencies_kept():
    p = parse("-pivot", "Beam")  # nanoBragg matches lower case only and ignores the rest
    assert any("-pivot Beam" in w for w in p.warnings)
    c = parse_nanobragg_args(["-cell", "70", "80", "90", "91", "92", "93", "-default_F", "1",
                              "-cell", "50", "60"]).config.crystal.cell
    assert (c.a_A, c.b_A, c.c_A, c.alpha_deg, c.gamma_deg) == (50, 60, 90, 91, 93)
    p = parse("-source_distance", "1000")
    assert any("ignored" in w for w in p.warnings)


def test_misset_seed_lookahead_stops_at_our_own_flags():
    # "-misset_seed 5" last among nanoBragg's flags: the C program sees no angles after it
    p = parse("-misset", "random", "-misset_seed", "5", "-dtype", "float32", "-phi_mode",
              "c-parity")
    assert p.config.crystal.misset_random and p.config.crystal.misset_seed == 5


def test_zero_phi_steps_is_an_error_not_nan():
    with pytest.raises(ConfigError, match="no phi steps"):
        from sim_core.sampling import resolve_sampling
        resolve_sampling(parse("-osc", "0", "-phistep", "0.1").config)
