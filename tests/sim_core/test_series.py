"""Rotation series building blocks: φ per image, per-image noise seeds, numbering, grouping, the loop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from sim_core import cli
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from sim_core.outputs import write_nanobragg_files
from sim_core.rng import CRandom, SeedCell
from sim_core.series import (CYCLE, SEED_STRIDE, SeriesImage, image_config, image_phi_start,
                             image_seed, numbered_name, plan_children, series_command_loop,
                             series_images, series_of)
from sim_core.simulate import simulate


def test_image_phi_start():
    assert image_phi_start(10.0, 0.5, 1) == 10.0
    assert image_phi_start(10.0, 0.5, 4) == 11.5
    assert image_phi_start(-3.0, 0.25, 7, first_image=3) == -2.0
    assert image_phi_start(0.0, 0.1, 0, first_image=0) == 0.0
    with pytest.raises(ValueError, match="before the first image"):
        image_phi_start(0.0, 1.0, 0)


def test_image_seeds_are_reproducible_distinct_and_in_ran1_range():
    for series_seed in (1, 12345, 1_764_500_000, CYCLE):
        seeds = [image_seed(series_seed, n) for n in range(20_000)]
        assert len(set(seeds)) == len(seeds)
        assert min(seeds) >= 1 and max(seeds) <= CYCLE
        assert seeds[17] == image_seed(series_seed, 17)
    assert image_seed(12345, 0) == 12345  # image 0 starts where the series seed does
    assert image_seed(12345, 5) != image_seed(12346, 5)
    # any integer is a series seed: folded onto the cycle first
    for odd in (0, -7, CYCLE + 1, 2**40, -(2**62)):
        assert 1 <= image_seed(odd, 3) <= CYCLE
    assert image_seed(CYCLE + 5, 2) == image_seed(5, 2)
    with pytest.raises(ValueError):
        image_seed(1, -1)


def _cell_after(seed: int, draws: int) -> int:
    rng, cell = CRandom(), SeedCell.from_user_seed(seed)
    for _ in range(draws):
        rng.ran1(cell)
    return cell.value


def test_image_seed_moves_the_stream_along_ran1s_cycle():
    """With stride k, image 1's generator is image 0's, k draws later: seeds are cycle positions."""
    for k in (1, 3, 11):
        s1 = image_seed(987654, 1, stride=k)
        for m in (1, 6):
            assert _cell_after(s1, m) == _cell_after(987654, m + k)


@pytest.mark.parametrize("count", [36, 360, 3600])
def test_default_stride_spreads_any_run_of_images_over_the_cycle(count):
    starts = sorted((n * SEED_STRIDE) % CYCLE for n in range(100, 100 + count))
    gaps = np.diff(starts + [starts[0] + CYCLE])
    assert gaps.min() >= 0.45 * CYCLE / count


def test_numbered_name():
    assert numbered_name("image.img", 1) == "image_00001.img"
    assert numbered_name("image", 12) == "image_00012"
    assert numbered_name("out/a.b.cbf", 3, width=3) == "out/a.b_003.cbf"
    assert numbered_name(".hidden", 2) == ".hidden_00002"
    assert numbered_name("floatimage.bin", 123456) == "floatimage_123456.bin"
    assert numbered_name(Path("x/y.img"), 7) == Path("x/y_00007.img")
    assert numbered_name(PurePosixPath("y.img"), 0) == PurePosixPath("y_00000.img")
    with pytest.raises(ValueError):
        numbered_name("a.img", -1)


def test_plan_children():
    # tiny images: 10 per child of 1000 evaluations
    groups = plan_children(range(1, 36), 100, 1000)
    assert [len(g) for g in groups] == [9, 9, 9, 8]
    assert [n for g in groups for n in g] == list(range(1, 36))
    # big images: one each
    assert plan_children([4, 5, 6], 5000, 1000) == [[4], [5], [6]]
    # at least one child per worker
    assert [len(g) for g in plan_children(range(24), 1, 10**9, min_children=2)] == [12, 12]
    assert plan_children(range(3), 1, 10**9, min_children=8) == [[0], [1], [2]]
    assert plan_children([], 1, 1) == []
    for bad in ((0, 1), (1, 0), (-1, 5)):
        with pytest.raises(ValueError):
            plan_children([1], *bad)
    with pytest.raises(ValueError):
        plan_children([1], 1, 1, min_children=0)


# a small series: mosaic domains and several φ steps per image, every output file
SERIES_ARGS = ["-cell", "60", "60", "60", "90", "90", "90", "-default_F", "100", "-N", "3",
               "-lambda", "1.2", "-distance", "80", "-detpixels", "24", "-pixel", "0.3",
               "-mosaic", "0.4", "-mosaic_domains", "3", "-phi", "30", "-osc", "0.75",
               "-phisteps", "3", "-seed", "5", "-floatfile", "float image.bin",
               "-intfile", "int.img", "-noisefile", "noise", "-pgmfile", "image.pgm"]


def test_command_loop_runs_one_numbered_command_per_image(tmp_path):
    config = parse_nanobragg_args(SERIES_ARGS + ["-images", "3"]).config
    images = series_of(config)
    assert [im.phi_start_deg for im in images] == [30.0, 30.75, 31.5]
    assert images[1] == SeriesImage(2, 30.75, 0.75, image_seed(5, 2))
    loop = series_command_loop(config_to_args(config, outputs="explicit"), images)
    # bash runs the loop with a stand-in nanobragg that records its argument vector
    script = 'nanobragg() { printf "%s\\0" "$@" > "argv_$n"; }\n' + loop
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
    assert sorted(os.listdir(tmp_path)) == ["argv_00001", "argv_00002", "argv_00003"]
    for im in images:
        argv = (tmp_path / f"argv_{im.n:05d}").read_bytes().split(b"\0")[:-1]
        argv = [a.decode() for a in argv]
        got = parse_nanobragg_args(argv).config
        want = image_config(config, im.n)
        want.outputs.float_file = numbered_name("float image.bin", im.n)
        want.outputs.int_file = numbered_name("int.img", im.n)
        want.outputs.noise_file = numbered_name("noise", im.n)
        want.outputs.pgm_file = numbered_name("image.pgm", im.n)
        assert got == want
        assert argv.count("-phi") == 1 and argv.count("-seed") == 1


def test_command_loop_reproduces_the_image_bit_for_bit(tmp_path, monkeypatch):
    """The loop's command for image 2 gives the same files as rendering its config directly."""
    config = parse_nanobragg_args(SERIES_ARGS + ["-images", "3"]).config
    image = series_of(config)[1]
    loop = series_command_loop(config_to_args(config, outputs="explicit"), [image])
    script = 'nanobragg() { printf "%s\\0" "$@" > argv; }\n' + loop
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
    argv = [a.decode() for a in (tmp_path / "argv").read_bytes().split(b"\0")[:-1]]
    (tmp_path / "cli").mkdir()
    monkeypatch.chdir(tmp_path / "cli")
    assert cli.run(argv) == 0
    direct = simulate(image_config(config, image.n), device="cpu", dtype="float64")
    write_nanobragg_files(direct, tmp_path / "direct")
    for name in ("float image.bin", "int.img", "noise", "image.pgm"):
        numbered = numbered_name(name, 2)
        assert (tmp_path / "cli" / numbered).read_bytes() == \
            (tmp_path / "direct" / name).read_bytes(), name


def test_command_loop_keeps_its_table_from_stdin_readers_and_stops_at_a_failure(tmp_path):
    images = series_images(0.0, 1.0, 4, 1, series_seed=1)
    loop = series_command_loop(["-intfile", "x.img"], images)
    # a command that reads its stdin must not eat the rows; image 3 fails and ends the loop
    script = 'nanobragg() { cat; echo "$n" >> ran; [ "$n" != 00003 ]; }\n' + loop
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path)
    assert run.returncode == 1
    assert (tmp_path / "ran").read_text().split() == ["00001", "00002", "00003"]


def test_plan_children_makes_a_multiple_of_the_workers():
    # 7 images, 3 a child, 3 workers: 3 children
    assert [len(g) for g in plan_children(range(7), 1, 3, multiple_of=3)] == [3, 2, 2]
    # 7 images, 2 a child: 4 children would leave 2 workers idle at the end: 6
    assert [len(g) for g in plan_children(range(7), 1, 2, multiple_of=3)] == [2, 1, 1, 1, 1, 1]
    # never more children than images
    assert plan_children(range(2), 1, 1, min_children=3, multiple_of=3) == [[0], [1]]
    with pytest.raises(ValueError):
        plan_children(range(2), 1, 1, multiple_of=0)
