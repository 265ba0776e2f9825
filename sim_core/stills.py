"""Stills datasets: ``scan.images`` shots, no rotation, each crystal in its own random orientation.

Serial crystallography (XFEL and synchrotron SSX) records thousands of stills of crystals in random
orientations, often with the beam and the crystals varying from shot to shot. A config with
``scan.random_orientations`` (``-random_orientations``) is such a dataset: image ``n`` is
:func:`still_config` ``(config, n)``, a plain single-image config with

- the crystal orientation drawn uniformly over all rotations (the Haar measure on SO(3)) and written
  as fixed misset angles (``crystal.misset_deg``: rotations about x, then y, then z, nanoBragg's
  ``-misset``), so that rendering that config alone gives the image byte for byte;
- the shot-to-shot variations of ``scan.shot_*`` drawn and written into the fields they vary
  (``crystal.Na/Nb/Nc``, ``crystal.mosaic_spread_deg``, the cell edges, ``beam.wavelength_A``,
  ``beam.fluence_photons_per_m2`` or ``beam.flux_photons_per_s``);
- its own noise seed and mosaic-domain seed, ``series.image_seed(seed, n)`` of the dataset's seeds.

Every draw of image ``n`` comes from one stream, a numpy PCG64 generator seeded with the
``SeedSequence`` of ``(scan.orientation_seed, n)``: it depends on the seed and ``n`` only, so a dataset
can be extended or any image re-rendered alone. The stream's draws are always the same, in this
order: four standard normals (the orientation: a unit quaternion along a 4-vector of independent
normals is uniform on the 3-sphere, and so its rotation is uniform on SO(3)), then one uniform
number in (0, 1) per variation of ``config.SHOT_FIELDS``, turned into the variation's value by the
inverse of its distribution function. A variation that is not asked for still takes its number, so
adding one leaves the orientation and the other variations of every image unchanged.

A ``-misset random`` keeps nanoBragg's meaning (one random orientation for the whole run) and is
refused together with ``random_orientations``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from .config import SHOT_FIELDS, SimulationConfig, load_config
from .errors import ConfigError

#: what the stills metadata says about the stream of draws
DRAW_RULE = ("numpy PCG64(SeedSequence([orientation_seed, n])): 4 standard normals (a uniform "
             "rotation's quaternion x, y, z, w), then one uniform number in (0, 1) per variation, in "
             "the order " + ", ".join(SHOT_FIELDS) + ", through the inverse distribution function")

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Shot:
    """What was drawn for image ``n``: its rotation and the values of its variations."""

    n: int
    #: the uniform rotation as a unit quaternion (x, y, z, w), and as its matrix (rows)
    quaternion: tuple[float, float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    #: the same rotation as nanoBragg's misset angles: about x, then y, then z (degrees)
    misset_deg: tuple[float, float, float]
    #: shot field -> the value set in the image's config (only the variations asked for)
    drawn: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def shot_stream(seed: int, n: int) -> np.random.Generator:
    """The generator of image ``n``'s draws (depends on ``seed`` and ``n`` only)."""
    if seed < 0 or n < 0:
        raise ValueError(f"the stills' seed and image numbers are >= 0, got {seed} and {n}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(n)])))


def rotation_from_quaternion(q) -> np.ndarray:
    """The rotation matrix of a quaternion (x, y, z, w), normalised first."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def misset_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """Angles (degrees) with ``rotate_z(rotate_y(rotate_x(v, x), y), z) == R @ v``, i.e.
    ``R = Rz Ry Rx``: extrinsic x-y-z Euler angles, the order of nanoBragg's ``-misset``."""
    cos_y = math.hypot(R[0, 0], R[1, 0])
    ry = math.atan2(-R[2, 0], cos_y)
    if cos_y > 1e-12:
        rx = math.atan2(R[2, 1], R[2, 2])
        rz = math.atan2(R[1, 0], R[0, 0])
    else:  # y = ±90 deg: only x ∓ z is defined; put it all in z
        rx = 0.0
        rz = math.atan2(-R[0, 1], R[1, 1])
    return tuple(math.degrees(a) for a in (rx, ry, rz))


def _inverse_cdf(dist, u: float) -> float:
    if dist.kind == "uniform":
        return dist.center + dist.width * (2.0 * u - 1.0)
    z = _NORMAL.inv_cdf(u)
    if dist.kind == "normal":
        return dist.center + dist.width * z
    return dist.center * math.exp(dist.width * z)  # lognormal: median center


def draw_shot(config: SimulationConfig, n: int) -> Shot:
    """Image ``n``'s rotation and variations (the dataset's ``scan.orientation_seed`` must be fixed,
    as ``simulate.with_seeds`` fixes it)."""
    scan = config.scan
    if scan.orientation_seed is None:
        raise ConfigError("the stills' seed is not fixed: give scan.orientation_seed "
                          "(-orientation_seed) or fix it once with sim_core.simulate.with_seeds",
                          field="scan.orientation_seed")
    gen = shot_stream(scan.orientation_seed, n)
    q = gen.standard_normal(4)
    q = q / np.linalg.norm(q)
    # random() gives multiples of 2^-53 in [0, 1): half a step more is strictly inside (0, 1)
    u = gen.random(len(SHOT_FIELDS)) + 2.0 ** -54
    R = rotation_from_quaternion(q)
    drawn = {}
    for name, ui in zip(SHOT_FIELDS, u):
        dist = getattr(scan, name)
        if dist is not None:
            drawn[name] = _inverse_cdf(dist, float(ui))
    return Shot(n=n, quaternion=tuple(float(x) for x in q),
                rotation=tuple(tuple(float(x) for x in row) for row in R),
                misset_deg=misset_from_rotation(R), drawn=drawn)


def _apply(data: dict, config: SimulationConfig, shot: Shot) -> dict:
    """Write the drawn values into the image's config data; returns the values as set."""
    cr, bm = data["crystal"], data["beam"]
    n = shot.n
    applied = {}

    def refuse(name: str, why: str):
        raise ConfigError(f"image {n}: scan.{name} {why}", field=f"scan.{name}")

    for name, x in shot.drawn.items():
        if name == "shot_N":
            if any(cr.get(f"size_{e}_mm") is not None for e in "abc"):
                refuse(name, "varies Na, Nb, Nc, but a crystal size (crystal.size_*_mm) sets them")
            cells = max(1, int(round(x)))
            cr["Na"] = cr["Nb"] = cr["Nc"] = cells
            applied[name] = cells
        elif name == "shot_mosaic_spread_deg":
            spread = min(90.0, max(0.0, x))
            cr["mosaic_spread_deg"] = spread
            applied[name] = spread
        elif name == "shot_cell_scale":
            if cr.get("cell") is None:
                refuse(name, "scales the unit cell: give crystal.cell (-cell)")
            if x <= 0:
                refuse(name, f"drew a factor of {x:g}: the cell needs a factor above 0")
            for edge in ("a_A", "b_A", "c_A"):
                cr["cell"][edge] = cr["cell"][edge] * x
            applied[name] = x
        elif name == "shot_wavelength_A":
            if x < 1e-3:
                refuse(name, f"drew a wavelength of {x:g} A: at least 0.001 A")
            bm["wavelength_A"] = x
            applied[name] = x
        elif name == "shot_flux_scale":
            if x <= 0:
                refuse(name, f"drew a factor of {x:g}: the fluence needs a factor above 0")
            key = "flux_photons_per_s" if config.beam.flux_photons_per_s > 0 \
                else "fluence_photons_per_m2"
            bm[key] = bm[key] * x
            applied[name] = x
    return applied


def still_config(config: SimulationConfig, n: int) -> SimulationConfig:
    """The single-image config of image ``n`` of the stills dataset ``config``: its orientation as
    ``crystal.misset_deg``, its variations in the fields they vary, its noise seed and mosaic seed
    (``image_seed`` of the dataset's, as a series' images), ``scan.images = first_image = 1`` and no
    stills fields left (rendering it alone gives image ``n``; its command line re-renders it)."""
    from .series import _check_image, image_seed

    _check_image(config, n)
    shot = draw_shot(config, n)
    data = config.model_dump(mode="json")
    scan = data["scan"]
    for name in SHOT_FIELDS:
        scan[name] = None
    scan.update(random_orientations=False, orientation_seed=None, images=1, first_image=1)
    data["crystal"]["misset_deg"] = list(shot.misset_deg)
    data["crystal"]["mosaic_seed"] = image_seed(config.crystal.mosaic_seed, n)
    data["noise"]["seed"] = image_seed(config.noise.seed, n)
    _apply(data, config, shot)
    return load_config(data)


def shot_record(config: SimulationConfig, n: int) -> dict:
    """Image ``n``'s draws as recorded in the metadata: the shot (rotation, misset angles, drawn
    values as set) and its seeds."""
    from .series import image_seed

    shot = draw_shot(config, n)
    data = config.model_dump(mode="json")
    record = shot.as_dict()
    record["drawn"] = _apply(data, config, shot)
    record["noise_seed"] = image_seed(config.noise.seed, n)
    record["mosaic_seed"] = image_seed(config.crystal.mosaic_seed, n)
    return record


def stills_metadata(config: SimulationConfig) -> dict:
    """The stills part of the dataset's metadata: the seed, the rule of the draws, the variations
    asked for and every image's :func:`shot_record`."""
    scan = config.scan
    last = scan.first_image + scan.images
    return {
        "orientation_seed": scan.orientation_seed,
        "draw_rule": DRAW_RULE,
        "variations": {name: getattr(scan, name).model_dump() for name in SHOT_FIELDS
                       if getattr(scan, name) is not None},
        "shots": [shot_record(config, n) for n in range(scan.first_image, last)],
    }




def dataset_draws(config: SimulationConfig) -> list[dict]:
    """Every image's variations as set in its config (``shot_record``'s ``drawn``), without
    building the images' configs; a draw the simulator refuses (a factor of 0 or less, a wavelength
    below 0.001 A) raises its ``ConfigError`` naming the field and the image."""
    import copy

    scan = config.scan
    if not any(getattr(scan, name) is not None for name in SHOT_FIELDS):
        return []
    data = config.model_dump(mode="json")
    small = {"crystal": data["crystal"], "beam": data["beam"]}
    return [_apply(copy.deepcopy(small), config, draw_shot(config, n))
            for n in range(scan.first_image, scan.first_image + scan.images)]


def costliest_config(config: SimulationConfig) -> SimulationConfig:
    """The first image's config with each variation at its costliest value drawn over the dataset:
    the most cells per edge and the largest cell (a larger crystal needs a finer oversampling), the
    widest mosaic spread (a spread of 0 renders one domain) and the shortest wavelength (a finer
    oversampling too). Its evaluations bound every image's: what a dataset is priced by."""
    cfg = still_config(config, config.scan.first_image)
    draws = dataset_draws(config)
    if not draws:
        return cfg

    def most(name, pick=max):
        values = [d[name] for d in draws if name in d]
        return pick(values) if values else None

    data = cfg.model_dump(mode="json")
    cr, bm = data["crystal"], data["beam"]
    if (cells := most("shot_N")) is not None:
        cr["Na"] = cr["Nb"] = cr["Nc"] = cells
    if (spread := most("shot_mosaic_spread_deg")) is not None:
        cr["mosaic_spread_deg"] = spread
    if (scale := most("shot_cell_scale")) is not None:
        for edge in ("a_A", "b_A", "c_A"):
            cr["cell"][edge] = getattr(config.crystal.cell, edge) * scale
    if (wavelength := most("shot_wavelength_A", min)) is not None:
        bm["wavelength_A"] = wavelength
    return load_config(data)


def stills_commands(config: SimulationConfig, *, program: str = "nanobragg",
                    width: int | None = None, file_names: dict[str, str] | None = None) -> str:
    """Shell commands that render every image of the stills dataset ``config`` (seeds fixed), one
    line per image: ``program`` with image ``n``'s own command line (``config_to_args`` of
    :func:`still_config`, naming every output file) and each output file numbered
    (``intimage_00001.img``; input files named by ``file_names``, uploaded id -> name); the script
    stops at the first command that fails. Unlike a rotation
    series, whose images differ in two numbers (one loop over a table), each still has its own
    orientation and drawn values, so each has its own line."""
    import shlex

    from .nanobragg_args import config_to_args
    from .series import NUMBER_WIDTH, OUTPUT_FLAGS, numbered_name

    width = NUMBER_WIDTH if width is None else width
    scan = config.scan
    lines = []
    for n in range(scan.first_image, scan.first_image + scan.images):
        args = config_to_args(still_config(config, n), outputs="explicit",
                              file_names=file_names or {})
        words = [program]
        for i, word in enumerate(args):
            numbered = i > 0 and args[i - 1] in OUTPUT_FLAGS
            words.append(numbered_name(word, n, width) if numbered else word)
        lines.append(" ".join(shlex.quote(w) for w in words) + " </dev/null || exit")
    return "\n".join(lines) + "\n"


#: the image file an experiment list points at, best first (DIALS reads these; not the float image)
EXPT_IMAGE_KINDS = ("cbf", "noise", "smv")


def write_still_truth(config: SimulationConfig, result, n: int, folder=".") -> tuple[dict, dict]:
    """Write image ``n``'s ground truth beside its image (``reflections_NNNNN.csv``,
    ``crystal_NNNNN.mat``, ``truth_NNNNN.json``: the truth record with the image's shot, its full
    config and the command that re-renders it alone); returns (kind -> path, truth record)."""
    import json

    from .ground_truth import image_truth, write_image_truth
    from .nanobragg_args import config_to_args, format_command

    truth = image_truth(result)
    extra = {"image": n, "shot": shot_record(config, n),
             "config": json.loads(result.config.canonical_json()),
             "command": format_command(config_to_args(result.config))}
    return write_image_truth(truth, folder, number=n, extra=extra), truth.record()


def write_experiments(path, records: list[dict], image_paths: list[dict]) -> None:
    """``experiments.expt`` of a stills dataset at ``path``: one experiment per image, each
    pointing at its image file (``EXPT_IMAGE_KINDS``, relative to ``path``'s folder)."""
    import json
    import os
    from pathlib import Path

    from .ground_truth import experiment_list
    from .outputs import _atomic

    path = Path(path)
    names = []
    for paths in image_paths:
        kind = next((k for k in EXPT_IMAGE_KINDS if k in paths), None)
        if kind is None:
            raise ConfigError("an experiment list needs an image DIALS reads: write the int, "
                              "noise or CBF image (-intfile, -noisefile, -cbf)",
                              field="outputs.int_file")
        names.append(os.path.relpath(paths[kind], path.parent))
    text = json.dumps(experiment_list(records, names), indent=1) + "\n"
    _atomic(path, lambda p: Path(p).write_text(text))


__all__ = ["Shot", "DRAW_RULE", "EXPT_IMAGE_KINDS", "shot_stream", "rotation_from_quaternion",
           "misset_from_rotation", "draw_shot", "still_config", "shot_record", "stills_metadata",
           "dataset_draws", "costliest_config", "stills_commands", "write_still_truth", "write_experiments"]
