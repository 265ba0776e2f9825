"""Stills datasets: uniform orientations on SO(3), reproducible images, one image re-rendered alone,
shot-to-shot variations recorded, and the ground truth (reflections, -mat file, experiments.expt)
checked against the rendered images."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.ndimage import maximum_filter
from scipy.spatial.transform import Rotation

from sim_core import cli
from sim_core.errors import ConfigError
from sim_core.ground_truth import image_truth
from sim_core.io.mosflm import read_mosflm_matrix
from sim_core.nanobragg_args import config_to_args, parse_nanobragg_args
from sim_core.series import image_config, series_metadata
from sim_core.simulate import render_series, simulate, with_seeds
from sim_core.stills import draw_shot

# a 30 x 40 x 50 A cell of 5 x 5 x 5 cells on a 96 x 96 detector of 0.2 mm pixels at 60 mm
GEOMETRY = ["-cell", "30", "40", "50", "90", "90", "90", "-N", "5", "-lambda", "1",
            "-distance", "60", "-detpixels", "96", "-pixel", "0.2", "-oversample", "1"]
STILLS = ["-random_orientations", "-orientation_seed", "7", "-seed", "11"]


def stills_config(images: int, *extra: str):
    return parse_nanobragg_args(GEOMETRY + ["-default_F", "100", "-images", str(images)]
                                + STILLS + list(extra)).config


def rotations(config) -> Rotation:
    """The orientation each image's own config renders (its misset angles: x, then y, then z)."""
    first = config.scan.first_image
    angles = [image_config(config, n).crystal.misset_deg
              for n in range(first, first + config.scan.images)]
    return Rotation.from_euler("xyz", angles, degrees=True)


def uniformity_p_values(rot: Rotation) -> list[float]:
    """KS p-values: the rotation angle against its Haar density (1 - cos t) / pi on [0, pi] (CDF
    (t - sin t) / pi), and each component of the rotation axis against uniform on [-1, 1] (the
    coordinates of an isotropic unit vector are uniform)."""
    rv = rot.as_rotvec()
    angle = np.linalg.norm(rv, axis=1)
    axis = rv / angle[:, None]
    p = [stats.kstest(angle, lambda t: (t - np.sin(t)) / np.pi).pvalue]
    p += [stats.kstest(axis[:, i], stats.uniform(loc=-1, scale=2).cdf).pvalue for i in range(3)]
    return p


def test_a_seeded_100_shot_dataset_is_uniform_on_SO3():
    # statistic: Kolmogorov-Smirnov; threshold: every one of the four p-values >= 0.01
    rot = rotations(stills_config(100))
    p = uniformity_p_values(rot)
    assert min(p) >= 0.01, p
    # each half of the test can fail on 100 rotations: isotropic axes turned by angles uniform on
    # [0, pi] (a common mistake) fail the angle test; Haar angles about axes squashed towards the
    # xy plane fail the test of the axes' z components
    rng = np.random.default_rng(3)
    axes = rng.standard_normal((100, 3))
    axes /= np.linalg.norm(axes, axis=1)[:, None]
    p_angle = uniformity_p_values(Rotation.from_rotvec(axes * rng.uniform(0, np.pi, (100, 1))))
    assert p_angle[0] < 1e-6
    axes = rng.standard_normal((100, 3)) * [1.0, 1.0, 0.3]
    axes /= np.linalg.norm(axes, axis=1)[:, None]
    haar = np.linalg.norm(Rotation.random(100, random_state=4).as_rotvec(), axis=1)
    p_axis = uniformity_p_values(Rotation.from_rotvec(axes * haar[:, None]))
    assert p_axis[0] >= 0.01 and p_axis[3] < 0.01


def test_an_image_orientation_depends_on_the_seed_and_its_number_only():
    small = stills_config(5)
    wide = stills_config(100)
    later = parse_nanobragg_args(GEOMETRY + ["-default_F", "100", "-images", "3",
                                             "-first_image", "3"] + STILLS).config
    for n in (3, 4, 5):
        assert image_config(small, n).crystal.misset_deg == \
            image_config(wide, n).crystal.misset_deg == image_config(later, n).crystal.misset_deg
    other = parse_nanobragg_args(GEOMETRY + ["-default_F", "100", "-images", "5",
                                             "-random_orientations", "-orientation_seed", "8",
                                             "-seed", "11"]).config
    assert image_config(other, 3).crystal.misset_deg != image_config(small, 3).crystal.misset_deg
    # a still has no rotation: one φ step at the dataset's φ, its own noise seed
    cfg = image_config(small, 4)
    assert (cfg.scan.images, cfg.scan.osc_range_deg, cfg.scan.random_orientations) == \
        (1, None, False)
    assert cfg.noise.seed != image_config(small, 3).noise.seed
    # without -orientation_seed the stills take the noise seed's size (recorded, as a misset's)
    unseeded = parse_nanobragg_args(GEOMETRY + ["-default_F", "100", "-images", "5",
                                                "-random_orientations", "-seed", "-7"]).config
    with pytest.raises(ConfigError) as err:
        draw_shot(unseeded, 1)
    assert err.value.field == "scan.orientation_seed"
    assert with_seeds(unseeded).scan.orientation_seed == 7


