"""How long structure factors from a model take: a 1,000-atom model in P4(3)2(1)2 to 2 A.

    python -m bench.structure                 # time reading the model and computing its P1 table
    python -m bench.structure --write m.pdb   # also keep the model (PDB, or mmCIF for *.cif)

The model is random atoms (C, N, O, S) in a lysozyme-like cell (79.1 79.1 37.9 A); the table holds
every P1 reflection to 2 A. Also timed: the direct sum over the symmetry-expanded atoms for a sample
of reflections, and the RMS difference of the two (printed relative to the RMS |F|); and a whole
``build_experiment`` for a 10 x 10 x 10 cell crystal on a 1024 x 1024 detector (the detector's
reach, then the table).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim_core.fcalc import model_table, reciprocal_metric  # noqa: E402
from sim_core.io.structure import read_model  # noqa: E402
from tests.structures import direct_F, synthetic_structure, write_model  # noqa: E402

CELL = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--atoms", type=int, default=1000)
    ap.add_argument("--dmin", type=float, default=2.0, help="resolution of the table (A)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported)")
    ap.add_argument("--sample", type=int, default=300, help="reflections checked by direct sum")
    ap.add_argument("--write", type=Path, default=None, help="keep the model in this file")
    args = ap.parse_args(argv)

    st = synthetic_structure(args.atoms, "P 43 21 2", CELL, seed=1)
    path = args.write or Path(tempfile.mkdtemp()) / "model.pdb"
    write_model(st, path)
    best_read = best_table = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model = read_model(path)
        t1 = time.perf_counter()
        grid = model_table(model, model.cell, 1.0 / args.dmin)
        t2 = time.perf_counter()
        best_read, best_table = min(best_read, t1 - t0), min(best_table, t2 - t1)
    print(f"model: {model.atoms} atoms in {model.spacegroup} ({len(st.find_spacegroup().operations())}"
          f" operations), cell {' '.join(f'{x:g}' for x in CELL)}")
    print(f"read {best_read:.3f} s; P1 table to {args.dmin:g} A: {grid.count} reflections in "
          f"{best_table:.3f} s (best of {args.repeat})")

    h, k, l = np.meshgrid(*(np.arange(lo, hi + 1) for lo, hi in
                            ((grid.h_min, grid.h_max), (grid.k_min, grid.k_max),
                             (grid.l_min, grid.l_max))), indexing="ij")
    hkl = np.stack((h, k, l), -1).reshape(-1, 3)
    s2 = np.einsum("ni,ij,nj->n", hkl, reciprocal_metric(CELL), hkl)
    inside = np.flatnonzero((s2 > 0) & (s2 <= 1 / args.dmin ** 2))
    pick = np.random.default_rng(0).choice(inside, min(args.sample, inside.size), replace=False)
    t0 = time.perf_counter()
    ref = direct_F(st, hkl[pick])
    t_direct = time.perf_counter() - t0
    F = grid.F.reshape(-1)[pick]
    rms = float(np.sqrt(np.mean((F - ref) ** 2) / np.mean(ref ** 2)))
    print(f"direct sum of {pick.size} reflections: {t_direct:.3f} s; RMS difference "
          f"{100 * rms:.4f} % of the RMS |F|")

    # the whole experiment: the detector's reach, then the table (not cached: a fresh file each time)
    from sim_core.config import load_config
    from sim_core.experiment import build_experiment, local_files
    from sim_core.structure_input import TABLES

    config = load_config({"crystal": {"Na": 10, "Nb": 10, "Nc": 10},
                          "structure_factors": {"model_file": str(path)},
                          "beam": {"wavelength_A": 1.0},
                          "detector": {"distance_mm": 100, "fast_pixels": 1024,
                                       "slow_pixels": 1024, "pixel_size_mm": 0.1}})
    TABLES.clear()
    t0 = time.perf_counter()
    exp = build_experiment(config, local_files("."))
    t_exp = time.perf_counter() - t0
    note = next(n for n in exp.notes if n.startswith("structure factors"))
    print(f"experiment, 1024 x 1024 detector at 100 mm, 1 A, N = 10: {t_exp:.3f} s\n  {note}")
    if args.write:
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
