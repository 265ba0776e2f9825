"""Median time from submit to ``finished`` of a 64 x 64 job on a warm CPU worker.

    python -m bench.service_latency [--jobs 50]

The client submits one job at a time and polls its record every 5 ms (--poll-ms); the time is taken from just
before the POST to the first GET that shows ``finished``. Also prints the worker's own time for
the job (run_metadata.json elapsed_s) to show where the rest goes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.service_stack import Stack, machine

CONFIG = {
    "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 6.2},
    "detector": {"distance_mm": 100, "fast_pixels": 64, "slow_pixels": 64},
}


def one(c, outputs, poll: float = 0.005) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = c.post("/v1/jobs", json={"config": CONFIG, "outputs": outputs})
    r.raise_for_status()
    jid = r.json()["id"]
    while True:
        rec = c.get(f"/v1/jobs/{jid}").json()
        if rec["status"] in ("finished", "failed", "canceled"):
            dt = time.perf_counter() - t0
            assert rec["status"] == "finished", rec
            return dt, jid
        time.sleep(poll)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--outputs", nargs="+", default=["float", "smv", "png"])
    ap.add_argument("--poll-ms", type=float, default=5.0)
    args = ap.parse_args(argv)
    with Stack(workers=1) as stack, stack.client() as c:
        for _ in range(5):  # warm the API (simulator import) and the worker
            one(c, args.outputs)
        times, ids = [], []
        for _ in range(args.jobs):
            dt, jid = one(c, args.outputs, args.poll_ms / 1000)
            times.append(dt)
            ids.append(jid)
        worker = []
        for jid in ids:
            md = json.loads(c.get(f"/v1/jobs/{jid}/artifacts/run_metadata.json").content)
            worker.append(md["elapsed_s"])
    times.sort()
    print(f"machine: {machine()}")
    print(f"64x64 job, outputs {' '.join(args.outputs)}, {args.jobs} jobs one at a time on one "
          f"warm CPU worker, polling every {args.poll_ms:g} ms")
    print(f"submit -> finished: median {statistics.median(times) * 1e3:.1f} ms, "
          f"p10 {times[len(times) // 10] * 1e3:.1f} ms, p90 {times[9 * len(times) // 10] * 1e3:.1f} ms, "
          f"min {times[0] * 1e3:.1f} ms")
    print(f"worker's own time per job (run_metadata elapsed_s): median "
          f"{statistics.median(worker) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
