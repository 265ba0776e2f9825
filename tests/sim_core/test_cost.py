"""sim_core.cost: the arithmetic price of a job equals what the experiment builds, for every golden
case; it needs no torch and stays arithmetic for absurd configs; the upload summaries; the grid
cache's byte bound."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from sim_core.config import load_config, set_field
from sim_core.cost import estimate
from sim_core.errors import ConfigError, InputFileError
from sim_core.inputs import BY_FIELD, summarize
from tests.golden import case_names, load_case


@pytest.mark.parametrize("name", case_names())
def test_estimate_equals_the_experiment(name):
    from sim_core.experiment import build_experiment, local_files
    from sim_core.nanobragg_args import parse_nanobragg_args

    case = load_case(name)
    parsed = parse_nanobragg_args(case.our_args, base_dir=case.folder)
    cfg = parsed.config
    for path, ref in parsed.input_files.items():
        set_field(cfg, path, str(case.folder / ref))
    summaries = {ref: summarize(ref, BY_FIELD[path].kind) for path, ref in cfg.file_refs().items()}
    cost = estimate(cfg, summaries)
    exp = build_experiment(cfg, local_files(case.folder))
    assert cost.shape == tuple(exp.shape)
    assert cost.oversample == exp.oversample
    assert cost.sources == exp.beam.sources.count
    if cost.exact:
        assert cost.evaluations == exp.evaluations
    else:
        assert cost.evaluations >= exp.evaluations


def test_absurd_configs_are_priced_not_built():
    cfg = load_config({
        "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "mosaic_spread_deg": 1,
                    "mosaic_domains": 10**5},
        "scan": {"osc_range_deg": 1, "phi_steps": 10**5},
        "structure_factors": {"default_F": 1},
        "beam": {"hdiv_range_mrad": 1, "vdiv_range_mrad": 1, "hdiv_steps": 1000,
                 "vdiv_steps": 1000},
        "detector": {"fast_pixels": 4096, "slow_pixels": 4096}})
    cost = estimate(cfg)
    assert cost.phi_steps == 10**5 and cost.mosaic_domains == 10**5
    assert cost.evaluations == 4096 * 4096 * cost.subpixels * cost.sources * 10**10
    assert 0.80 < cost.sources / 10**6 < 0.87  # the elliptical trim (u² + v² <= 1.1)
    # a range over a step that is no number of steps is refused by the config itself
    with pytest.raises(ConfigError) as err:
        load_config({"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}},
                     "scan": {"osc_range_deg": 3600, "phi_step_deg": 1e-300},
                     "structure_factors": {"default_F": 1}})
    assert err.value.field == "scan.phi_step_deg"


def test_the_api_side_imports_no_torch():
    code = ("import sys, app.main, app.submit, app.limits, sim_core.cost, sim_core.io.summary, "
            "sim_core.nanobragg_args; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hkl_summary_streams_and_checks(tmp_path):
    p = tmp_path / "far.hkl"
    p.write_text("0 0 0 1\n999 999 199 1\n")  # 22 bytes, a grid of 2e8 points
    s = summarize(p, "hkl")
    assert s["grid_points"] == 1000 * 1000 * 200 and s["count"] == 2
    assert s["h"] == [0, 999] and s["l"] == [0, 199]
    p.write_text("1 2 3 4\n1 2 3 1e400\n")
    with pytest.raises(InputFileError, match="line 2: F inf is not a finite") as err:
        summarize(p, "hkl")
    assert err.value.line == 2
    p.write_text("1 2 3 4\n\n# c\n1 2.5 3 4\n")
    with pytest.raises(InputFileError, match="line 4: k index 2.5"):
        summarize(p, "hkl")


def test_hkl_blocks_match_whole_reads(tmp_path, monkeypatch):
    """Blocks split anywhere (here every 64 bytes) give the grid of a whole read."""
    from sim_core.io import hkl

    rng = np.random.default_rng(1)
    rows = rng.integers(-5, 6, size=(400, 3))
    lines = [f"{h} {k} {l} {float(i):.1f}" + (" 0.5 extra" if i % 7 == 0 else "")
             for i, (h, k, l) in enumerate(rows)]
    lines.insert(10, "# comment")
    lines.insert(20, "")
    p = tmp_path / "r.hkl"
    p.write_text("\n".join(lines))  # no newline at the end
    whole = hkl.read_hkl(p, default_F=7.0)
    monkeypatch.setattr(hkl, "CHUNK_BYTES", 64)
    blocks = hkl.read_hkl(p, default_F=7.0)
    assert whole.bounds == blocks.bounds and whole.count == blocks.count == 400
    assert np.array_equal(whole.F, blocks.F)
    last = {}
    for i, (h, k, l) in enumerate(rows):
        last[(h, k, l)] = float(i)
    for (h, k, l), F in last.items():
        assert whole.F[h + 5 - (whole.h_min + 5), k - whole.k_min, l - whole.l_min] == F


def test_matrix_and_mask_summaries(tmp_path):
    from sim_core.io.smv import SmvGeometry  # noqa: F401 - the writer's module
    m = tmp_path / "A.mat"
    m.write_text("0.01 0 0\n0 0.02 0\n0 0 0.04\n")
    assert summarize(m, "matrix")["cell_lengths_per_A"] == pytest.approx([100, 50, 25])
    m.write_text("0 0 0\n0 0 0\n0 0 0\n")
    with pytest.raises(InputFileError, match="singular"):
        summarize(m, "matrix")
    smv = tmp_path / "inf.img"
    smv.write_bytes(b"{\nHEADER_BYTES=inf;\nSIZE1=2;\nSIZE2=2;\n}\f".ljust(512) + bytes(8))
    with pytest.raises(InputFileError, match="HEADER_BYTES"):
        summarize(smv, "mask")
    smv.write_bytes(b"{\nHEADER_BYTES=512;\nSIZE1=1e400;\nSIZE2=2;\n}\f".ljust(512) + bytes(8))
    with pytest.raises(InputFileError, match="no image size"):
        summarize(smv, "mask")


def test_grid_cache_is_bounded_in_bytes():
    from sim_core.cache import ByteLRU

    cache = ByteLRU(100)
    for i in range(5):
        cache.put(i, f"v{i}", 30)
    assert cache.bytes <= 100 and len(cache) == 3
    assert cache.get(0) is None and cache.get(4) == "v4"
    cache.get(2)  # used: kept over 3
    cache.put(5, "v5", 30)
    assert cache.get(2) == "v2" and cache.get(3) is None
    cache.put(6, "huge", 1000)  # more than the whole budget: not kept, nothing evicted
    assert cache.get(6) is None and cache.bytes <= 100


@pytest.mark.parametrize("kind", ["model", "mtz"])
def test_model_and_mtz_tables_are_priced_as_a_bound_on_the_workers(tmp_path, kind):
    """A model's or MTZ file's P1 table: the estimate's box holds the one the experiment computes,
    and a model's terms count its atoms times the reflections in reach."""
    from sim_core.experiment import build_experiment, local_files
    from tests.sim_core.test_structure import CELL, _config
    from tests.structures import synthetic_structure, write_model, write_mtz

    if kind == "model":
        path = write_model(synthetic_structure(20, "P 43 21 2", CELL), tmp_path / "m.pdb")
        cfg = _config(model_file=path.name)
    else:
        path = tmp_path / "x.mtz"
        write_mtz(path, "P 21 21 21", CELL, 2.0)
        cfg = _config(mtz_file=path.name)
    field = "structure_factors.model_file" if kind == "model" else "structure_factors.mtz_file"
    ref = str(tmp_path / path.name)
    set_field(cfg, field, ref)
    summary = summarize(ref, kind)
    cost = estimate(cfg, {ref: summary})
    grid = build_experiment(cfg, local_files(tmp_path)).hkl_grid
    box = (grid.h_max - grid.h_min + 1) * (grid.k_max - grid.k_min + 1) * (grid.l_max - grid.l_min + 1)
    assert cost.structure_grid_points >= box > 0
    assert cost.grid_points == 0 and cost.exact
    if kind == "model":
        assert cost.structure_terms >= summary["atoms"] * 1000
    else:
        assert cost.structure_terms == 0
    with pytest.raises(InputFileError):  # the summary is needed, as for every file
        estimate(cfg, {})


