"""A stills dataset (random orientations, shot-to-shot variation, ground truth per image) fanned
out over 1 and over 2 CPU workers: images per second, speed-up, and the overhead per image beyond
rendering.

    python -m bench.stills [--images 1000] [--workers 1 2] [--threads 1] [--repeat 1]

As bench/series.py (whose measurement it runs): for each worker count a fresh deployment renders
a warm-up dataset, then the measured one. The dataset's time is its record's ``created_at`` to
``finished_at``; an image's render time is ``render_elapsed_s`` of its own metadata (the
simulator's time); the overhead per image is the worker time not spent rendering,
(workers × dataset time − Σ render) / images: drawing the image's config, its ground truth
(reflections, crystal matrix, truth record), writing its files, the job bookkeeping and the
fan-out. The dataset's download (``GET /v1/jobs/{id}/dataset``: the zip with experiments.expt and
every still's command) is timed apart.
"""

from __future__ import annotations

from bench.series import compare_workers

#: 256 x 256 pixels, the crystal size, mosaic spread, wavelength and flux varying (docs/stills.md)
ARGS = ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-N", "10",
        "-lambda", "1.3", "-distance", "100", "-detpixels", "256", "-pixel", "0.172",
        "-oversample", "1", "-random_orientations", "-orientation_seed", "7", "-seed", "11",
        "-shot_N", "uniform", "10", "3", "-shot_mosaic", "uniform", "0.05", "0.03",
        "-mosaic_domains", "5", "-shot_lambda", "normal", "1.3", "0.002",
        "-shot_flux_scale", "lognormal", "1", "0.3"]


def main(argv=None) -> int:
    return compare_workers(
        argv, doc=__doc__, what="stills", default_images=1000, args=ARGS,
        line=lambda res, images: (
            f"dataset {res['series_s']:.2f} s ({images / res['series_s']:.1f} images/s), "
            f"{res['children']} children on {res['workers_used']} worker(s), render "
            f"{1000 * res['render_sum_s'] / images:.1f} ms an image, overhead beyond rendering "
            f"{res['overhead_per_image_ms']:.1f} ms an image; download {res['dataset_s']:.2f} s "
            f"({res['dataset_bytes'] / 1e6:.0f} MB)"))


if __name__ == "__main__":
    raise SystemExit(main())
