"""What a new user meets first on the command line: a command this machine cannot run refused at
once (naming the flag and the size), ``-help`` listing every flag, every error of a command line
reported together, and a warning where nanoBragg's rules complete a value."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim_core.errors import ArgumentError, ResourceError
from sim_core.flag_table import FLAGS
from sim_core.nanobragg_args import parse_nanobragg_args
from sim_core.preflight import MAX_SECONDS, OPTIMISTIC_RATE, check

BIN = Path(sys.executable).parent
CELL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100"]


def nanobragg(args, cwd):
    env = dict(os.environ, NANOBRAGG_SERVER="off")
    t0 = time.monotonic()
    res = subprocess.run([str(BIN / "nanobragg"), *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=60)
    return res, time.monotonic() - t0


def priced(*args, **kw):
    argv = CELL + list(args)
    return check(parse_nanobragg_args(argv).config, argv, **kw)


def test_a_detector_that_cannot_fit_is_refused_before_the_simulator_loads(tmp_path):
    """Refused by arithmetic before torch is imported (that is what makes it take well under a
    second: docs/sim_core.md gives the measured time), naming the flag and the sizes."""
    args = CELL + ["-lambda", "6.2", "-N", "5", "-distance", "100", "-detpixels", "100000"]
    probe = subprocess.run([sys.executable, "-c",
                            "import sys\nfrom sim_core.cli import main\n"
                            f"rc = main({args!r})\n"
                            "print(rc, 'torch' in sys.modules)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert probe.stdout.split() == ["1", "False"], probe.stdout + probe.stderr
    res, _ = nanobragg(args, tmp_path)
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert "nanobragg: error: -detpixels 100000: 10,000,000,000 pixels (100,000 x 100,000) need " \
           "80 GB for the float64 image alone and 170 GB in all, more than the" in err
    assert "-force" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_memory_refusal_follows_the_machine_and_the_dtype():
    assert priced("-detpixels", "1000", memory=10**9) == []
    with pytest.raises(ResourceError) as exc:
        priced("-detpixels", "1000", "-dtype", "float32", memory=10**7)
    assert exc.value.flag == "-detpixels" and exc.value.field == "detector.fast_pixels"
    assert ("-detpixels 1000: 1,000,000 pixels (1,000 x 1,000) need 4 MB for the float32 image "
            "alone and 17 MB in all, more than the 10 MB of memory") in str(exc.value)


def test_orientations_that_cannot_fit_name_their_flags():
    with pytest.raises(ResourceError) as exc:
        priced("-detpixels", "10", "-mosaic", "1", "-mosaic_domains", "1000", "-osc", "1",
               "-phisteps", "1000", memory=10**8)
    assert str(exc.value).startswith("-mosaic_domains 1000, -phisteps 1000: 1,000,000 crystal "
                                     "orientations (1,000 phi steps x 1,000 mosaic domains) need "
                                     "216 MB")
    assert exc.value.flag == "-mosaic_domains"


def test_a_render_of_more_than_a_day_is_refused_naming_its_factors():
    args = ["-detpixels", "1000", "-oversample", "100", "-mosaic", "1", "-mosaic_domains",
            "100000"]
    with pytest.raises(ResourceError) as exc:
        priced(*args)
    text = str(exc.value)
    assert 1e15 > OPTIMISTIC_RATE * MAX_SECONDS
    assert "= 1,000,000,000,000,000 evaluations: more than 1.16 days" in text
    assert ("the factors: -detpixels 1000 (1,000,000 pixels); -mosaic 1, -mosaic_domains 100000 "
            "(100,000 mosaic domains); -oversample 100 (10,000 subpixels)") in text
    # a tenth of it is allowed
    assert priced(*args[:-1], "10000") == []


def test_force_turns_the_refusal_into_a_warning():
    warnings = priced("-detpixels", "1000", "-force", memory=10**7,
                      force=parse_nanobragg_args(CELL + ["-force"]).force)
    assert len(warnings) == 1
    assert warnings[0].startswith("-force: rendering anyway: -detpixels 1000: 1,000,000 pixels")


def test_a_series_is_priced_by_its_image():
    assert priced("-detpixels", "100", "-images", "3", "-osc", "1") == []
    with pytest.raises(ResourceError, match="^-detpixels 1000: "):
        priced("-detpixels", "1000", "-images", "3", "-osc", "1", memory=10**7)


def test_help_lists_every_flag_with_its_description(tmp_path):
    res, _ = nanobragg(["-help"], tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for row in FLAGS:
        at = [i for i, line in enumerate(lines) if line.split()[:1] == [row.name]]
        assert at, f"{row.name} is not listed"
        # the description on the flag's line, or on the next one when the values are long
        text = " ".join(lines[at[0]:at[0] + 2])
        assert row.help in text, row.name
        for alias in row.aliases:
            assert alias in text, (row.name, alias)
    assert "  -detpixels N" in res.stdout and "  -dtype float64|float32" in res.stdout
    assert lines.index("our own flags:") < [i for i, x in enumerate(lines)
                                            if x.startswith("  -force")][0]


def test_no_arguments_print_the_usage_and_fail(tmp_path):
    res, _ = nanobragg([], tmp_path)
    assert res.returncode == 2 and "nanobragg -help" in res.stderr


def test_every_error_of_a_command_line_is_reported_at_once(tmp_path):
    argv = CELL + ["-distance", "far", "-distancex", "100", "-misset", "1", "2", "-detpixels",
                   "x", "-dtype", "half", "-pixel", "-1"]
    with pytest.raises(ArgumentError) as exc:
        parse_nanobragg_args(argv)
    flags = [getattr(e, "flag", None) for e in exc.value.errors]
    assert flags == ["-distance", "-distancex", "-misset", "-detpixels", "-dtype", "-pixel"]
    assert exc.value.flag == "-distance"
    assert str(exc.value).startswith("6 errors in the command line: -distance: expected a number, "
                                     "got 'far'")
    res, _ = nanobragg(argv, tmp_path)
    assert res.returncode == 2
    err = res.stderr.splitlines()
    assert err[0] == "nanobragg: 6 errors:"
    assert err[2] == "nanobragg: error: unknown flag -distancex (did you mean -distance?)"
    assert err[3] == ("nanobragg: error: -misset needs three angles (degrees) or 'random' "
                      "(crystal.misset_deg, crystal.misset_random)")
    assert "-pixel (detector.pixel_size_mm)" in err[6]


def test_one_error_reads_as_before():
    with pytest.raises(ArgumentError) as exc:
        parse_nanobragg_args(CELL + ["-distance", "far", "-N", "3"])
    assert exc.value.errors == [exc.value]
    assert str(exc.value) == "-distance: expected a number, got 'far' (detector.distance_mm)"


@pytest.mark.parametrize("args,text", [
    (["-cell", "50", "60"], "-cell 50 60: completed as nanoBragg does, to the cell "
                            "50 60 50 90 90 90 (A, deg): a missing or non-positive b or c is a"),
    (["-cell", "50", "0", "70", "90", "0", "90"], "to the cell 50 50 70 90 90 90"),
    (["-cell", "70", "80", "90", "91", "92", "93", "-cell", "50"],
     "-cell 50: completed as nanoBragg does, to the cell 50 80 90 91 92 93 (A, deg): the values "
     "it leaves out are those of the earlier -cell"),
])
def test_a_cell_completed_like_nanobragg_is_a_warning(args, text):
    p = parse_nanobragg_args(args + ["-default_F", "1"])
    assert [w for w in p.warnings if w.startswith("-cell")] and \
        any(text in w for w in p.warnings), p.warnings


def test_a_whole_cell_gives_no_warning():
    assert parse_nanobragg_args(CELL).warnings == []


def test_a_series_is_timed_over_all_its_images():
    args = ["-detpixels", "1000", "-oversample", "100", "-mosaic", "1", "-mosaic_domains", "10000",
            "-osc", "1"]
    assert priced(*args) == []  # one image (-osc: 2 phi steps): 2e14 evaluations, 5.6 hours
    with pytest.raises(ResourceError) as exc:
        priced(*args, "-images", "100")
    assert exc.value.flag == "-images"
    assert "per image, 100 images: more than 23.1 days" in str(exc.value)
    assert "-osc 1 (2 phi steps)" in str(exc.value)
    assert "the factors: -images 100 (100 images); -detpixels 1000" in str(exc.value)
