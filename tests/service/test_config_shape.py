"""The config's sections through the API: out-of-range numbers are 422 naming the field (in the
config and in the nanoBragg-arguments form), configs of the earlier shape are accepted with a
deprecation note in the job's warnings, and the OpenAPI schema shows the sections."""

from __future__ import annotations

import json

import pytest

from tests.service.helpers import SMALL_CONFIG, submit

ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-detpixels", "32"]


def _config(**sections):
    cfg = json.loads(json.dumps(SMALL_CONFIG))
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.mark.parametrize("body,field,words", [
    ({"config": _config(beam={"beam_size_mm": 0, "flux_photons_per_s": 1e12})},
     "config.beam.beam_size_mm", ()),
    ({"config": _config(crystal={"misset_deg": [float("nan"), 0, 0]})},
     "config.crystal.misset_deg.0", ()),
    ({"config": _config(crystal={"misset_deg": [0, 0, float("inf")]})},
     "config.crystal.misset_deg.2", ()),
    ({"config": _config(beam={"wavelength_A": 1e-320})}, "config.beam.wavelength_A", ()),
    ({"config": _config(detector={"distance_mm": 1e-320})}, "config.detector.distance_mm", ()),
    ({"config": _config(crystal={"mosaic_seed": 1e30})}, "config.crystal.mosaic_seed", ()),
    ({"config": _config(scan={"osc_range_deg": 360, "phi_step_deg": 1e-300})},
     "config.scan.phi_step_deg", ()),
    ({"config": _config(noise={"seed": 2 ** 64})}, "config.noise.seed", ()),
    ({"nanobragg_args": ARGS + ["-lambda", "1e-320"]}, "nanobragg_args.11",
     ("-lambda", "beam.wavelength_A")),
    ({"nanobragg_args": ARGS + ["-beamsize", "0", "-flux", "1e12"]}, "nanobragg_args.11",
     ("-beamsize", "beam.beam_size_mm")),
    ({"nanobragg_args": ARGS + ["-osc", "1e300", "-phistep", "1e-300"]}, "nanobragg_args.11",
     ("-osc", "scan.osc_range_deg")),
    ({"nanobragg_args": ARGS + ["-mosaic_seed", "1e30"]}, "nanobragg_args.11",
     ("-mosaic_seed", "crystal.mosaic_seed")),
    ({"nanobragg_args": ARGS + ["-seed", "1e30"]}, "nanobragg_args.11", ("-seed", "noise.seed")),
    ({"nanobragg_args": ARGS + ["-osc", "0", "-phistep", "0.1"]}, "nanobragg_args.11",
     ("-osc", "scan.osc_range_deg")),
    # a series is limited in images (BRAGG_MAX_SERIES_IMAGES, 3600 by default)
    ({"config": _config(scan={"images": 4000, "osc_range_deg": 0.5})}, "config.scan.images",
     ("max_series_images",)),
    ({"nanobragg_args": ARGS + ["-images", "4000", "-osc", "0.5"]}, "nanobragg_args.11",
     ("-images", "scan.images", "max_series_images")),
])
def test_out_of_range_is_422_naming_the_field(alice, body, field, words):
    r = alice.post("/v1/jobs", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert errors[0]["field"] == field, errors
    for w in words:
        assert w in errors[0]["message"], errors


def test_old_shape_config_is_accepted_with_a_deprecation_note(alice):
    old = _config(crystal={"phi_start_deg": 1.0, "osc_range_deg": 0.5, "phi_steps": 2},
                  noise={"seed": 5})
    new = _config(scan={"phi_start_deg": 1.0, "osc_range_deg": 0.5, "phi_steps": 2},
                  noise={"seed": 5})
    a = submit(alice, {"config": old, "label": "old shape"})
    b = submit(alice, {"config": new, "label": "new shape"})
    assert a["config_sha256"] == b["config_sha256"]
    notes = [w for w in a["warnings"] if w.startswith("deprecated")]
    assert len(notes) == 3 and "crystal.phi_steps is now scan.phi_steps" in " ".join(notes)
    assert not [w for w in b["warnings"] if w.startswith("deprecated")]


def test_openapi_shows_the_sections(service, alice):
    spec = alice.get("/openapi.json").json()
    props = spec["components"]["schemas"]["SimulationConfig"]["properties"]
    assert {"beam", "detector", "goniometer", "scan", "crystal", "structure_factors", "sampling",
            "background", "noise", "outputs", "run"} <= set(props)
    assert "phi_steps" in spec["components"]["schemas"]["Scan"]["properties"]
