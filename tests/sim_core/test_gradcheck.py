"""Gradients reach the continuous parameters (float64 gradcheck on small renders)."""

import pytest
import torch

from sim_core.config import load_config
from sim_core.engine import Engine
from sim_core.experiment import GRAD_PARAMETERS, build_experiment

CONFIG = load_config({
    "crystal": {"cell": {"a_A": 40, "b_A": 50, "c_A": 60, "alpha_deg": 85, "beta_deg": 95,
                         "gamma_deg": 100}, "Na": 3, "Nb": 3, "Nc": 3, "misset_deg": [5, 10, 15],
                "mosaic_spread_deg": 0.5, "mosaic_domains": 2},
    "scan": {"phi_steps": 2, "osc_range_deg": 1},
    "structure_factors": {"default_F": 10},
    "beam": {"wavelength_A": 1.0},
    "detector": {"distance_mm": 50, "fast_pixels": 5, "slow_pixels": 4, "pixel_size_mm": 2.0,
                 "rotx_deg": 1.0, "roty_deg": -2.0, "rotz_deg": 0.5, "twotheta_deg": 0.5},
    "sampling": {"oversample": 1},
})
VALUES = {"cell_a_A": 40.0, "cell_gamma_deg": 100.0, "misset_x_deg": 5.0, "misset_z_deg": 15.0,
          "distance_mm": 50.0, "beam_x_mm": 5.0, "beam_y_mm": 4.0, "rotx_deg": 1.0,
          "roty_deg": -2.0, "twotheta_deg": 0.5, "wavelength_A": 1.0}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_gradcheck(name):
    assert name in GRAD_PARAMETERS

    def render(x):
        exp = build_experiment(CONFIG, params={name: x})
        image, _ = Engine(exp, dtype=torch.float64).render()
        return image

    x = torch.tensor(VALUES[name], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(render, (x,), eps=1e-6, atol=1e-7, rtol=1e-4)


def test_gradient_is_not_zero():
    x = torch.tensor(50.0, dtype=torch.float64, requires_grad=True)
    image, _ = Engine(build_experiment(CONFIG, params={"distance_mm": x})).render()
    image.sum().backward()
    assert x.grad is not None and abs(float(x.grad)) > 0
