"""Each physics function on its own, against hand-computed values."""

import math

import pytest
import torch

from sim_core import physics

f64 = torch.float64


def t(*x):
    return torch.tensor(x, dtype=f64)


def test_nearest_index_rounds_halves_down_like_ceil_h_minus_half():
    assert physics.nearest_index(t(0.5, 1.5, -0.5, 2.49, 2.51)).tolist() == [0, 1, -1, 2, 3]


def test_sincg():
    assert physics.sincg(t(0.0), 5).item() == 5.0
    x = 0.3
    assert physics.sincg(t(x), 4).item() == pytest.approx(math.sin(4 * x) / math.sin(x))


@pytest.mark.parametrize("h", [0.0, 0.01, 0.37, 1.02, -2.4, 7.5, 13.0001])
@pytest.mark.parametrize("N", [2, 3, 8])
def test_sincg_fractional_times_sign_is_sincg(h, N):
    ht = t(h)
    n = physics.nearest_index(ht)
    got = physics.sincg_fractional(ht - n, N) * physics.sincg_sign(n, N)
    want = physics.sincg(math.pi * ht, N)
    assert got.item() == pytest.approx(want.item(), rel=1e-9, abs=1e-9)


def test_sinc3():
    assert physics.sinc3(t(0.0)).item() == 1.0
    x = 1.7
    assert physics.sinc3(t(x)).item() == pytest.approx(3 * (math.sin(x) / x - math.cos(x)) / x**2)


def test_lattice_shapes_at_a_node_and_off_it():
    z = t(0.0)
    peak = 6 * 7 * 8
    assert physics.lattice_round(z, z, z, 6, 7, 8, 1.0).item() == pytest.approx(
        peak * physics.ROUND_XTAL_SCALE)
    eye = torch.eye(3, dtype=f64)
    rad = physics.reciprocal_distance_sqr(z, z, z, eye[0], eye[1], eye[2], 6, 7, 8)
    assert physics.lattice_gauss(rad, 6, 7, 8, 1.0).item() == pytest.approx(peak)
    assert physics.lattice_tophat(rad, 6, 7, 8, 1.0).item() == pytest.approx(peak)
    far = physics.reciprocal_distance_sqr(t(0.01), z, z, eye[0], eye[1], eye[2], 6, 7, 8)
    assert far.item() == pytest.approx(0.01**2 * (6 * 7 * 8) ** 2)
    assert physics.lattice_tophat(far, 6, 7, 8, 1.0).item() == 0.0  # 11.3 > 0.3969
    assert physics.lattice_gauss(far, 6, 7, 8, 1.0).item() == pytest.approx(
        peak * math.exp(-far.item() / 0.63))


def test_polarization_unpolarized_and_kahn():
    inc = t(1.0, 0.0, 0.0)
    # scattered by 90 degrees in the plane perpendicular to the E-vector (z): full intensity
    d_perp = t(0.0, 1.0, 0.0)
    d_par = t(0.0, 0.0, 1.0)
    axis = t(0.0, 0.0, 1.0)
    assert physics.polarization_factor(0.0, inc, d_perp, axis).item() == pytest.approx(0.5)
    assert physics.polarization_factor(1.0, inc, d_perp, axis).item() == pytest.approx(1.0)
    assert physics.polarization_factor(1.0, inc, d_par, axis).item() == pytest.approx(0.0, abs=1e-15)
    c = math.cos(0.3)
    d = t(c, math.sin(0.3), 0.0)
    assert physics.polarization_factor(0.0, inc, d, axis).item() == pytest.approx(0.5 * (1 + c * c))


def test_solid_angle_and_absorption():
    R = t(0.2)
    assert physics.solid_angle(1e-4, R, 0.1, False).item() == pytest.approx(1e-8 / 0.04 * 0.5)
    assert physics.solid_angle(1e-4, R, 0.1, True).item() == pytest.approx(25.0)
    par = t(0.8)
    got = physics.capture_fraction(t(1.0), 1e-4, 5000.0, par).item()
    assert got == pytest.approx(math.exp(-1e-4 * 5000 / 0.8) - math.exp(-2e-4 * 5000 / 0.8))


def test_scaling_constants():
    assert math.sqrt(physics.R_E_SQR) == pytest.approx(2.81794117756025e-15)
    assert physics.fluence_from_beam(1.0, 1e12, 0.5, 0.05e-3) == pytest.approx(1e12 * 0.5 / 0.05e-3**2)
    assert physics.fluence_from_beam(7.0, 0.0, 0.5, 0.05e-3) == 7.0
    assert physics.water_background(80e-6, 1.25932015286227e29) == pytest.approx(
        2.57**2 * 7.94079248018965e-30 * 1.25932015286227e29 * (80e-6) ** 3 * 1e6
        * 6.02214179e23 / 18.0)


def test_tricubic_reproduces_a_cubic_and_nearest_defaults():
    from sim_core.io.hkl import HklGrid
    from sim_core.structure_factors import StructureFactorTable
    import numpy as np
    h, k, l = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6), np.arange(-5, 6), indexing="ij")
    F = 1 + 0.5 * h + 0.1 * h * k - 0.02 * l**3 + 0.3 * h * k * l
    grid = HklGrid(-5, 5, -5, 5, -5, 5, F.astype(np.float64), count=F.size)
    sf = StructureFactorTable.from_grid(grid, default_F=7.0)
    x = t(0.3, -1.7, 2.2)
    got = sf.tricubic(x[0:1], x[1:2], x[2:3]).item()
    hh, kk, ll = 0.3, -1.7, 2.2
    assert got == pytest.approx(1 + 0.5 * hh + 0.1 * hh * kk - 0.02 * ll**3 + 0.3 * hh * kk * ll)
    assert sf.nearest(t(1.0), t(2.0), t(-3.0)).item() == pytest.approx(F[6, 7, 2])
    assert sf.nearest(t(6.0), t(0.0), t(0.0)).item() == 7.0
    assert sf.interpolation_out_of_range(t(3.5), t(0.0), t(0.0)).item()
    assert not sf.interpolation_out_of_range(t(2.9), t(0.0), t(-3.0)).item()


def test_sinc3_float32_keeps_its_digits_near_zero():
    x = torch.tensor([1e-4, 3e-3, 0.1, 0.49, 0.51, 2.0], dtype=torch.float64)
    exact = 3 * (torch.sin(x) / x - torch.cos(x)) / x**2
    exact[0] = 1 - 1e-8 / 10  # the float64 formula itself cancels at 1e-4
    got = physics.sinc3(x.float()).double()
    assert torch.allclose(got, exact, rtol=2e-6, atol=0)