@pytest.fixture(scope="module")
def dataset_36_to_38():
    return {im.n: r.image for im, r in render_series(stills_config(100), images=[36, 37, 38],
                                                     device="cpu")}


def test_the_same_seed_gives_byte_identical_images(dataset_36_to_38):
    again = {im.n: r.image for im, r in render_series(stills_config(100), images=[36, 37, 38],
                                                      device="cpu")}
    for n in (36, 37, 38):
        assert again[n].tobytes() == dataset_36_to_38[n].tobytes()
    assert dataset_36_to_38[36].tobytes() != dataset_36_to_38[37].tobytes()


def test_image_37_rendered_alone_from_its_own_config_is_the_datasets_image_37(dataset_36_to_38):
    cfg = image_config(stills_config(100), 37)
    # its command line, parsed on its own, is the same config and renders the same bytes
    alone = parse_nanobragg_args(config_to_args(cfg)).config
    assert alone == cfg
    image = simulate(alone, device="cpu").image
    assert image.tobytes() == dataset_36_to_38[37].tobytes()


VARIATIONS = ["-shot_N", "uniform", "5", "2", "-shot_mosaic", "uniform", "0.2", "0.1",
              "-mosaic_domains", "2", "-shot_cell_scale", "normal", "1", "0.01",
              "-shot_lambda", "normal", "1", "0.002", "-shot_flux_scale", "lognormal", "1", "0.5"]


def test_shot_to_shot_variations_are_drawn_per_image_and_recorded():
    plain, varied = stills_config(40), stills_config(40, *VARIATIONS)
    meta = series_metadata(with_seeds(varied))["stills"]
    assert set(meta["variations"]) == {"shot_N", "shot_mosaic_spread_deg", "shot_cell_scale",
                                       "shot_wavelength_A", "shot_flux_scale"}
    Ns, lams, fluences = [], [], []
    for shot in meta["shots"]:
        n = shot["n"]
        cfg = image_config(varied, n)
        d = shot["drawn"]
        # the recorded values are the image config's
        assert cfg.crystal.Na == cfg.crystal.Nb == cfg.crystal.Nc == d["shot_N"]
        assert 3 <= d["shot_N"] <= 7
        assert cfg.crystal.mosaic_spread_deg == d["shot_mosaic_spread_deg"]
        assert 0.1 <= d["shot_mosaic_spread_deg"] <= 0.3
        assert cfg.crystal.cell.a_A == pytest.approx(30 * d["shot_cell_scale"], rel=1e-15)
        assert cfg.crystal.cell.c_A == pytest.approx(50 * d["shot_cell_scale"], rel=1e-15)
        assert cfg.beam.wavelength_A == d["shot_wavelength_A"]
        assert cfg.beam.fluence_photons_per_m2 == pytest.approx(
            plain.beam.fluence_photons_per_m2 * d["shot_flux_scale"], rel=1e-15)
        assert cfg.noise.seed == shot["noise_seed"] and cfg.crystal.mosaic_seed == \
            shot["mosaic_seed"]
        # the variations leave the orientation as it is without them
        assert cfg.crystal.misset_deg == image_config(plain, n).crystal.misset_deg
        Ns.append(d["shot_N"])
        lams.append(d["shot_wavelength_A"])
        fluences.append(d["shot_flux_scale"])
    assert len(set(Ns)) >= 3 and len(set(lams)) == 40
    assert abs(np.mean(lams) - 1.0) < 3 * 0.002 / math.sqrt(40)
    assert abs(np.median(np.log(fluences))) < 0.3


