"""Rotation series: the φ range, noise seed and file names of each image, grouping, the shell loop.

Image ``n`` of a series whose first image is numbered ``first`` starts at ``φ₀ + (n − first)·osc``
and covers ``osc``; everything else in its config is the series' (the same crystal, misset and mosaic
domains). Its noise seed is derived from the series seed and ``n``:

The noise of nanoBragg comes from ``ran1``, a Park-Miller generator with one cycle of 2³¹ − 2 states
(a seed *is* a state: ``-seed s`` starts the stream at ``s``, and each draw multiplies by 16807 modulo
2³¹ − 1). Seeds picked by hashing would start the images' streams at random points of that one cycle,
and a stream of a few million draws (about one per pixel plus one per photon) would overlap another
image's within a few hundred images. :func:`image_seed` instead places image ``n`` a fixed number of
states ``G`` further along the cycle than image ``n − 1`` (``seed = s · 16807^(n·G) mod (2³¹ − 1)``),
with ``G`` the golden-ratio fraction of the cycle: the starts of any ``N`` consecutive images are then
spread almost evenly, at least ``0.45 · (2³¹ − 2) / N`` states apart (36 images: 28 million; 360
images: 4.1 million; 3600 images: 363 thousand), so their streams do not share a number as long as
each image draws fewer. Every seed lies in ``1 … 2³¹ − 2``, the range in which ``ran1`` is a
permutation (``-seed`` values ≥ 0 reload the generator, so an image's noise does not depend on what
was drawn before it), and different ``n`` always give different seeds.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from .output_formats import NUMBER_WIDTH, OUTPUT_FLAGS, _number_parts, numbered_name

#: ran1's modulus (2³¹ − 1, a prime) and multiplier (a primitive root of it)
_IM = 2147483647
_IA = 16807
#: the number of states in ran1's cycle
CYCLE = _IM - 1
#: the states between the noise streams of consecutive images: the integer nearest the golden-ratio
#: fraction of the cycle that is coprime with it (so n ↦ n·G is one-to-one on the cycle)
SEED_STRIDE = 1327217887
#: flags with one value that the loop sets per image or that describe the whole series
PER_IMAGE_FLAGS = ("-phi", "-seed", "-images", "-first_image")



def image_phi_start(phi0_deg: float, osc_deg: float, n: int, first_image: int = 1) -> float:
    """The start angle of image ``n``: ``phi0 + (n − first_image) · osc`` (degrees)."""
    if n < first_image:
        raise ValueError(f"image {n} comes before the first image {first_image}")
    return phi0_deg + (n - first_image) * osc_deg


def image_seed(series_seed: int, n: int, *, stride: int = SEED_STRIDE) -> int:
    """The ``-seed`` of image ``n``: the series seed moved ``n · stride`` states along ran1's cycle.

    Any integer series seed is accepted (folded into ``1 … 2³¹ − 2`` first); the result is in
    ``1 … 2³¹ − 2``. The same (series seed, n) always gives the same seed; different ``n`` (fewer
    than 2³¹ − 2 apart) give different seeds.
    """
    if n < 0:
        raise ValueError(f"image numbers are >= 0, got {n}")
    start = (int(series_seed) - 1) % CYCLE + 1
    return start * pow(_IA, (n * stride) % CYCLE, _IM) % _IM


def plan_children(images: Iterable[int], evals_per_image: float, target_evals: float, *,
                  min_children: int = 1, multiple_of: int = 1) -> list[list[int]]:
    """Group consecutive images into child jobs of about ``target_evals`` evaluations each.

    An image of ``target_evals`` or more is a child of its own; smaller ones are grouped
    ``target_evals // evals_per_image`` to a child. Groups differ in size by at most one image, and
    there are at least ``min_children`` of them (one per worker keeps every worker busy) and a
    multiple of ``multiple_of`` (the number of workers: none waits on another's last child),
    unless there are fewer images.
    """
    imgs = list(images)
    count, _ = plan_child_count(len(imgs), evals_per_image, target_evals,
                                min_children=min_children, multiple_of=multiple_of)
    if not count:
        return []
    size, extra = divmod(len(imgs), count)
    groups, start = [], 0
    for c in range(count):
        end = start + size + (1 if c < extra else 0)
        groups.append(imgs[start:end])
        start = end
    return groups


def plan_child_count(images: int, evals_per_image: float, target_evals: float, *,
                     min_children: int = 1, multiple_of: int = 1) -> tuple[int, int]:
    """(children, images of the largest) of :func:`plan_children`'s plan for ``images`` images,
    without listing them: child k holds ``images // children`` consecutive images, one more for
    the first ``images % children`` children."""
    if evals_per_image <= 0 or target_evals <= 0:
        raise ValueError("evals_per_image and target_evals must be positive")
    if min_children < 1 or multiple_of < 1:
        raise ValueError("min_children and multiple_of must be at least 1")
    if images <= 0:
        return 0, 0
    per_child = max(1, int(target_evals // evals_per_image))
    count = max(math.ceil(images / per_child), min(min_children, images))
    count = min(images, -(-count // multiple_of) * multiple_of)
    return count, -(-images // count)


@dataclass(frozen=True)
class SeriesImage:
    """One image of a series: its number, φ range (degrees) and noise seed."""

    n: int
    phi_start_deg: float
    osc_deg: float
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def series_images(phi0_deg: float, osc_deg: float, images: int, first_image: int,
                  series_seed: int) -> list[SeriesImage]:
    """Every image of a series of ``images`` images numbered from ``first_image``."""
    if images < 1:
        raise ValueError(f"a series has at least one image, got {images}")
    return [SeriesImage(n, image_phi_start(phi0_deg, osc_deg, n, first_image), osc_deg,
                        image_seed(series_seed, n))
            for n in range(first_image, first_image + images)]


def _check_image(config, n: int) -> None:
    from .errors import ConfigError

    scan = config.scan
    last = scan.first_image + scan.images - 1
    if not scan.first_image <= n <= last:
        raise ConfigError(f"image {n} is not in the series (images {scan.first_image} to {last})",
                          field="scan.first_image")
    if config.noise.seed is None:
        raise ConfigError("the series' noise seed is not fixed: give noise.seed (-seed) or fix "
                          "it once with sim_core.simulate.with_seeds(config)", field="noise.seed")


def _osc_deg(config) -> float:
    """The φ range of each image: ``scan.osc_range_deg`` (a series of several images has one), or
    for a single image without it, the range nanoBragg's rules give."""
    if config.scan.osc_range_deg is not None:
        return config.scan.osc_range_deg
    from .sampling import resolve_sampling
    return math.degrees(resolve_sampling(config).osc)


def series_of(config) -> list[SeriesImage]:
    """Every image of the series ``config`` describes (``scan.images`` from ``scan.first_image``;
    one image for a config of ``images = 1``), with its φ range and noise seed.

    The noise seed of the config is the series seed: it must be fixed (``with_seeds``).
    """
    scan = config.scan
    _check_image(config, scan.first_image)
    return series_images(scan.phi_start_deg, _osc_deg(config), scan.images, scan.first_image,
                         config.noise.seed)


def series_image(config, n: int) -> SeriesImage:
    """Image ``n`` of the series ``config``: its φ range and noise seed."""
    _check_image(config, n)
    scan = config.scan
    osc = _osc_deg(config)
    return SeriesImage(n, image_phi_start(scan.phi_start_deg, osc, n, scan.first_image), osc,
                       image_seed(config.noise.seed, n))


def image_config(config, n: int):
    """The single-image config of image ``n`` of the series ``config``: the series' config with
    ``scan.phi_start_deg`` at the image's start, ``noise.seed = image_seed(series seed, n)`` and
    ``scan.images = scan.first_image = 1`` (a plain single image: the config that the
    ``series_command_loop`` command of image ``n`` parses to, the number being the series').

    Everything else is the series': the same crystal, so a random misset whose seed is not given
    takes the series seed (as ``with_seeds`` fixes it for a single render), drawn once for every
    image. Rendering the result is rendering image ``n``; a child job renders exactly this.

    A stills dataset (``scan.random_orientations``) gives ``stills.still_config(config, n)``: image
    ``n``'s own drawn orientation and variations, written as fixed values.
    """
    if config.scan.random_orientations:
        from .stills import still_config
        return still_config(config, n)
    image = series_image(config, n)
    cfg = config.model_copy(deep=True)
    if cfg.crystal.misset_random and cfg.crystal.misset_seed is None:
        cfg.crystal.misset_seed = config.noise.seed
    cfg.scan.images = 1
    cfg.scan.phi_start_deg = image.phi_start_deg
    cfg.scan.first_image = 1
    cfg.noise.seed = image.seed
    return cfg


def series_metadata(config) -> dict:
    """The series part of ``run_metadata.json``: the series' numbering, angles and seeds, and
    every image with its φ range and noise seed (``SeriesImage.as_dict``); for a stills dataset
    also ``stills`` (``stills.stills_metadata``: every image's drawn orientation and variations)."""
    scan = config.scan
    images = series_of(config)
    cr = config.crystal
    misset_seed = cr.misset_seed
    if cr.misset_random and misset_seed is None:
        misset_seed = config.noise.seed  # as image_config fixes it
    meta = {
        "images": scan.images,
        "first_image": scan.first_image,
        "phi_start_deg": scan.phi_start_deg,
        "osc_range_deg": images[0].osc_deg,
        "series_seed": config.noise.seed,
        "misset_seed": misset_seed,
        "mosaic_seed": cr.mosaic_seed,
        "image_seed_rule": "image_seed(series_seed, n): the series seed moved n * SEED_STRIDE "
                           f"({SEED_STRIDE}) states along ran1's cycle",
        "image": [im.as_dict() for im in images],
    }
    if scan.random_orientations:
        from .stills import stills_metadata
        meta["stills"] = stills_metadata(config)
    return meta


def _shell_numbered(path: str) -> str:
    """A shell word for ``numbered_name(path, $n)``, with ``$n`` the loop's padded number."""
    head, ext = _number_parts(path)
    return shlex.quote(head) + '"$n"' + (shlex.quote(ext) if ext else "")


def series_command_loop(args: Sequence[str], images: Iterable[SeriesImage], *,
                        width: int = NUMBER_WIDTH, program: str = "nanobragg",
                        output_flags: Sequence[str] = OUTPUT_FLAGS,
                        per_image_flags: Sequence[str] = PER_IMAGE_FLAGS) -> str:
    """A bash loop that renders every image with ``program``, one command per image.

    ``args`` is the series' command line (``config_to_args(config, outputs="explicit")``, which
    names every output file, the default names too, so that each is numbered): its
    ``per_image_flags`` (with their value) are dropped, each image gets ``-phi`` and ``-seed`` from
    the table at the end of the loop, and every output flag's file name is numbered
    (``-intfile intimage_"$n".img``). Angles are written exactly (``repr``), so the command
    reproduces the image bit for bit. The loop stops at the first command that fails, with its
    exit status.
    """
    from .flag_table import format_value as number_text

    drop, outputs = set(per_image_flags), set(output_flags)
    words: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        if flag in drop and i + 1 < len(args):
            i += 2
            continue
        words.append(shlex.quote(flag))
        if flag in outputs and i + 1 < len(args):
            words.append(_shell_numbered(args[i + 1]))
            i += 2
            continue
        i += 1
    # stdin from /dev/null: a command reading it would swallow the table; stop at a failed image
    command = " ".join([shlex.quote(program)] + words +
                       ['-phi "$phi"', '-seed "$seed"', "</dev/null", "|| exit"])
    rows = [f"{im.n:0{width}d} {number_text(im.phi_start_deg)} {im.seed}" for im in images]
    return "\n".join(["while read -r n phi seed; do", f"  {command}", "done <<'EOF'", *rows,
                      "EOF"]) + "\n"


__all__ = ["CYCLE", "SEED_STRIDE", "NUMBER_WIDTH", "OUTPUT_FLAGS", "PER_IMAGE_FLAGS",
           "image_phi_start", "image_seed", "numbered_name", "plan_children", "SeriesImage",
           "series_images", "series_of", "series_image", "image_config", "series_metadata",
           "series_command_loop"]
