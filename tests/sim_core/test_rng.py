"""nanoBragg's generators: ran1 against an independent integer model, the derived deviates, and
the orientations built from them."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from sim_core.rng import (DEFAULT_MOSAIC_IDUM, CRandom, SeedCell, gammln, mosaic_rotation_umat,
                          mosaic_umats, random_misset, umat2misset)

IM = 2147483647


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


class ReferenceRan1:
    """ran1 written from its definition: x <- 16807 x mod (2^31 - 1) by plain modular arithmetic
    (no Schrage factorisation), 32-entry Bays-Durham shuffle, 8 warm-up steps, output iy / IM
    rounded to float. One table shared by all seeds, as the C statics are."""

    def __init__(self) -> None:
        self.iy = 0
        self.table = [0] * 32

    def draw(self, seed: list[int]) -> float:
        x = seed[0]
        if x <= 0 or self.iy == 0:
            x = max(1, -x)
            for j in range(39, -1, -1):
                x = (16807 * x) % IM
                if j < 32:
                    self.table[j] = x
            self.iy = self.table[0]
        x = (16807 * x) % IM
        j = self.iy // (2**31 // 32)
        self.iy = self.table[j]
        self.table[j] = x
        seed[0] = x
        return min(f32(self.iy * (1.0 / IM)), f32(1.0 - 1.2e-7))


def test_ran1_first_values_hand_computed():
    # idum = -1: table loaded from 16807^k mod IM; the first output is Numerical Recipes'
    # well-known 0.415999...; iy = 893351816 and the generator is left at 530511967
    rng, cell = CRandom(), SeedCell(-1)
    assert rng.ran1(cell) == f32(893351816 / IM) == pytest.approx(0.41599935, abs=1e-8)
    assert cell.value == 530511967
    assert rng.ran1(cell) == f32(197493099 / IM)
    # -seed 12345 as the noise generator sees it
    rng, cell = CRandom(), SeedCell.from_user_seed(12345)
    assert cell.value == -12345
    assert [rng.ran1(cell) for _ in range(3)] == [f32(1982386332 / IM), f32(715426902 / IM),
                                                   f32(424962143 / IM)]
    assert cell.value == 521081698


@pytest.mark.parametrize("idum", [-1, -777, -12345, -12345678, 0, -(2**31 - 2)])
def test_ran1_matches_reference_model(idum):
    rng, cell = CRandom(), SeedCell(idum)
    ref, rcell = ReferenceRan1(), [idum]
    got = [rng.ran1(cell) for _ in range(500)]
    want = [ref.draw(rcell) for _ in range(500)]
    assert got == want
    assert cell.value == rcell[0]
    assert all(0.0 < v < 1.0 for v in got)


def test_seeds_share_one_table_like_the_c_statics():
    # misset seed, then mosaic seed, then a positive noise seed that continues the shared table
    rng, ref = CRandom(), ReferenceRan1()
    misset, mosaic, noise = SeedCell(-99), SeedCell(DEFAULT_MOSAIC_IDUM), SeedCell(424242)
    rmisset, rmosaic, rnoise = [-99], [DEFAULT_MOSAIC_IDUM], [424242]
    drawn = {}
    for name, cell, rcell, n in (("misset", misset, rmisset, 3), ("mosaic", mosaic, rmosaic, 24),
                                 ("noise", noise, rnoise, 50), ("mosaic2", mosaic, rmosaic, 5)):
        drawn[name] = [rng.ran1(cell) for _ in range(n)]
        assert drawn[name] == [ref.draw(rcell) for _ in range(n)]
    # the positive seed did not reload the table: a fresh -424242 gives another stream
    fresh, fresh_cell = CRandom(), SeedCell(-424242)
    assert drawn["noise"] != [fresh.ran1(fresh_cell) for _ in range(50)]
    assert rng.iy == ref.iy and list(rng.iv) == ref.table


def test_negative_seed_reloads_and_positive_first_seed_becomes_one():
    rng = CRandom()
    other = SeedCell(-5)
    for _ in range(10):
        rng.ran1(other)
    a = SeedCell(-12345)
    b_rng, b = CRandom(), SeedCell(-12345)
    assert [rng.ran1(a) for _ in range(20)] == [b_rng.ran1(b) for _ in range(20)]
    # a positive seed before any table exists is replaced by 1 (the same stream as idum = -1)
    p_rng, p = CRandom(), SeedCell(777)
    o_rng, o = CRandom(), SeedCell(-1)
    assert [p_rng.ran1(p) for _ in range(20)] == [o_rng.ran1(o) for _ in range(20)]


def test_gammln_against_lgamma():
    for x in (0.5, 1.0, 2.0, 3.5, 12.0, 13.0, 100.0, 1234.5, 1.0e5):
        got = gammln(x)
        assert got == f32(got)  # a float result
        assert got == pytest.approx(math.lgamma(x), rel=2e-6, abs=2e-6)


def test_gaussdev_box_muller_and_spare():
    rng, cell = CRandom(), SeedCell(-31)
    ref, rcell = ReferenceRan1(), [-31]
    while True:  # the polar Box-Muller step, in float as the C code keeps it
        v1 = np.float32(2.0 * ref.draw(rcell) - 1.0)
        v2 = np.float32(2.0 * ref.draw(rcell) - 1.0)
        rsq = np.float32(v1 * v1 + v2 * v2)
        if 0 < rsq < 1:
            break
    fac = np.float32(math.sqrt(-2.0 * math.log(float(rsq)) / float(rsq)))
    assert rng.gaussdev(cell) == float(np.float32(v2 * fac))
    seed_after_first = cell.value
    assert rng.gaussdev(cell) == float(np.float32(v1 * fac))  # the spare: no new draws
    assert cell.value == seed_after_first == rcell[0]
    many = np.array([rng.gaussdev(cell) for _ in range(20000)])
    assert abs(many.mean()) < 0.03 and abs(many.std() - 1.0) < 0.03


def test_poidev_direct_method_hand_computed():
    # mean 3.5 < 12: multiply float uniforms until the product is <= float(exp(-3.5))
    rng, cell = CRandom(), SeedCell(-4)
    ref, rcell = ReferenceRan1(), [-4]
    g = np.float32(math.exp(-3.5))
    for _ in range(200):
        n, t = -1, np.float32(1.0)
        while True:
            n += 1
            t = np.float32(t * np.float32(ref.draw(rcell)))
            if not t > g:
                break
        assert rng.poidev(3.5, cell) == n
    assert cell.value == rcell[0]


def test_poidev_large_mean_uses_gaussian_and_rejection_has_right_moments():
    a, ca = CRandom(), SeedCell(-8)
    b, cb = CRandom(), SeedCell(-8)
    assert a.poidev(4.0e6, ca) == float(np.float32(4.0e6 + 2000.0 * b.gaussdev(cb)))
    rng, cell = CRandom(), SeedCell(-77)
    draws = np.array([rng.poidev(50.0, cell) for _ in range(20000)])
    assert np.all(draws == np.floor(draws)) and draws.min() >= 0
    assert draws.mean() == pytest.approx(50.0, abs=0.3)
    assert draws.var() == pytest.approx(50.0, rel=0.05)


def _angle(u: np.ndarray) -> float:
    return math.acos(max(-1.0, min(1.0, (np.trace(u) - 1.0) / 2.0)))


def test_mosaic_rotation_axis_and_angle_from_the_draws():
    spread = math.radians(0.6)
    rng, cell = CRandom(), SeedCell(-777)
    u = mosaic_rotation_umat(spread, rng, cell)
    ref, rcell = ReferenceRan1(), [-777]
    r1, r2, r3 = (2.0 * ref.draw(rcell) - 1.0 for _ in range(3))
    axis = np.array([math.sqrt(1 - r2 * r2) * math.sin(math.pi * r1),
                     math.sqrt(1 - r2 * r2) * math.cos(math.pi * r1), r2])
    angle = spread * (1.0 - r3 * r3) ** (1.0 / 3.0)
    assert np.allclose(u @ axis, axis, atol=1e-15)
    assert _angle(u) == pytest.approx(angle, rel=1e-6)  # float32 angle
    # sense of rotation: a vector perpendicular to the axis turns right-handed about it
    p = np.cross(axis, [1.0, 0.0, 0.0])
    p /= np.linalg.norm(p)
    assert np.dot(np.cross(p, u @ p), axis) == pytest.approx(math.sin(angle), rel=1e-6)


def test_mosaic_domains_case_umats():
    # tests/data/golden/mosaic_domains: -mosaic 0.6 -mosaic_domains 8 -mosaic_seed 777
    spread = 0.6 / (180.0 * 0.31830988618379067154)
    rng, cell = CRandom(), SeedCell.from_user_seed(777)
    umats = mosaic_umats(spread, 8, rng, cell)
    assert umats.shape == (8, 3, 3)
    assert np.array_equal(umats[0], np.eye(3))
    for u in umats:
        assert np.allclose(u @ u.T, np.eye(3), atol=1e-14)
        assert np.linalg.det(u) == pytest.approx(1.0, abs=1e-14)
        assert _angle(u) <= spread * (1 + 1e-6)
    assert len({round(_angle(u), 12) for u in umats[1:]}) == 7
    # the identity domain still consumed its three draws: 24 in all
    ref, rcell = ReferenceRan1(), [-777]
    for _ in range(24):
        ref.draw(rcell)
    assert cell.value == rcell[0]
    # and domain 1 is what a second call after three discarded draws gives
    rng2, cell2 = CRandom(), SeedCell(-777)
    mosaic_rotation_umat(spread, rng2, cell2)
    assert np.array_equal(mosaic_rotation_umat(spread, rng2, cell2), umats[1])


def _rxyz(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry),
                              math.cos(rz), math.sin(rz))
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x  # nanoBragg's rotate(): about x, then y, then z


def test_umat2misset_inverts_xyz_rotation():
    for angles in ((0.1, -0.2, 0.3), (math.radians(10), math.radians(-5), math.radians(20)),
                   (2.5, 1.2, -3.0)):
        got = umat2misset(_rxyz(*angles))
        assert got == pytest.approx(angles, abs=1e-12)
    # gimbal lock: roty = +90 deg
    u = _rxyz(0.0, math.pi / 2, 0.7)
    u[2, 0] = -1.0
    rx, ry, rz = umat2misset(u)
    assert (rx, ry) == (math.pi, math.pi / 2)
    assert rz == math.atan2(u[0, 1], -u[1, 1])
    # a zero row is rebuilt from the other two: (x, 0, z) -> y = z cross x
    rebuilt = _rxyz(0.3, 0.2, 0.1)
    broken = rebuilt.copy()
    broken[1] = 0.0
    assert umat2misset(broken) == pytest.approx((0.3, 0.2, 0.1), abs=1e-12)
    # scaled rows are normalised first
    assert umat2misset(rebuilt * [[2.0], [3.0], [0.5]]) == pytest.approx((0.3, 0.2, 0.1),
                                                                         abs=1e-12)


def test_random_misset_angles_rebuild_the_random_rotation():
    rng, cell = CRandom(), SeedCell.from_user_seed(2024)
    rx, ry, rz = random_misset(rng, cell)
    rng2, cell2 = CRandom(), SeedCell(-2024)
    u = mosaic_rotation_umat(90.0, rng2, cell2)
    assert np.allclose(_rxyz(rx, ry, rz), u, atol=1e-12)
    assert cell.value == cell2.value
    # the angle is 90 *radians* times the cap factor (nanoBragg passes 90.0 as an angle)
    ref, rcell = ReferenceRan1(), [-2024]
    r3 = [2.0 * ref.draw(rcell) - 1.0 for _ in range(3)][2]
    expected = math.fmod(90.0 * (1 - r3 * r3) ** (1 / 3), 2 * math.pi)
    expected = min(expected, 2 * math.pi - expected)
    assert _angle(u) == pytest.approx(expected, abs=1e-4)


def test_mosaic_angle_uses_libm_powf():
    ctypes = pytest.importorskip("ctypes")
    import ctypes.util

    name = ctypes.util.find_library("m")
    if name is None:
        pytest.skip("no C math library to compare with")
    powf = ctypes.CDLL(name).powf
    powf.restype, powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    spread = f32(math.radians(0.6))
    rng, cell = CRandom(), SeedCell(-777)
    ref, rcell = ReferenceRan1(), [-777]
    for _ in range(300):
        u = mosaic_rotation_umat(spread, rng, cell)
        r3 = [2.0 * ref.draw(rcell) - 1.0 for _ in range(3)][2]
        want = f32(spread * powf(f32(1.0 - r3 * r3), f32(1.0 / 3.0)))
        assert _angle(u) == pytest.approx(want, rel=1e-9, abs=1e-15)
