"""The config model: validation that names fields, JSON round trip, identity hash."""

import json

import pytest

from sim_core.config import SimulationConfig, load_config
from sim_core.errors import ConfigError

BASE = {"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}},
        "structure_factors": {"default_F": 100}}


def with_(**sections):
    data = json.loads(json.dumps(BASE))
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def test_defaults_are_nanobraggs():
    c = load_config(BASE)
    assert c.beam.wavelength_A == 1.0
    assert c.detector.convention == "mosflm"
    assert c.detector.pixel_size_mm == 0.1
    assert c.beam.fluence_photons_per_m2 == pytest.approx(1.25932015286227e29)
    assert c.crystal.mosaic_seed == 12345678
    assert c.outputs.float_file == "floatimage.bin" and c.outputs.adc_offset == 40.0
    assert c.run.dtype == "float64" and c.run.phi_mode == "default"


@pytest.mark.parametrize("section,values,field", [
    ("detector", {"distance_mm": 0}, "detector.distance_mm"),
    ("detector", {"pixel_size_mm": -0.1}, "detector.pixel_size_mm"),
    ("detector", {"fast_pixels": 0}, "detector.fast_pixels"),
    ("beam", {"wavelength_A": 0}, "beam.wavelength_A"),
    ("crystal", {"cell": {"a_A": 10, "b_A": 10, "c_A": 10, "alpha_deg": 120, "beta_deg": 120,
                          "gamma_deg": 120}}, "crystal.cell"),
    ("crystal", {"cell": {"a_A": -5, "b_A": 10, "c_A": 10}}, "crystal.cell.a_A"),
    ("crystal", {"Na": -1}, "crystal.Na"),
    ("sampling", {"oversample": 0}, "sampling.oversample"),
    ("detector", {"fdet_vector": [0, 0, 1]}, "detector.fdet_vector"),
    ("detector", {"convention": "xds", "pivot": "beam"}, "detector.pivot"),
    ("detector", {"convention": "custom", "fdet_vector": [0, 0, 0]}, "detector.fdet_vector"),
    ("beam", {"polarization": 2}, "beam.polarization"),
    ("run", {"dtype": "float16"}, "run.dtype"),
    ("detector", {"not_a_field": 1}, "detector.not_a_field"),
])
def test_impossible_values_are_rejected_with_their_field(section, values, field):
    with pytest.raises(ConfigError) as exc:
        load_config(with_(**{section: values}))
    assert exc.value.field == field
    assert field in str(exc.value)


def test_needs_a_crystal_and_structure_factors():
    with pytest.raises(ConfigError, match="crystal.cell"):
        load_config({"structure_factors": {"default_F": 1}})
    with pytest.raises(ConfigError, match="hkl_file"):
        load_config({"crystal": {"cell": {"a_A": 10, "b_A": 10, "c_A": 10}}})


def test_vectors_need_the_custom_convention():
    with pytest.raises(ConfigError, match="beam.beam_vector"):
        load_config(with_(beam={"beam_vector": [1, 0, 0]}))
    c = load_config(with_(beam={"beam_vector": [1, 0, 0]}, detector={"convention": "custom"}))
    assert c.beam.beam_vector == (1.0, 0.0, 0.0)


def test_json_round_trip_and_hash():
    c = load_config(with_(crystal={"misset_deg": [1, 2, 3], "mosaic_spread_deg": 0.2},
                          run={"trace_pixels": [[1, 2]]}))
    again = SimulationConfig.model_validate_json(c.model_dump_json())
    assert again == c
    assert again.config_sha256() == c.config_sha256()
    assert len(c.config_sha256()) == 64
    # run-environment options do not change the identity; physics does
    moved = c.model_copy(deep=True)
    moved.run.device = "cpu"
    moved.run.trace_pixels = []
    assert moved.config_sha256() == c.config_sha256()
    other = c.model_copy(deep=True)
    other.detector.distance_mm = 101
    assert other.config_sha256() != c.config_sha256()


def test_file_refs():
    c = load_config({"crystal": {"matrix_file": "A.mat"},
                     "structure_factors": {"hkl_file": "sha256:" + "0" * 64}})
    assert c.file_refs() == {"crystal.matrix_file": "A.mat",
                             "structure_factors.hkl_file": "sha256:" + "0" * 64}