def test_structure_file_checks_from_summaries_alone():
    """A given cell far from the file's, or an MTZ column it lacks, is refused from the summary."""
    mtz = {"cell": [40, 40, 30, 90, 90, 90], "space_group": "P 43 21 2", "reflections": 10,
           "column": "FP", "resolution_A": [20, 2],
           "columns": [{"label": "H", "type": "H"}, {"label": "FP", "type": "F"},
                       {"label": "SIGFP", "type": "Q"}]}
    base = {"beam": {"wavelength_A": 1}, "detector": {"fast_pixels": 8, "slow_pixels": 8},
            "sampling": {"oversample": 1}}
    far = load_config({**base, "crystal": {"cell": {"a_A": 41, "b_A": 40, "c_A": 30}},
                       "structure_factors": {"mtz_file": "d.mtz"}})
    with pytest.raises(ConfigError, match=r"differs from the cell of d.mtz") as err:
        estimate(far, {"d.mtz": mtz})
    assert err.value.field == "crystal.cell"
    for column, words in (("FOBS", "no column 'FOBS'; the file has FP (F), SIGFP (Q)"),
                          ("SIGFP", "holds standard deviation values")):
        cfg = load_config({**base, "structure_factors": {"mtz_file": "d.mtz", "mtz_column": column}})
        with pytest.raises(ConfigError, match=re.escape(words)) as err:
            estimate(cfg, {"d.mtz": mtz})
        assert err.value.field == "structure_factors.mtz_column"
    ok = load_config({**base, "structure_factors": {"mtz_file": "d.mtz", "mtz_column": "FP"}})
    assert estimate(ok, {"d.mtz": mtz}).structure_grid_points > 0


