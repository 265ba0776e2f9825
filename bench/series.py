"""A rotation series fanned out over 1 and over 2 CPU workers: wall time, speed-up, and the
fan-out's overhead per image.

    python -m bench.series [--images 24] [--workers 1 2] [--threads 1] [--repeat 1]

For each worker count a fresh deployment (redis-server, the API, the workers; bench/service_stack)
renders a short warm-up series, then the measured one. The series' time is its record's
``created_at`` to ``finished_at`` (submission to the last child's end, as the service records
them); the render time of each image is ``render_elapsed_s`` of its entry in the dataset's
``run_metadata.json`` (the simulator's own time, experiment build included). The overhead per
image is the worker time not spent rendering: (workers × series time − Σ render) / images — with
one worker, the series time minus the sum of render times, per image. Each worker renders with
``--threads`` CPU threads (``BRAGG_WORKER_THREADS``; one per worker keeps two workers from
competing for the same cores of a 2-core machine).
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from datetime import datetime

from bench.service_stack import Stack, machine

#: 256 x 256 pixels, 10 mosaic domains x 24 φ steps: 15.7 M evaluations an image
ARGS = ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-lambda", "1",
        "-N", "8", "-distance", "120", "-detpixels", "256", "-pixel", "0.2", "-mosaic", "0.4",
        "-mosaic_domains", "10", "-osc", "0.25", "-phisteps", "24", "-oversample", "1",
        "-seed", "2024"]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_series(c, images: int, outputs: list[str], label: str, args: list[str] = ARGS) -> dict:
    r = c.post("/v1/jobs", json={"nanobragg_args": args + ["-images", str(images)],
                                 "outputs": outputs, "label": label})
    r.raise_for_status()
    rec = r.json()
    while rec["status"] not in ("finished", "failed", "canceled"):
        time.sleep(0.25)  # the times come from the record: polling fast only takes CPU from it
        rec = c.get(f"/v1/jobs/{rec['id']}").json()
    if rec["status"] != "finished":
        raise SystemExit(f"series {rec['id']} ended {rec['status']}: {rec.get('error')}")
    t0 = time.monotonic()
    data = c.get(f"/v1/jobs/{rec['id']}/dataset").content
    dataset_s = time.monotonic() - t0
    md = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("run_metadata.json"))
    renders = [im["render_elapsed_s"] for im in md["series"]["image"]]
    return {"id": rec["id"], "series_s": _ts(rec["finished_at"]) - _ts(rec["created_at"]),
            "render_sum_s": sum(renders), "children": rec["series"]["children"],
            "dataset_s": dataset_s, "dataset_bytes": len(data),
            "evaluations": rec["evaluations"], "workers_used": len(
                {im["worker"] for im in md["series"]["image"]})}


def measure(workers: int, images: int, threads: int, outputs: list[str], repeat: int,
            args: list[str] = ARGS) -> dict:
    env = {"BRAGG_WORKER_THREADS": str(threads)}
    with Stack(workers=workers, env=env) as stack, stack.client() as c:
        run_series(c, 2 * workers, outputs, "warm-up", args)
        # a worker compiles its kernels in the background for its first minute or so: measure
        # the warm service, not that compilation taking a core
        stack.wait_kernels()
        runs = [run_series(c, images, outputs, f"{images} images", args) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["series_s"])
    best["overhead_per_image_ms"] = 1000 * (workers * best["series_s"]
                                            - best["render_sum_s"]) / images
    best["workers"] = workers
    return best


def compare_workers(argv, *, doc: str, what: str, default_images: int, args: list[str],
                    line) -> int:
    """The command line of a fan-out benchmark: a dataset of ``what`` (``args``) measured on each
    worker count, one ``line(result, images)`` each, then the ratios to the first count."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--images", type=int, default=default_images)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    ap.add_argument("--outputs", nargs="+", default=["float", "smv"])
    ap.add_argument("--repeat", type=int, default=1, help="datasets per worker count (the best "
                                                          "is reported)")
    opts = ap.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"{what}: {opts.images} images of 256 x 256 pixels, outputs {' '.join(opts.outputs)}, "
          f"{opts.threads} thread(s) per worker")
    results = []
    for w in opts.workers:
        res = measure(w, opts.images, opts.threads, opts.outputs, opts.repeat, args)
        results.append(res)
        print(f"{w} worker(s): {line(res, opts.images)}", flush=True)
    for res in results[1:]:
        print(f"ratio {res['workers']} workers / {results[0]['workers']}: "
              f"{res['series_s'] / results[0]['series_s']:.3f}")
    print(f"machine after: {machine()}")
    return 0


def main(argv=None) -> int:
    return compare_workers(
        argv, doc=__doc__, what="series", default_images=24, args=ARGS,
        line=lambda res, images: (
            f"series {res['series_s']:.2f} s, {res['children']} children on "
            f"{res['workers_used']} worker(s), sum of render times {res['render_sum_s']:.2f} s "
            f"({1000 * res['render_sum_s'] / images:.0f} ms an image), fan-out overhead "
            f"{res['overhead_per_image_ms']:.1f} ms an image"))


if __name__ == "__main__":
    raise SystemExit(main())
