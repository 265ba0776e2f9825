"""P1 structure-factor tables from a model (|Fcalc|) or an MTZ file (expanded to P1).

Both produce the same :class:`~sim_core.io.hkl.HklGrid` that an ``h k l F`` file gives: every
reflection with ``1/d <= q_cut`` that the source provides, on the smallest box that holds them, the
rest of the box filled with ``default_F``.

Models: the electron density of all atoms (IT92 form factors, isotropic or anisotropic B, occupancy;
the asymmetric unit expanded by the space group) is put on a grid by gemmi's DensityCalculatorX and
Fourier transformed. The grid oversamples the highest resolution 1.5 times and every atom is blurred
by the same extra B (refmac's choice), which is divided out afterwards; |F| then agrees with direct
summation to about 3e-5 RMS. No bulk solvent is modelled. F(000), which would fall on the direct
beam (not modelled by nanoBragg), keeps ``default_F`` as in an HKL file made by CCP4's sfall.

MTZ: every reflection of the column is copied to all its symmetry mates h·R and their Friedel
mates -h·R (amplitudes are the same; only phases would change).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputFileError
from .io.hkl import HklGrid, _grid_shape
from .io.structure import Cell, ModelFile, MtzFile

#: oversampling of the density grid relative to the highest resolution (gemmi's ``rate``)
GRID_RATE = 1.5


def reciprocal_metric(cell: Cell) -> np.ndarray:
    """G*: 1/d^2 = h G* h^T for cell lengths in Angstrom and angles in degrees."""
    a, b, c = cell[:3]
    ca, cb, cg = (math.cos(math.radians(x)) for x in cell[3:])
    G = np.array([[a * a, a * b * cg, a * c * cb],
                  [a * b * cg, b * b, b * c * ca],
                  [a * c * cb, b * c * ca, c * c]])
    return np.linalg.inv(G)


def check_box(cell: Cell, q_cut: float, name: str) -> np.ndarray:
    """The largest |h|, |k|, |l| with 1/d <= q_cut; an error when that box is too large."""
    # the largest |h| with 1/d <= q_cut is q_cut * |a| (h = a . s)
    lim = np.array([int(math.floor(q_cut * x + 1e-9)) for x in cell[:3]])
    try:
        _grid_shape(name, -lim, lim)
    except InputFileError as exc:
        raise InputFileError(f"{exc.message} (structure factors to {1 / q_cut:.3g} A); give a "
                             "lower resolution with dmin_F_A (-dmin_F)", path=name) from None
    return lim


def _within(cell: Cell, q_cut: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, 3) of every reflection with 0 < 1/d <= q_cut, and their 1/d^2."""
    Gs = reciprocal_metric(cell)
    lim = check_box(cell, q_cut, name)
    k, l = np.meshgrid(np.arange(-lim[1], lim[1] + 1), np.arange(-lim[2], lim[2] + 1),
                       indexing="ij")
    kl = np.stack((k.ravel(), l.ravel()), -1)
    kl_s2 = np.einsum("ni,ij,nj->n", kl, Gs[1:, 1:], kl)
    parts, s2s = [], []
    for h in range(-lim[0], lim[0] + 1):  # one slab at a time keeps the memory to the sphere
        s2 = h * h * Gs[0, 0] + 2 * h * (kl @ Gs[0, 1:]) + kl_s2
        keep = (s2 <= q_cut * q_cut * (1 + 1e-12)) & (s2 > 0)
        parts.append(np.column_stack((np.full(int(keep.sum()), h), kl[keep])))
        s2s.append(s2[keep])
    return np.concatenate(parts), np.concatenate(s2s)


def _grid(hkl: np.ndarray, F: np.ndarray, default_F: float, name: str) -> HklGrid:
    """The smallest box holding ``hkl``, filled with default_F, then with ``F`` (last one wins)."""
    if len(hkl) == 0:
        raise InputFileError(f"{name}: no reflection within the resolution the render needs",
                             path=name)
    lo, hi = hkl.min(axis=0), hkl.max(axis=0)
    shape = _grid_shape(name, lo, hi)
    grid = np.full(shape, float(default_F), dtype=np.float64)
    grid[tuple((hkl - lo).T)] = F
    return HklGrid(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]), grid,
                   count=int(len(hkl)))


def _in_cell(model: ModelFile, cell: Cell):
    """The model's structure, with its atoms moved into ``cell`` at the same fractional positions."""
    import gemmi

    st = model.structure
    if np.allclose(cell, model.cell, rtol=0, atol=1e-9):
        return st
    st = st.clone()
    old = st.cell
    new = gemmi.UnitCell(*cell)
    for cra in st[0].all():
        cra.atom.pos = new.orthogonalize(old.fractionalize(cra.atom.pos))
    st.cell = new
    st.setup_cell_images()
    return st


def model_table(model: ModelFile, cell: Cell, q_cut: float, default_F: float = 0.0) -> HklGrid:
    """|F| of every P1 reflection with 1/d <= q_cut (1/Angstrom), from the model's atoms."""
    import gemmi

    hkl, s2 = _within(cell, q_cut, model.path)
    st = _in_cell(model, cell)
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 1.0 / q_cut
    dc.rate = GRID_RATE
    dc.set_refmac_compatible_blur(st[0])
    dc.set_grid_cell_and_spacegroup(st)
    dc.put_model_density_on_grid(st[0])
    coefs = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
    data = np.array(coefs, copy=False)  # (nu, nv, nw // 2 + 1), l >= 0 only
    nu, nv = data.shape[0], data.shape[1]
    # F(-h) is the complex conjugate of F(h): look up l < 0 at -h
    flip = np.where(hkl[:, 2:3] < 0, -1, 1)
    idx = hkl * flip
    if np.any(2 * np.abs(idx[:, 0]) >= nu) or np.any(2 * np.abs(idx[:, 1]) >= nv) \
            or np.any(idx[:, 2] >= data.shape[2]):
        raise RuntimeError("the density grid is too coarse for the reflections asked for")
    F = np.abs(data[idx[:, 0] % nu, idx[:, 1] % nv, idx[:, 2]]).astype(np.float64)
    F *= np.exp(dc.blur * 0.25 * s2)
    return _grid(hkl, F, default_F, model.path)


def expand_to_p1(mtz: MtzFile) -> tuple[np.ndarray, np.ndarray]:
    """Every symmetry mate h·R of the file's reflections, and the Friedel mates of those."""
    ops = list(mtz.operations.sym_ops)
    rots = np.array([op.rot for op in ops], dtype=np.int64)  # (n_ops, 3, 3), times op.DEN
    den = ops[0].DEN
    mates = np.einsum("ni,oij->onj", mtz.hkl, rots) // den  # (n_ops, n, 3)
    hkl = np.concatenate([mates.reshape(-1, 3), -mates.reshape(-1, 3)])
    F = np.tile(mtz.F, 2 * len(ops))
    return hkl, F


def mtz_table(mtz: MtzFile, cell: Cell, q_cut: float, default_F: float = 0.0) -> HklGrid:
    """The MTZ amplitudes expanded to P1, for the reflections with 1/d <= q_cut in ``cell``."""
    check_box(cell, q_cut, mtz.path)
    hkl, F = expand_to_p1(mtz)
    s2 = np.einsum("ni,ij,nj->n", hkl, reciprocal_metric(cell), hkl)
    keep = s2 <= q_cut * q_cut * (1 + 1e-12)
    return _grid(hkl[keep], F[keep], default_F, mtz.path)


__all__ = ["model_table", "mtz_table", "check_box", "expand_to_p1", "reciprocal_metric", "GRID_RATE"]