def test_an_intensities_only_mtz_must_name_its_column_at_submission():
    """The worker takes amplitudes unless a column is named: the estimate says which to name."""
    mtz = {"cell": [40, 40, 30, 90, 90, 90], "space_group": "P 43 21 2", "reflections": 10,
           "column": "IMEAN", "resolution_A": [20, 2],
           "columns": [{"label": "H", "type": "H"}, {"label": "IMEAN", "type": "J"},
                       {"label": "SIGIMEAN", "type": "Q"}]}
    base = {"beam": {"wavelength_A": 1}, "detector": {"fast_pixels": 8, "slow_pixels": 8},
            "sampling": {"oversample": 1}}
    cfg = load_config({**base, "structure_factors": {"mtz_file": "i.mtz"}})
    with pytest.raises(ConfigError) as err:
        estimate(cfg, {"i.mtz": mtz})
    assert err.value.field == "structure_factors.mtz_column"
    assert str(err.value) == ("i.mtz: no amplitude column (type F); the file has IMEAN (J), "
                              "SIGIMEAN (Q): name its intensity column to use it, converted with "
                              "F = sqrt(max(I, 0)): mtz_column IMEAN (-mtz_column IMEAN)")
    named = load_config({**base, "structure_factors": {"mtz_file": "i.mtz", "mtz_column": "IMEAN"}})
    assert estimate(named, {"i.mtz": mtz}).structure_grid_points > 0


def test_cells_from_files_are_checked_like_given_cells(tmp_path):
    """A matrix whose cell at the wavelength is 0.001 A, a model with a 0.001 A CRYST1, an MTZ
    whose reflections all lie beyond the reach: refused by arithmetic, naming the field."""
    from sim_core.io.summary import check_cell

    base = {"beam": {"wavelength_A": 1}, "detector": {"fast_pixels": 8, "slow_pixels": 8},
            "sampling": {"oversample": 1}, "structure_factors": {"default_F": 1}}
    mat = {"matrix": [[1000.0, 0, 0], [0, 1000.0, 0], [0, 0, 1000.0]],
           "cell_lengths_per_A": [0.001, 0.001, 0.001]}
    cfg = load_config({**base, "crystal": {"matrix_file": "A.mat"}})
    with pytest.raises(ConfigError, match=r"A.mat: the cell edges at the wavelength 1 A are "
                                          r"0.001, 0.001, 0.001 A; a simulation takes edges from "
                                          r"0.1 to 1e\+06 A") as err:
        estimate(cfg, {"A.mat": mat})
    assert err.value.field == "crystal.matrix_file"
    with pytest.raises(InputFileError, match=r"m.pdb: the unit cell 0.001 0.001 0.001 90 90 90 "
                                             r"is not a physical one \(a_A: Input should be "
                                             r"greater than or equal to 0.1"):
        check_cell("m.pdb", [0.001, 0.001, 0.001, 90, 90, 90])
    check_cell("m.pdb", [40, 40, 30, 90, 90, 90])
    # an MTZ holding only reflections at 20..10 A, a render to 30 A at most
    mtz = {"cell": [40, 40, 30, 90, 90, 90], "space_group": "P 43 21 2", "reflections": 10,
           "column": "FP", "resolution_A": [20, 10],
           "columns": [{"label": "H", "type": "H"}, {"label": "FP", "type": "F"}]}
    far = load_config({**base, "structure_factors": {"mtz_file": "d.mtz", "dmin_F_A": 30}})
    with pytest.raises(ConfigError, match=r"d.mtz: the file's lowest-resolution reflection "
                                          r"\(20 A\) lies beyond the detector's reach \(30 A") as err:
        estimate(far, {"d.mtz": mtz})
    assert err.value.field == "structure_factors.mtz_file"
    # a 40 A cell and dmin_F 45 A: not one reflection within reach
    none = load_config({**base, "structure_factors": {"mtz_file": "d.mtz", "dmin_F_A": 45}})
    with pytest.raises(ConfigError, match=r"d.mtz: no reflection of the cell \(40, 40, 30 A\) "
                                          r"lies within the detector's reach \(45 A at best\)"):
        estimate(none, {"d.mtz": mtz})


