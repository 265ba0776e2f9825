"""The -model, -mtz, -mtz_column and -dmin_F flags: parsing, the inverse command line, and the
``nanobragg`` program end to end (its Fdump.bin then reproduces the image through -hkl's path)."""

from __future__ import annotations

import numpy as np
import pytest

from sim_core.errors import ConfigError
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from tests.sim_core.test_cli import run
from tests.structures import synthetic_structure, write_model, write_mtz

GEOMETRY = ["-lambda", "1", "-N", "5", "-distance", "60", "-detpixels", "24", "-pixel", "2",
            "-oversample", "1", "-misset", "10", "20", "30", "-nonoise", "-nopgm"]


def test_flags_set_the_config_and_round_trip():
    args = ["-mtz", "data.mtz", "-mtz_column", "IMEAN", "-dmin_F", "2.5"] + GEOMETRY
    parsed = parse_nanobragg_args(args)
    sf = parsed.config.structure_factors
    assert (sf.mtz_file, sf.mtz_column, sf.dmin_F_A, sf.hkl_file) == ("data.mtz", "IMEAN", 2.5,
                                                                      None)
    assert parsed.input_files == {"structure_factors.mtz_file": "data.mtz"}
    again = config_to_args(parsed.config, file_names={"data.mtz": "renamed.mtz"})
    assert again[again.index("-mtz") + 1] == "renamed.mtz"
    assert again[again.index("-mtz_column") + 1] == "IMEAN" and "-dmin_F" in again
    model = parse_nanobragg_args(["-model", "m.cif"] + GEOMETRY).config
    assert parse_nanobragg_args(config_to_args(model)).config == model


def test_a_model_replaces_fdump_and_excludes_hkl(tmp_path):
    (tmp_path / "Fdump.bin").write_bytes(b"0 0 0 0 0 0\n\f" + bytes(64))
    parsed = parse_nanobragg_args(["-model", "m.pdb"] + GEOMETRY, base_dir=tmp_path,
                                  allow_fdump=True)
    assert parsed.config.structure_factors.hkl_file is None and not parsed.warnings
    with pytest.raises(ConfigError, match="not hkl_file and model_file"):
        parse_nanobragg_args(["-hkl", "P1.hkl", "-model", "m.pdb"] + GEOMETRY)
    with pytest.raises(ConfigError, match="dmin_F_A needs model_file or mtz_file"):
        parse_nanobragg_args(["-cell", "40", "-default_F", "1", "-dmin_F", "2"] + GEOMETRY)


def test_model_run_and_its_fdump_reproduce_the_image(tmp_path):
    st = synthetic_structure(60, "P 43 21 2", (40, 40, 30, 90, 90, 90), seed=2)
    write_model(st, tmp_path / "m.cif")
    res = run(["-model", "m.cif", "-floatfile", "model.bin"] + GEOMETRY, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "note: unit cell from m.cif: 40 40 30 90 90 90 (P 43 21 2)" in res.stderr
    assert "wrote Fdump.bin" in res.stdout
    # the C program's way: the same cell, structure factors from Fdump.bin
    res = run(["-cell", "40", "40", "30", "90", "90", "90", "-floatfile", "fdump.bin"] + GEOMETRY,
              tmp_path)
    assert res.returncode == 0 and "reading structure factors from Fdump.bin" in res.stderr
    a = np.fromfile(tmp_path / "model.bin", dtype="<f4")
    assert a.max() > 0 and np.array_equal(a, np.fromfile(tmp_path / "fdump.bin", dtype="<f4"))


def test_mtz_errors_exit_with_the_column_named(tmp_path, monkeypatch, capsys):
    from sim_core.cli import main

    write_mtz(tmp_path / "i.mtz", "P 21 21 21", (30, 35, 40, 90, 90, 90), 3.0,
              columns=(("IMEAN", "J"),))
    monkeypatch.chdir(tmp_path)
    assert main(["-mtz", "i.mtz"] + GEOMETRY) == 1
    assert "nanobragg: error: i.mtz: no amplitude column (type F); the file has IMEAN (J): name " \
           "its intensity column to use it, converted with F = sqrt(max(I, 0)): mtz_column " \
           "IMEAN (-mtz_column IMEAN)" in capsys.readouterr().err
    assert main(["-mtz", "i.mtz", "-mtz_column", "IMEAN", "-floatfile", "f.bin"] + GEOMETRY) == 0
    assert "column IMEAN holds intensities: F = sqrt(max(I, 0))" in capsys.readouterr().err
