"""Structure factors from models (PDB, mmCIF) and MTZ files: |F| against direct summation, P1
expansion, the cell rules, the reflections the detector reaches, and located errors."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from sim_core.config import load_config
from sim_core.errors import ConfigError, InputFileError
from sim_core.experiment import build_experiment, local_files
from sim_core.fcalc import expand_to_p1, model_table, reciprocal_metric
from sim_core.io.model_scan import scan_model
from sim_core.io.structure import read_model, read_mtz
from sim_core.simulate import simulate
from sim_core.structure_input import TABLES
from tests.structures import direct_F, synthetic_structure, write_model, write_mtz

CELL = (40.0, 40.0, 30.0, 90.0, 90.0, 90.0)

#: a 24 x 24 detector whose corners reach about 2 A at 1 A (mosflm's beam centre is half a pixel
#: off the given one: the beam hits the middle)
TINY = {"crystal": {"Na": 5, "Nb": 5, "Nc": 5, "misset_deg": [10, 20, 30]},
        "beam": {"wavelength_A": 1.0},
        "detector": {"distance_mm": 60, "fast_pixels": 24, "slow_pixels": 24, "pixel_size_mm": 2,
                     "beam_x_mm": 23, "beam_y_mm": 23},
        "sampling": {"oversample": 1}}


def _config(cell=None, **sf):
    cfg = {k: dict(v) for k, v in TINY.items()}
    cfg["structure_factors"] = sf
    if cell:
        cfg["crystal"]["cell"] = dict(zip(("a_A", "b_A", "c_A", "alpha_deg", "beta_deg",
                                           "gamma_deg"), cell))
    return load_config(cfg)


def _render(folder, cell=None, **sf):
    return simulate(_config(cell, **sf), local_files(folder))


def _all_hkl(grid):
    h, k, l = np.meshgrid(np.arange(grid.h_min, grid.h_max + 1),
                          np.arange(grid.k_min, grid.k_max + 1),
                          np.arange(grid.l_min, grid.l_max + 1), indexing="ij")
    return np.stack((h, k, l), -1).reshape(-1, 3), grid.F.reshape(-1)


def _rms_rel(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    st = synthetic_structure(120, "P 43 21 2", CELL, seed=3)
    return st, write_model(st, d / "m.pdb"), write_model(st, d / "m.cif")


def test_model_F_agrees_with_direct_summation(model_files):
    st, pdb, _ = model_files
    dmin = 2.5
    grid = model_table(read_model(pdb), CELL, 1 / dmin)
    hkl, F = _all_hkl(grid)
    s2 = np.einsum("ni,ij,nj->n", hkl, reciprocal_metric(CELL), hkl)
    inside = np.flatnonzero((s2 <= 1 / dmin ** 2) & (s2 > 0))
    outside = np.flatnonzero(s2 > 1 / dmin ** 2 * 1.0001)
    assert grid.count == inside.size and F[np.all(hkl == 0, axis=1)] == 0  # F(000): default_F
    pick = np.random.default_rng(0).choice(inside, 600, replace=False)
    assert _rms_rel(F[pick], direct_F(st, hkl[pick])) <= 1e-3
    assert np.all(F[outside] == 0.0)  # default_F beyond dmin


def test_anisotropic_atoms_are_honoured(tmp_path):
    st = synthetic_structure(40, "P 21 21 21", (30, 35, 25, 90, 90, 90), seed=5, aniso=True)
    model = read_model(write_model(st, tmp_path / "aniso.pdb"))
    assert model.anisotropic == 40
    grid = model_table(model, model.cell, 1 / 3.0)
    hkl, F = _all_hkl(grid)
    pick = [i for i in np.flatnonzero(F > 0)[::7]][:150]
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    ref = np.array([abs(calc.calculate_sf_from_model(st[0], [int(x) for x in hkl[i]]))
                    for i in pick])
    assert _rms_rel(F[pick], ref) <= 1e-3
    iso = np.array([abs(calc.calculate_sf_from_model(_isotropic(st)[0], [int(x) for x in hkl[i]]))
                    for i in pick])
    assert _rms_rel(iso, ref) > 1e-2  # the anisotropy changes F far beyond the tolerance


def _isotropic(st):
    st = st.clone()
    for cra in st[0].all():
        cra.atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
    return st


def test_pdb_and_mmcif_of_one_model_give_the_same_image(model_files):
    _, pdb, cif = model_files
    a = _render(pdb.parent, model_file=pdb.name)
    b = _render(pdb.parent, model_file=cif.name)
    assert a.image.max() > 0 and np.array_equal(a.image, b.image)
    assert f"unit cell from {pdb}: 40 40 30 90 90 90 (P 43 21 2)" in a.experiment.notes


@pytest.mark.parametrize("sg", ["P 43 21 2", "C 1 2 1", "P 61 2 2"])
def test_p1_expansion_matches_gemmi(tmp_path, sg):
    cell = (30, 30, 40, 90, 90, 120) if sg.startswith("P 6") else (30, 35, 40, 90, 100, 90) \
        if sg.startswith("C") else CELL
    mtz = write_mtz(tmp_path / "x.mtz", sg, cell, 4.0)
    hkl, F = expand_to_p1(read_mtz(tmp_path / "x.mtz"))
    ours = {tuple(h): f for h, f in zip(hkl.tolist(), F.tolist())}
    mtz.expand_to_p1()
    data = np.array(mtz, copy=False)
    ref = {}
    for row in data:
        h = tuple(int(x) for x in row[:3])
        ref[h] = ref[tuple(-x for x in h)] = float(row[3])
    assert ours == ref


def test_mtz_in_p43212_renders_like_the_equivalent_p1_hkl_file(tmp_path):
    mtz = write_mtz(tmp_path / "data.mtz", "P 43 21 2", CELL, 1.8, columns=(("FP", "F"),
                                                                          ("SIGFP", "Q")))
    mtz.expand_to_p1()
    lines = []
    for h, k, l, f, _ in np.array(mtz, copy=False).tolist():
        for s in (1, -1):
            lines.append(f"{int(s * h)} {int(s * k)} {int(s * l)} {float(f)!r}")
    (tmp_path / "P1.hkl").write_text("\n".join(lines) + "\n")
    for extra in ({}, {"default_F": 3.0}):
        a = _render(tmp_path, mtz_file="data.mtz", interpolate="off", **extra)
        b = _render(tmp_path, CELL, hkl_file="P1.hkl", interpolate="off", **extra)
        assert a.image.max() > 0 and np.array_equal(a.image, b.image)
    assert any("data from column FP, the first amplitude column" in n for n in a.experiment.notes)


def test_intensity_column_is_converted_with_a_warning(tmp_path):
    write_mtz(tmp_path / "i.mtz", "P 21 21 21", (30, 35, 40, 90, 90, 90), 3.0,
              columns=(("IMEAN", "J"), ("SIGIMEAN", "Q")))
    m = read_mtz(tmp_path / "i.mtz", "IMEAN")
    raw = np.array(gemmi.read_mtz_file(str(tmp_path / "i.mtz")), copy=False)[:, 3]
    assert np.allclose(m.F, np.sqrt(raw)) and m.column_type == "J"
    assert "F = sqrt(max(I, 0))" in m.warnings[0]
    with pytest.raises(InputFileError, match=r"no amplitude column \(type F\); the file has "
                                             r"IMEAN \(J\), SIGIMEAN \(Q\)"):
        read_mtz(tmp_path / "i.mtz")
    with pytest.raises(InputFileError, match="column SIGIMEAN holds standard deviation") as exc:
        read_mtz(tmp_path / "i.mtz", "SIGIMEAN")
    assert exc.value.column == "SIGIMEAN"
    with pytest.raises(InputFileError, match="no column 'FP'; the file has IMEAN"):
        read_mtz(tmp_path / "i.mtz", "FP")


# -- the unit cell ---------------------------------------------------------------------------------------
def test_given_cell_within_half_a_percent_is_used_beyond_is_an_error(model_files):
    _, pdb, _ = model_files
    base = {k: dict(v) for k, v in TINY.items()}
    base["structure_factors"] = {"model_file": pdb.name}
    near = dict(base, crystal={**base["crystal"], "cell": {"a_A": 40.1, "b_A": 40, "c_A": 30}})
    exp = build_experiment(load_config(near), local_files(pdb.parent))
    assert exp.crystal.cell_report["cell_A_deg"][0] == pytest.approx(40.1)
    far = dict(base, crystal={**base["crystal"], "cell": {"a_A": 40, "b_A": 40, "c_A": 30.3}})
    with pytest.raises(ConfigError) as exc:
        build_experiment(load_config(far), local_files(pdb.parent))
    msg = str(exc.value)
    assert "crystal.cell (40 40 30.3 90 90 90)" in msg and "m.pdb (40 40 30 90 90 90)" in msg
    assert "by 1 % in c" in msg and exc.value.field == "crystal.cell"


def test_one_source_of_structure_factors():
    with pytest.raises(ConfigError, match="one of hkl_file, model_file and mtz_file, not "
                                          "hkl_file and model_file"):
        load_config({"structure_factors": {"hkl_file": "a.hkl", "model_file": "m.pdb"}})
    with pytest.raises(ConfigError, match="mtz_column needs mtz_file"):
        load_config({"crystal": {"cell": {"a_A": 9, "b_A": 9, "c_A": 9}},
                     "structure_factors": {"model_file": "m.pdb", "mtz_column": "FP"}})
    cfg = load_config({"structure_factors": {"model_file": "m.pdb"}})  # the cell comes later
    assert cfg.crystal.cell is None
    assert cfg.file_refs() == {"structure_factors.model_file": "m.pdb"}


# -- which reflections -------------------------------------------------------------------------------------
def test_table_covers_what_the_detector_reaches(model_files):
    _, pdb, _ = model_files
    exp = build_experiment(_config(model_file=pdb.name), local_files(pdb.parent))
    # the corner of the detector: 24 mm off the beam in both directions, 60 mm away
    two_theta = math.atan(math.hypot(24, 24) / 60)
    q_corner = 2 * math.sin(two_theta / 2) / 1.0
    grid = exp.hkl_grid  # the nearest node of any point is within half a cell
    assert grid.h_max >= q_corner * 40 + 0.5 and grid.l_max >= q_corner * 30 + 0.5
    note = next(n for n in exp.notes if n.startswith("structure factors"))
    assert f"the detector reaches {1 / q_corner:.3g} A" in note
    interpolating = build_experiment(_config(model_file=pdb.name, interpolate="on"),
                                     local_files(pdb.parent))
    grid = interpolating.hkl_grid  # tricubic needs two nodes beyond the point on every axis
    assert grid.h_max >= q_corner * 40 + 2 and grid.l_max >= q_corner * 30 + 2
    limited = build_experiment(_config(model_file=pdb.name, dmin_F_A=5.0),
                               local_files(pdb.parent))
    g = limited.hkl_grid
    assert (g.h_max, g.k_max, g.l_max) == (8, 8, 6)
    hkl, F = _all_hkl(g)
    s2 = np.einsum("ni,ij,nj->n", hkl, reciprocal_metric(CELL), hkl)
    assert np.all(F[s2 > 1 / 25 + 1e-9] == 0) and np.all(F[(s2 <= 1 / 25) & (s2 > 0)] > 0)


@pytest.mark.parametrize("interpolate", ["off", "on"])
def test_the_reached_table_renders_like_a_much_larger_one(model_files, interpolate):
    _, pdb, _ = model_files

    def render(**sf):
        # turned 45 degrees about the beam, c* points at a corner of the detector: the corner
        # pixels reach the edge of the table along l
        cfg = _config(model_file=pdb.name, interpolate=interpolate, **sf)
        cfg.crystal.misset_deg = (45.0, 0.0, 0.0)
        return simulate(cfg, local_files(pdb.parent))

    reached, larger = render(), render(dmin_F_A=1.0)
    assert reached.experiment.hkl_grid.count < 0.6 * larger.experiment.hkl_grid.count
    # no point of the render left the table (the tricubic fallback would have said so)
    assert reached.stats.sequence.interp_trigger == larger.stats.sequence.interp_trigger
    # the tables differ only by the FFT's rounding (their grids differ): no reflection is missing
    np.testing.assert_allclose(reached.image, larger.image, rtol=2e-4,
                               atol=2e-4 * float(larger.image.max()))


def test_tables_are_computed_once_per_file_cell_and_resolution(model_files):
    _, pdb, _ = model_files
    TABLES.clear()
    cfg = _config(model_file=pdb.name)
    first = build_experiment(cfg, local_files(pdb.parent))
    again = build_experiment(cfg.model_copy(update={"noise": cfg.noise.model_copy(
        update={"seed": 7})}), local_files(pdb.parent))
    assert (TABLES.misses, TABLES.hits) == (1, 1)
    assert again.hkl_grid is first.hkl_grid
    assert any("reused from this process's cache" in n for n in again.notes)
    unchecked = build_experiment(cfg, local_files(pdb.parent), compute_F=False)
    assert unchecked.hkl_grid is None and (TABLES.misses, TABLES.hits) == (1, 1)


# -- bad files ----------------------------------------------------------------------------------------------
def _pdb_text(model_files):
    return model_files[1].read_text()


@pytest.mark.parametrize("edit, message, line", [
    (lambda t: t[:300], r"line 4: the file ends inside this atom record \(57 of at least 66 "
                        r"columns\): truncated\?", 4),
    (lambda t: t.replace(t.split("\n")[3], t.split("\n")[3][:20]),
     r"line 4: x in columns 31-38 is nothing \(the line is cut short\)", 4),
    (lambda t: "\n".join(x for x in t.split("\n") if not x.startswith("CRYST1")),
     r"no unit cell \(no CRYST1 record\)", None),
    (lambda t: t.replace("P 43 21 2 ", "P 43 21 7 "), r"line 1: unknown space group 'P 43 21 7'", 1),
    (lambda t: t.replace("  1.00 ", "  one! ", 1) if "  1.00 " in t else
     t.replace(t.split("\n")[2][54:60], "  one!", 1), r"line 3: occupancy in columns 55-60", 3),
    (lambda t: "\n".join(x for x in t.split("\n") if not x.startswith("ATOM")),
     r"no atoms \(ATOM or HETATM records", None),
])
def test_bad_pdb_files_say_what_is_wrong(tmp_path, model_files, edit, message, line):
    path = tmp_path / "bad.pdb"
    path.write_text(edit(_pdb_text(model_files)))
    with pytest.raises(InputFileError, match=message) as exc:
        read_model(path)
    assert exc.value.line == line and str(path) in str(exc.value)
    # the upload's summary, read a line at a time, says the same
    with pytest.raises(InputFileError) as scanned:
        scan_model(path)
    assert (str(scanned.value), scanned.value.line) == (str(exc.value), line)


def test_bad_mmcif_files_say_what_is_wrong(tmp_path, model_files):
    text = model_files[2].read_text()
    path = tmp_path / "bad.cif"
    path.write_text(text[:text.rindex("ATOM")] + "ATOM 121 C CA . GLY")
    with pytest.raises(InputFileError, match=r"bad.cif line \d+: .*") as exc:
        read_model(path)
    assert exc.value.line is not None and exc.value.line > 10
    path.write_text(text.replace("'P 43 21 2'", "'P 43 21 7'"))
    with pytest.raises(InputFileError, match="unknown space group 'P 43 21 7'") as exc:
        read_model(path)
    assert "_symmetry.space_group_name_H-M" in path.read_text().split("\n")[exc.value.line - 1]


def test_bad_mtz_files_say_what_is_wrong(tmp_path):
    write_mtz(tmp_path / "ok.mtz", "P 43 21 2", CELL, 3.0)
    data = (tmp_path / "ok.mtz").read_bytes()
    (tmp_path / "cut.mtz").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputFileError, match=r"cut.mtz: truncated MTZ file: \d+ bytes, but its "
                                             r"header should start at byte \d+"):
        read_mtz(tmp_path / "cut.mtz")
    (tmp_path / "sg.mtz").write_bytes(data.replace(b"'P 43 21 2'", b"'Q 99 99 9'"))
    with pytest.raises(InputFileError, match=r"unknown space group 'Q 99 99 9' \(SYMINF record\)"):
        read_mtz(tmp_path / "sg.mtz")
    (tmp_path / "text.mtz").write_text("h k l F\n1 2 3 4\n")
    with pytest.raises(InputFileError, match="text.mtz: not a readable MTZ file"):
        read_mtz(tmp_path / "text.mtz")


def test_errors_in_a_render_name_the_config_field(tmp_path, model_files):
    (tmp_path / "cut.pdb").write_text(_pdb_text(model_files)[:300])
    with pytest.raises(InputFileError) as exc:
        _render(tmp_path, model_file="cut.pdb")
    assert exc.value.field == "structure_factors.model_file"
    write_mtz(tmp_path / "f.mtz", "P 21 21 21", (30, 35, 40, 90, 90, 90), 3.0)
    with pytest.raises(InputFileError) as exc:
        _render(tmp_path, mtz_file="f.mtz", mtz_column="FOBS")
    assert exc.value.field == "structure_factors.mtz_column"


@pytest.mark.parametrize("pointer", [2**27, 2**29, 2**31 - 1, -1])
def test_an_mtz_header_pointer_beyond_the_file_is_refused_before_anything_is_allocated(
        tmp_path, pointer):
    """4 KiB claiming a header at up to 8 GiB (or a 64-bit pointer): gemmi would allocate the
    space before it; the check reads 100 bytes."""
    p = tmp_path / "huge.mtz"
    head = b"MTZ " + np.array([pointer], "<i4").tobytes() + b"\x44\x41\x00\x00"
    head += np.array([2**40], "<i8").tobytes()
    p.write_bytes(head.ljust(4096, b"\0"))
    at = 4 * (2**40 - 1) if pointer == -1 else 4 * (pointer - 1)
    with pytest.raises(InputFileError, match=rf"huge.mtz: truncated MTZ file: 4096 bytes, but its "
                                             rf"header should start at byte {at}$"):
        read_mtz(p)


def test_mtz_counts_beyond_the_file_are_refused_before_anything_is_allocated(tmp_path):
    write_mtz(tmp_path / "ok.mtz", "P 43 21 2", CELL, 3.0)
    data = (tmp_path / "ok.mtz").read_bytes()
    start = data.index(b"NCOL")
    ncol, nref, nbatch = (int(x) for x in data[start + 4:start + 80].split())
    # big-endian files are read with the stamp's byte order: here the stamp says little-endian
    assert data[9] & 0xF0 == 0x40
    for record, what in ((f"NCOL {ncol:8d} 2000000000 0", r"2,000,000,000 reflections"),
                         (f"NCOL {ncol:8d} {nref} 50000000", r"50,000,000 batches")):
        bad = data[:start] + record.encode().ljust(80) + data[start + 80:]
        (tmp_path / "bad.mtz").write_bytes(bad)
        with pytest.raises(InputFileError, match=rf"bad.mtz: corrupt MTZ file: its NCOL record "
                                                 rf"states .*{what}"):
            read_mtz(tmp_path / "bad.mtz")
    # the file as written passes the check and reads
    assert read_mtz(tmp_path / "ok.mtz").reflections == nref


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
@pytest.mark.parametrize("case", ["plain", "aniso", "ncs", "two models"])
def test_the_streamed_model_summary_is_gemmis(tmp_path, suffix, case):
    """The summary read a line at a time equals the one from gemmi's whole reading: cell, space
    group, the first model's atoms with their NCS copies, anisotropic atoms."""
    st = synthetic_structure(30, "P 43 21 2", CELL, seed=2, aniso=case == "aniso")
    if case == "ncs":
        st.ncs.append(gemmi.NcsOp(gemmi.Transform(), "1", True))
        shift = gemmi.Transform()
        shift.vec.fromlist([5, 0, 0])
        st.ncs.append(gemmi.NcsOp(shift, "2", False))
    if case == "two models":
        st.add_model(st[0])
        st.renumber_models()
    path = write_model(st, tmp_path / f"m{suffix}")
    summary = scan_model(path)
    assert summary == read_model(path).summary()
    assert summary["atoms"] == (60 if case == "ncs" else 30)


def test_bad_mmcif_summaries_name_the_line(tmp_path, model_files):
    text = model_files[2].read_text()
    path = tmp_path / "bad.cif"
    path.write_text(text[:text.rindex("ATOM")] + "ATOM 121 C CA . GLY")
    with pytest.raises(InputFileError, match=r"bad.cif line \d+: the loop of _atom_site.group_PDB "
                                             r"\(line \d+\) ends inside a row: 6 of 19 values"):
        scan_model(path)
    path.write_text(text.replace("'P 43 21 2'", "'P 43 21 7'"))
    with pytest.raises(InputFileError, match="unknown space group 'P 43 21 7'") as exc:
        scan_model(path)
    assert "_symmetry.space_group_name_H-M" in path.read_text().split("\n")[exc.value.line - 1]
    path.write_text("\n".join(x for x in text.split("\n") if not x.startswith("_cell.length")))
    with pytest.raises(InputFileError, match=r"no unit cell \(no _cell.length_a/b/c items\)"):
        scan_model(path)