def test_a_structure_factor_table_beyond_the_limit_is_refused_by_arithmetic(tmp_path):
    """A model with a 1000 A cell asked for its structure factors to 1 A (dmin_F_A): its P1 table
    would have 2,001^3 points, 64 GB. check_sf_table refuses it from the summary alone with a typed
    error naming the file, the box, the size and the limit; a larger dmin_F_A bounds it; the local
    command (preflight) refuses it too, naming the flag, and renders it with -force. Without
    dmin_F_A the box is only a bound on the detector's reach (priced, not refused)."""
    from sim_core import preflight
    from sim_core.cost import MAX_SF_TABLE_BYTES, check_sf_table
    from sim_core.errors import StructureFactorTableError
    from tests.sim_core.test_structure import _config
    from tests.structures import synthetic_structure, write_model

    path = write_model(synthetic_structure(4, "P 1", (1000, 1000, 1000, 90, 90, 90)),
                       tmp_path / "huge.pdb")
    summaries = {path.name: summarize(path, "model")}
    cost = estimate(_config(model_file=path.name, dmin_F_A=1.0), summaries)
    assert cost.sf_field == "structure_factors.model_file" and cost.sf_file == "huge.pdb"
    assert cost.sf_box == ((-1000, 1000),) * 3 and cost.sf_box_exact
    assert cost.sf_table_bytes == 8 * 2001 ** 3 > MAX_SF_TABLE_BYTES
    with pytest.raises(StructureFactorTableError) as err:
        check_sf_table(cost, MAX_SF_TABLE_BYTES, limit_name="max_sf_table_bytes")
    assert err.value.field == "structure_factors.model_file"
    assert (err.value.table_bytes, err.value.limit) == (cost.sf_table_bytes, MAX_SF_TABLE_BYTES)
    assert str(err.value).startswith("huge.pdb: the indices h -1000..1000, k -1000..1000, "
                                     "l -1000..1000 of its P1 table to 1 A "
                                     "(structure_factors.dmin_F_A)")
    assert f"{cost.sf_table_points:,} points, {cost.sf_table_bytes:,} bytes" in str(err.value)
    assert "the limit max_sf_table_bytes is 1,600,000,000 bytes" in str(err.value)
    assert "a larger structure_factors.dmin_F_A (-dmin_F)" in str(err.value)
    # at 10 A the table is (2 x 100 + 1)^3 points
    bounded = estimate(_config(model_file=path.name, dmin_F_A=10.0), summaries)
    assert bounded.sf_table_points == 201 ** 3
    check_sf_table(bounded)
    # without dmin_F_A: a bound on the wavelength's reach, far beyond the limit, not refused
    loose = estimate(_config(model_file=path.name), summaries)
    assert loose.sf_table_bytes > MAX_SF_TABLE_BYTES and not loose.sf_box_exact
    check_sf_table(loose)
    # the command line: refused before the file is read for its table, the flag named
    argv = ["-model", "huge.pdb", "-dmin_F", "1", "-lambda", "1", "-distance", "60",
            "-detpixels", "24", "-pixel", "2", "-N", "5", "-oversample", "1"]
    from sim_core.nanobragg_args import parse_nanobragg_args
    cfg = parse_nanobragg_args(argv, base_dir=tmp_path).config
    with pytest.raises(StructureFactorTableError, match=r"^-model huge.pdb: huge.pdb: the indices"):
        preflight.check(cfg, argv, tmp_path)
    warnings = preflight.check(cfg, argv, tmp_path, force=True)
    assert any(w.startswith("-force: rendering anyway: huge.pdb: the indices") for w in warnings)


def test_an_mtz_files_table_is_bounded_by_its_own_resolution(tmp_path):
    """An MTZ file's P1 table holds no index beyond a / d_high of the file: the priced box is the
    smaller of that and the wavelength's reach, and still holds the table the worker builds."""
    from sim_core.experiment import build_experiment, local_files
    from tests.sim_core.test_structure import CELL, _config
    from tests.structures import write_mtz

    ref = str(write_mtz(tmp_path / "x.mtz", "P 21 21 21", CELL, 4.0) and tmp_path / "x.mtz")
    cfg = _config(mtz_file=ref)
    cost = estimate(cfg, {ref: summarize(ref, "mtz")})
    assert [hi for _, hi in cost.sf_box] == [10, 10, 7]  # 40 / 4, 40 / 4, 30 / 4
    grid = build_experiment(cfg, local_files(tmp_path)).hkl_grid
    for (lo, hi), (glo, ghi) in zip(cost.sf_box, ((grid.h_min, grid.h_max),
                                                  (grid.k_min, grid.k_max),
                                                  (grid.l_min, grid.l_max))):
        assert lo <= glo and ghi <= hi