def test_stills_refuse_a_rotation_a_misset_and_variations_without_stills():
    base = GEOMETRY + ["-default_F", "100", "-images", "3"]
    for extra, field in ((["-osc", "0.5"], "scan.osc_range_deg"),
                         (["-phisteps", "3"], "scan.phi_steps"),
                         (["-misset", "random"], "scan.random_orientations"),
                         (["-misset", "1", "2", "3"], "scan.random_orientations")):
        with pytest.raises(ConfigError) as err:
            parse_nanobragg_args(base + STILLS + extra)
        assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        parse_nanobragg_args(GEOMETRY + ["-default_F", "1", "-shot_N", "normal", "5", "1"])
    assert err.value.field == "scan.shot_N"
    # a misset random keeps its meaning: one orientation for every image of a series
    series = parse_nanobragg_args(base + ["-osc", "0.1", "-misset", "random", "-seed", "4"]).config
    assert image_config(series, 1).crystal.misset_seed == image_config(series, 3).crystal.misset_seed


# -- ground truth -------------------------------------------------------------------------------
def _hkl_file(path):
    """Random |F| in 1..100 for |h|, |k|, |l| <= 9, F(000) = 0 (no direct-beam spot)."""
    rng = np.random.default_rng(5)
    lines = []
    for h in range(-9, 10):
        for k in range(-9, 10):
            for l in range(-9, 10):
                F = 0.0 if (h, k, l) == (0, 0, 0) else float(rng.uniform(1, 100))
                lines.append(f"{h} {k} {l} {F:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return {tuple(map(int, x.split()[:3])): float(x.split()[3]) for x in lines}


def _local_maxima(img):
    """Pixels not below any of their 8 neighbours; not on the detector's edge, where the tail of a
    spot just off the detector would count as a maximum."""
    peaks = (img == maximum_filter(img, size=3, mode="nearest")) & (img > 0)
    peaks[[0, -1], :] = peaks[:, [0, -1]] = False
    return peaks


def test_the_brightest_spots_are_predicted_and_predicted_spots_are_maxima(tmp_path):
    F_of = _hkl_file(tmp_path / "P1.hkl")
    cfg = parse_nanobragg_args(GEOMETRY + ["-hkl", "P1.hkl", "-images", "10"] + STILLS,
                               base_dir=tmp_path).config
    from sim_core.experiment import local_files
    found_all = []
    for im, result in render_series(cfg, local_files(tmp_path), device="cpu"):
        truth = image_truth(result)
        r = truth.reflections
        assert truth.count > 20
        pos = np.column_stack([r["fast_px"], r["slow_px"]])
        img = result.image
        peaks = _local_maxima(img)
        s, f = np.nonzero(peaks)
        # the 10 brightest local maxima: each pixel centre within 1 pixel of a predicted position
        for i in np.argsort(-img[s, f])[:10]:
            dist = np.hypot(pos[:, 0] - (f[i] + 0.5), pos[:, 1] - (s[i] + 0.5)).min()
            assert dist <= 1.0, (im.n, s[i], f[i], dist)
        # the reflections summing to more than 20 % of the strongest: a local maximum within 1 px
        strong = r["intensity"] > 0.2 * r["intensity"].max()
        for fx, sx in pos[strong]:
            fi, si = int(fx), int(sx)
            found_all.append(bool(peaks[max(0, si - 1):si + 2, max(0, fi - 1):fi + 2].any()))
        # F is the file's; the intensities sum the image over the spots (each pixel once)
        for h, k, l, F in zip(r["h"], r["k"], r["l"], r["F"]):
            assert F == pytest.approx(F_of.get((h, k, l), 0.0), abs=1e-9)
        assert r["intensity"].sum() <= img.astype(np.float64).sum() * (1 + 1e-12)
    assert np.mean(found_all) >= 0.95, np.mean(found_all)


def test_the_cli_writes_the_truth_and_the_expt_reciprocal_matrix_predicts_the_spots(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = GEOMETRY + ["-default_F", "100", "-images", "3", "-first_image", "36", "-nonoise",
                       "-nopgm"] + STILLS + ["-shot_lambda", "normal", "1", "0.01"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "stills dataset of 3 images" in out and "experiments.expt" in out
    expt = json.loads((tmp_path / "experiments.expt").read_text())
    assert expt["__id__"] == "ExperimentList" and len(expt["experiment"]) == 3
    assert len(expt["beam"]) == 3 and len(expt["detector"]) == 1  # the wavelength varies
    dataset = with_seeds(parse_nanobragg_args(argv).config)
    for i, n in enumerate((36, 37, 38)):
        e = expt["experiment"][i]
        assert expt["imageset"][e["imageset"]]["images"] == [f"intimage_{n:05d}.img"]
        beam, panel = expt["beam"][e["beam"]], expt["detector"][e["detector"]]["panels"][0]
        crystal = expt["crystal"][e["crystal"]]
        real = np.array([crystal[f"real_space_{x}"] for x in "abc"])
        recip = np.linalg.inv(real)  # columns a*, b*, c*
        lam = beam["wavelength"]
        s0 = -np.array(beam["direction"]) / lam
        with open(tmp_path / f"reflections_{n:05d}.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) > 20 and list(rows[0]) == ["h", "k", "l", "d_A", "fast_px", "slow_px",
                                                   "excitation_error", "F", "intensity"]
        for row in rows:
            hkl = np.array([int(row[x]) for x in "hkl"], dtype=float)
            q = recip @ hkl
            pos = (np.array(panel["origin"]) + float(row["fast_px"]) * panel["pixel_size"][0]
                   * np.array(panel["fast_axis"]) + float(row["slow_px"]) * panel["pixel_size"][1]
                   * np.array(panel["slow_axis"]))
            s = s0 + q
            # the diffracted ray towards the predicted pixel is along s0 + A* hkl
            np.testing.assert_allclose(s / np.linalg.norm(s), pos / np.linalg.norm(pos),
                                       atol=1e-12)
            assert np.linalg.norm(s) - 1 / lam == pytest.approx(float(row["excitation_error"]),
                                                                abs=1e-12)
            assert 1 / np.linalg.norm(q) == pytest.approx(float(row["d_A"]), rel=1e-12)
        # the -mat file holds the same crystal, and truth.json the image's own config
        A = read_mosflm_matrix(tmp_path / f"crystal_{n:05d}.mat")
        np.testing.assert_allclose(A / lam, recip, rtol=0, atol=1e-15)
        truth = json.loads((tmp_path / f"truth_{n:05d}.json").read_text())
        assert truth["config"] == json.loads(image_config(dataset, n).canonical_json())
        assert truth["shot"]["quaternion"] == list(draw_shot(dataset, n).quaternion)
        assert truth["command"].startswith("nanobragg ") and "-misset" in truth["command"]
    meta = json.loads((tmp_path / "series_metadata.json").read_text())
    assert [s["n"] for s in meta["series"]["stills"]["shots"]] == [36, 37, 38]


def test_a_curved_detector_has_no_planar_truth():
    cfg = parse_nanobragg_args(GEOMETRY + ["-default_F", "100", "-curved_det", "-detpixels",
                                           "8"]).config
    with pytest.raises(ConfigError) as err:
        image_truth(simulate(cfg, device="cpu"))
    assert err.value.field == "detector.curved"


def test_misset_angles_reproduce_the_drawn_rotation_even_at_gimbal_lock():
    rng = np.random.default_rng(2)
    cases = [rng.standard_normal(4) for _ in range(200)]
    cases += [Rotation.from_euler("xyz", a, degrees=True).as_quat()
              for a in ([10, 90, 20], [-30, -90, 45], [0, 0, 0])]
    from sim_core.stills import misset_from_rotation, rotation_from_quaternion
    for q in cases:
        R = rotation_from_quaternion(q)
        np.testing.assert_allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-14)
        angles = misset_from_rotation(R)
        np.testing.assert_allclose(Rotation.from_euler("xyz", angles, degrees=True).as_matrix(),
                                   R, atol=1e-14)


def test_the_stills_commands_reproduce_each_images_config_and_refuse_a_plain_render():
    import shlex

    from sim_core.stills import stills_commands
    cfg = with_seeds(stills_config(2, *VARIATIONS))
    lines = stills_commands(cfg).splitlines()
    assert len(lines) == 2
    for n, line in zip((1, 2), lines):
        words = shlex.split(line)
        assert words[0] == "nanobragg" and line.endswith(" </dev/null || exit")
        argv = words[1:words.index("</dev/null")]
        parsed = parse_nanobragg_args(argv).config
        assert parsed.outputs.int_file == f"intimage_{n:05d}.img"
        parsed.outputs = image_config(cfg, n).outputs
        assert parsed == image_config(cfg, n)
    # a stills config as it stands would render the unturned crystal: refused, naming the field
    single = parse_nanobragg_args(GEOMETRY + ["-default_F", "1"] + STILLS).config
    with pytest.raises(ConfigError) as err:
        simulate(single, device="cpu")
    assert err.value.field == "scan.random_orientations"