# -- physical ranges: every number finite, normal and in range, named by its field ----------------
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("sections,field", [
    ({"beam": {"beam_size_mm": 0, "flux_photons_per_s": 1e12}}, "beam.beam_size_mm"),
    ({"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "misset_deg": [NAN, 0, 0]}},
     "crystal.misset_deg.0"),
    ({"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "misset_deg": [0, INF, 0]}},
     "crystal.misset_deg.1"),
    ({"beam": {"wavelength_A": 1e-320}}, "beam.wavelength_A"),
    ({"beam": {"wavelength_A": 1e300}}, "beam.wavelength_A"),
    ({"detector": {"distance_mm": 1e-320}}, "detector.distance_mm"),
    ({"detector": {"rotx_deg": 1e-320}}, "detector.rotx_deg"),  # subnormal
    ({"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "mosaic_seed": 1e30}},
     "crystal.mosaic_seed"),
    ({"scan": {"osc_range_deg": 1e300, "phi_step_deg": 1e-300}}, "scan.osc_range_deg"),
    ({"scan": {"osc_range_deg": 360, "phi_step_deg": 1e-300}}, "scan.phi_step_deg"),
    ({"beam": {"hdiv_range_mrad": 100, "hdiv_step_mrad": 1e-200}}, "beam.hdiv_step_mrad"),
    ({"noise": {"seed": 2 ** 64}}, "noise.seed"),
    ({"noise": {"seed": 2 ** 63}}, "noise.seed"),
    ({"detector": {"pixel_size_mm": 0}}, "detector.pixel_size_mm"),
    ({"detector": {"size_fast_mm": 1e5, "pixel_size_mm": 1e-4}}, "detector.size_fast_mm"),
    ({"scan": {"images": 0}}, "scan.images"),
])
def test_out_of_range_numbers_name_their_field(sections, field):
    with pytest.raises(ConfigError) as exc:
        load_config(with_(**sections))
    assert exc.value.field == field


def test_the_generators_whole_range_is_accepted():
    c = load_config(with_(noise={"seed": 2 ** 63 - 1}, crystal={"mosaic_seed": -(2 ** 63 - 1)}))
    assert c.noise.seed == 2 ** 63 - 1


def test_json_text_with_nan_names_the_field():
    text = json.dumps(with_(beam={"wavelength_A": NAN}))
    with pytest.raises(ConfigError) as exc:
        load_config(text)
    assert exc.value.field == "beam.wavelength_A"


@pytest.mark.parametrize("args,flag,field", [
    (["-lambda", "1e-320"], "-lambda", "beam.wavelength_A"),
    (["-distance", "1e-320"], "-distance", "detector.distance_mm"),
    (["-mosaic_seed", "1e30"], "-mosaic_seed", "crystal.mosaic_seed"),
    (["-seed", "1e19"], "-seed", "noise.seed"),
    (["-osc", "1e300", "-phistep", "1e-300"], "-osc", "scan.osc_range_deg"),
    (["-osc", "360", "-phistep", "1e-300"], "-phistep", "scan.phi_step_deg"),
    (["-beamsize", "0", "-flux", "1e12"], "-beamsize", "beam.beam_size_mm"),
    (["-wave", "1e300", "-N", "1"], "-wave", "beam.wavelength_A"),
])
def test_out_of_range_flags_name_flag_and_field(args, flag, field):
    from sim_core.errors import ArgumentError
    from sim_core.nanobragg_args import parse_nanobragg_args
    with pytest.raises((ConfigError, ArgumentError)) as exc:
        parse_nanobragg_args(["-cell", "100", "-default_F", "1"] + args)
    assert exc.value.flag == flag
    assert flag in str(exc.value) and field in str(exc.value)


def test_a_series_validates_and_round_trips_but_is_not_rendered_yet():
    from sim_core.experiment import build_experiment
    c = load_config(with_(scan={"images": 3, "first_image": 10, "osc_range_deg": 0.5}))
    again = load_config(json.loads(c.canonical_json()))
    assert (again.scan.images, again.scan.first_image) == (3, 10)
    with pytest.raises(ConfigError) as exc:
        build_experiment(c)
    assert exc.value.field == "scan.images"
