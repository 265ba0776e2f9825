"""Time the NeXus master file of a series (sim_core/io/nexus_master.py), as the dataset route makes
it: P data files of K frames each, written once with the service's NeXus writer, then the master
over them made R times. Prints the median time, the master's size and the process's peak memory
growth, and checks that the master reads back every frame.

    python -m bench.nexus_master --parts 8 --frames 6 --pixels 1024 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.host import cpu_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=8, help="data files (child jobs)")
    ap.add_argument("--frames", type=int, default=6, help="frames in each data file")
    ap.add_argument("--pixels", type=int, default=1024, help="detector side, in pixels")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    import h5py
    import hdf5plugin  # noqa: F401

    from sim_core.io.nexus import NexusWriter
    from sim_core.io.nexus_master import series_master
    from sim_core.nanobragg_args import parse_nanobragg_args
    from sim_core.output_formats import nexus_data_name
    from sim_core.series import series_of

    images = args.parts * args.frames
    n = str(args.pixels)
    config = parse_nanobragg_args(["-cell", "70", "80", "90", "90", "90", "90", "-default_F", "1",
                                   "-detpixels_x", n, "-detpixels_y", n, "-distance", "100",
                                   "-twotheta", "5", "-phi", "0", "-osc", "0.5",
                                   "-images", str(images), "-seed", "1"]).config
    angles = series_of(config)
    rng = np.random.default_rng(1)
    frame = np.zeros((args.pixels, args.pixels), np.float32)
    spots = rng.integers(0, args.pixels, size=(2000, 2))
    frame[spots[:, 0], spots[:, 1]] = rng.random(2000, dtype=np.float32) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        t0 = time.perf_counter()
        for p in range(args.parts):
            first = p * args.frames
            name = nexus_data_name(first + 1)
            ims = angles[first:first + args.frames]
            with NexusWriter(Path(tmp) / name, config, phi_starts_deg=[a.phi_start_deg for a in ims],
                             osc_deg=ims[0].osc_deg) as w:
                for k in range(args.frames):
                    w.write(k, frame)
            parts.append((name, Path(tmp) / name))
        write_s = time.perf_counter() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            master = series_master(parts)
            times.append(time.perf_counter() - t0)
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        (Path(tmp) / "image.nxs").write_bytes(master)
        with h5py.File(Path(tmp) / "image.nxs") as f:
            assert f["/entry/data/data"].shape == (images, args.pixels, args.pixels)
            assert np.array_equal(f["/entry/data/data"][images - 1], frame)
        data_mib = sum(os.path.getsize(p) for _, p in parts) / (1 << 20)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{args.parts} data files x {args.frames} frames of {args.pixels}^2 float32 "
          f"({data_mib:.1f} MiB compressed, written in {write_s:.2f} s)")
    print(f"master: {len(master):,} bytes, median {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) over {args.repeat}; "
          f"peak memory grew {grown_mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
