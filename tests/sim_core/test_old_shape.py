"""Configs of the earlier shape (φ scan and spindle inside ``crystal``) still load and render the
same image: tests/data/old_shape holds a run_metadata.json and its float image written before the
move."""

import json
from pathlib import Path

import numpy as np
import pytest

from sim_core.config import OLD_FIELDS, load_config
from sim_core.errors import ConfigError
from sim_core.simulate import simulate

DATA = Path(__file__).resolve().parents[1] / "data" / "old_shape"


def test_old_run_metadata_loads_and_renders_the_same_image():
    md = json.loads((DATA / "run_metadata.json").read_text())
    assert "phi_start_deg" in md["config"]["crystal"]  # really the old shape
    cfg = load_config(md["config"])
    assert cfg.scan.phi_start_deg == 5.0 and cfg.scan.phi_steps == 3
    assert cfg.goniometer.spindle_axis == (0.0, 1.0, 0.0)
    assert sorted(n.split()[3] for n in cfg.deprecations) == sorted(OLD_FIELDS)
    # the same config written in the new shape has the same identity
    new = load_config(json.loads(cfg.canonical_json()))
    assert new.deprecations == []
    assert new.config_sha256() == cfg.config_sha256()
    image = simulate(cfg, device="cpu", dtype="float64").image
    stored = np.fromfile(DATA / "floatimage.bin", dtype=np.float32).reshape(md["shape"])
    assert np.asarray(image, dtype=np.float32).shape == stored.shape
    np.testing.assert_allclose(np.asarray(image, dtype=np.float32), stored, rtol=1e-6,
                               atol=1e-6 * float(stored.max()))


def test_a_field_given_both_ways_is_refused():
    with pytest.raises(ConfigError) as exc:
        load_config({"crystal": {"cell": {"a_A": 50, "b_A": 50, "c_A": 50}, "phi_steps": 2},
                     "scan": {"phi_steps": 3}, "structure_factors": {"default_F": 1}})
    assert exc.value.field == "crystal.phi_steps"
