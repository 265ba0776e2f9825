"""Every flag of the table, on its own: args -> config -> args -> config is stable, and the command
line written back renders the same image (on a 6 x 6 detector)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from sim_core.experiment import local_files
from sim_core.flag_table import FLAGS, FLAGS_BY_NAME, Flag
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from sim_core.simulate import simulate
from tests.structures import synthetic_structure, write_model, write_mtz
from sim_core.series import image_config
from sim_core.simulate import simulate, with_seeds

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
BASE = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "10", "-detpixels", "6",
        "-pixel", "0.5", "-distance", "50", "-oversample", "1"]

#: values for flags whose generic sample (below) is not a physical value for them
SAMPLES = {
    "-misset": ["1", "2", "3"], "-energy": ["9000"], "-fluence": ["1e24"], "-flux": ["1e12"],
    "-polar": ["0.5"], "-lambda": ["1.2"], "-device": ["cpu"], "-compile": ["off"],
    "-memory_mb": ["64"], "-pivot": ["sample"], "-roi": ["0", "3", "1", "4"],
    "-trace_pixel": ["1", "2"], "-fdet_vector": ["0", "0", "1"], "-sdet_vector": ["0", "-1", "0"],
    "-odet_vector": ["1", "0", "0"], "-beam_vector": ["1", "0", "0"],
    "-polar_vector": ["0", "0", "1"], "-spindle_axis": ["0", "1", "0"],
    "-pix0_vector": ["0.05", "0", "0"], "-twotheta_axis": ["0", "0", "-1"],
    "-detpixels_x": ["5"], "-detpixels_y": ["4"], "-detpixels": ["5"], "-ORGX": ["3"],
    "-ORGY": ["2"], "-detector_abs": ["50"], "-detector_thick": ["20"],
    "-hkl": ["P1.hkl"], "-mat": ["A.mat"], "-sourcefile": ["sources.txt"], "-mask": ["mask.img"],
    "-img": ["mask.img"], "-model": ["model.pdb"], "-mtz": ["data.mtz"],
    "-images": ["2", "-osc", "0.5"],
    # a stills dataset of two images (a seed: both renders draw the same crystals); the
    # variations come with it
    "-random_orientations": ["-images", "2", "-orientation_seed", "7"],
    "-orientation_seed": ["7", "-random_orientations", "-images", "2"],
    **{flag: [kind, center, width, "-random_orientations", "-images", "2", "-orientation_seed",
              "7"]
       for flag, kind, center, width in (("-shot_N", "normal", "4", "1"),
                                         ("-shot_mosaic", "uniform", "0.2", "0.1"),
                                         ("-shot_cell_scale", "normal", "1", "0.01"),
                                         ("-shot_lambda", "uniform", "1.2", "0.01"),
                                         ("-shot_flux_scale", "lognormal", "1", "0.5"))},
    "-cbf": ["out.cbf"], "-cbffile": ["out.cbf"],
    # the MTZ column and the resolution of F come with the file they apply to
    "-mtz_column": ["FP", "-mtz", "data.mtz"], "-dmin_F": ["4", "-model", "model.pdb"],
}
#: more than one way to read some flags
EXTRA = [["-misset", "random", "-misset_seed", "7"], ["-detector_abs", "inf"],
         ["-nonoise", "-noisefile", "n.img"], ["-nopgm", "-pgmscale", "2"], ["-polar", "0.3",
                                                                               "-nopolar"],
         ["-mosaic", "0.5", "-mosaic_domains", "3"], ["-osc", "1", "-phisteps", "3"]]


def sample(row: Flag) -> list[str]:
    if row.name in SAMPLES:
        return SAMPLES[row.name]
    one = {"num": "1.5", "int": "3", "count": "3", "pos_or_none": "2", "posint_or_none": "2",
           "str": "out.bin", "file": "x", "ignored": "1"}.get(row.kind, (row.choices or ("",))[-1])
    return [] if row.kind == "switch" else [one] * row.nargs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from sim_core.io.smv import SmvGeometry, write_smv
    d = tmp_path_factory.mktemp("flags")
    (d / "P1.hkl").write_text("0 0 0 10\n1 0 0 5\n0 1 0 7\n1 1 1 3\n")
    shutil.copy(GOLDEN / "mosflm_matrix" / "A.mat", d / "A.mat")
    (d / "sources.txt").write_text("-10 0 0 1.0 1.0e-10\n-10 0.0001 0 1.0 1.0e-10\n")
    geom = SmvGeometry(fpixels=6, spixels=6, pixel_size_m=0.5e-3, distance_m=0.05,
                       wavelength_m=1e-10, xbeam_m=1.5e-3, ybeam_m=1.5e-3, fbeam_m=1.5e-3,
                       sbeam_m=1.5e-3, detsize_s_m=3e-3, dials_origin_mm=(0, 0, 0), orgx=3,
                       orgy=3, close_distance_m=0.05)
    mask = np.ones((6, 6), np.uint16)
    mask[0, 0] = 0
    write_smv(d / "mask.img", mask, geom)
    # a model and an MTZ file in the cell of BASE
    cell = (50, 60, 70, 90, 90, 90)
    write_model(synthetic_structure(8, "P 21 21 21", cell), d / "model.pdb")
    write_mtz(d / "data.mtz", "P 21 21 21", cell, dmin=5.0)
    return d


def cases():
    out = [pytest.param([row.name] + sample(row), id=row.name) for row in FLAGS]
    out += [pytest.param([alias] + sample(row), id=alias)
            for row in FLAGS for alias in row.aliases]
    return out + [pytest.param(x, id=" ".join(x)) for x in EXTRA]


def test_every_flag_has_a_case():
    tested = {c.values[0][0] for c in cases()}
    assert tested == set(FLAGS_BY_NAME)


@pytest.mark.parametrize("flag_args", cases())
def test_flag_round_trips_on_its_own(flag_args, folder):
    # "-printout" (no effect) follows, so that a flag is never the last argument
    argv = BASE + flag_args + ["-printout"]
    first = parse_nanobragg_args(argv, base_dir=folder).config
    written = config_to_args(first)
    second = parse_nanobragg_args(written, base_dir=folder).config
    assert second == first, (argv, written)
    assert parse_nanobragg_args(config_to_args(second), base_dir=folder).config == second
    if flag_args[0] in {r.name for r in FLAGS} or len(flag_args) > 2:  # one render per row
        files = local_files(folder)
        a = _render(first, files)
        b = _render(parse_nanobragg_args(written, base_dir=folder).config, files)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _render(config, files):
    """The image of a single-image config; the last image of a series."""
    if config.scan.images > 1:
        config = with_seeds(config)
        config = image_config(config, config.scan.first_image + config.scan.images - 1)
    return simulate(config, files, device="cpu").image


def test_defaults_are_not_written_again():
    args = config_to_args(parse_nanobragg_args(["-cell", "50", "50", "50", "90", "90", "90",
                                                "-default_F", "1"]).config)
    assert args == ["-cell", "50", "50", "50", "90", "90", "90", "-default_F", "1"]


def test_every_flag_has_a_one_line_description():
    # nanobragg -help prints it: every row, our own and the C program's, has one
    missing = [r.name for r in FLAGS if not r.help.strip()]
    assert not missing, f"rows without help=: {missing}"
    assert all("\n" not in r.help for r in FLAGS)
