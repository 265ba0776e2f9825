"""Small crystal structures the tests write themselves (nothing is downloaded).

``synthetic_structure`` places random atoms in a cell with values that PDB and mmCIF both store
exactly (coordinates to 0.001 A, B to 0.01, occupancies to 0.01, U to 0.0001), so that the two files
of one structure read back identically. ``direct_F`` is the reference the FFT path is held to:
|F| summed atom by atom over the symmetry-expanded cell with IT92 form factors.
"""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

ELEMENTS = ("C", "N", "O", "S")


def synthetic_structure(n_atoms: int, spacegroup: str = "P 43 21 2",
                        cell=(79.1, 79.1, 37.9, 90, 90, 90), seed: int = 0,
                        aniso: bool = False) -> gemmi.Structure:
    rng = np.random.default_rng(seed)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*cell)
    st.spacegroup_hm = spacegroup
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for i in range(n_atoms):
        res = gemmi.Residue()
        res.name = "GLY"
        res.seqid = gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name = "CA"
        atom.element = gemmi.Element(ELEMENTS[i % len(ELEMENTS)])
        pos = st.cell.orthogonalize(gemmi.Fractional(*rng.uniform(0.02, 0.98, 3)))
        atom.pos = gemmi.Position(round(pos.x, 3), round(pos.y, 3), round(pos.z, 3))
        atom.b_iso = round(float(rng.uniform(8, 40)), 2)
        atom.occ = round(float(rng.uniform(0.5, 1.0)), 2)
        if aniso:
            u = atom.b_iso / (8 * np.pi ** 2)
            atom.aniso = gemmi.SMat33f(*(round(x, 4) for x in
                                         (1.4 * u, 0.8 * u, u, 0.2 * u, 0.0, -0.1 * u)))
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.setup_cell_images()
    return st


def write_model(st: gemmi.Structure, path: Path) -> Path:
    """PDB for *.pdb, mmCIF otherwise."""
    if path.suffix == ".pdb":
        st.write_pdb(str(path))
    else:
        st.make_mmcif_document().write_file(str(path))
    return path


def direct_F(st: gemmi.Structure, hkl: np.ndarray) -> np.ndarray:
    """|F(hkl)| by direct summation over every atom of the unit cell (isotropic atoms only)."""
    cell = st.cell
    sg = gemmi.SpaceGroup(st.spacegroup_hm)
    hkl = np.asarray(hkl, dtype=np.float64)
    stol2 = np.array([cell.calculate_1_d2([int(x) for x in h]) for h in hkl]) / 4.0
    F = np.zeros(len(hkl), dtype=np.complex128)
    for cra in st[0].all():
        atom = cra.atom
        coef = atom.element.it92
        f0 = sum(a * np.exp(-b * stol2) for a, b in zip(coef.a, coef.b)) + coef.c
        weight = atom.occ * f0 * np.exp(-atom.b_iso * stol2)
        frac = cell.fractionalize(atom.pos)
        for op in sg.operations():
            x = np.array(op.apply_to_xyz([frac.x, frac.y, frac.z]))
            F += weight * np.exp(2j * np.pi * (hkl @ x))
    return np.abs(F)


def write_mtz(path: Path, spacegroup: str, cell, dmin: float, seed: int = 0,
              columns=(("FP", "F"),)) -> gemmi.Mtz:
    """An MTZ with random values in every column for the asymmetric unit to ``dmin``."""
    rng = np.random.default_rng(seed)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(spacegroup)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("synthetic")
    for label, kind in columns:
        mtz.add_column(label, kind)
    hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, dmin)
    values = rng.uniform(5.0, 500.0, (len(hkl), len(columns))).astype(np.float32)
    mtz.set_data(np.column_stack([hkl, values]).astype(np.float32))
    mtz.write_to_file(str(path))
    return mtz
