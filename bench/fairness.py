"""Fair share under a backlog: one owner queues ten 3,600-image series, another submits one small
job; how long the small job takes, what the submissions and the cancels cost, what Redis holds.

    python -m bench.fairness [--series 10] [--images 3600] [--workers 2] [--settle 20] [--repeat 5]

Against a fresh deployment (redis-server, the API, ``--workers`` CPU workers; bench/service_stack)
with one image per child (``BRAGG_SERIES_CHILD_EVALUATIONS=1``). Printed: each series submission's
time (median, slowest), Redis' memory after them, the other owner's 32×32 job from submission to
``finished`` (``--repeat`` times, one after another, once the backlog has rendered ``--settle``
seconds), the time for a cancel of one series to reach ``canceled`` and how many of its
entries are left on the queues afterwards, and Redis' slowest commands meanwhile (its slowlog,
from 5 ms). Then every series is canceled and the deployment stopped.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import redis

from bench.service_stack import Stack, machine
from jobs import queue as rq_queue

OTHER_TOKEN = "other-token"
#: 32 x 32 pixels, one φ step, one mosaic domain: a small image a child
SERIES_ARGS = ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-lambda", "1",
               "-N", "2", "-distance", "120", "-detpixels", "32", "-pixel", "0.2", "-osc", "0.1",
               "-oversample", "1", "-seed", "7"]
SMALL_ARGS = SERIES_ARGS[:-2] + ["-seed", "8"]


def _until(c: httpx.Client, job_id: str, statuses: set[str], timeout: float) -> dict:
    end = time.monotonic() + timeout
    while True:
        rec = c.get(f"/v1/jobs/{job_id}").json()
        if rec["status"] in statuses or time.monotonic() > end:
            return rec
        time.sleep(0.05)


def _left_on_queues(r: redis.Redis, ns: str, series_id: str) -> int:
    return sum(1 for d in rq_queue.DEVICES for m in rq_queue.waiting(r, rq_queue.queue_name(ns, d))
               if m.startswith(series_id))


def run(series: int, images: int, workers: int, settle_s: float, repeat: int) -> None:
    env = {"BRAGG_SERIES_CHILD_EVALUATIONS": "1", "BRAGG_WORKER_THREADS": "1",
           "BRAGG_TOKENS": f"bench:bench-token,other:{OTHER_TOKEN}"}
    print(f"machine: {machine()}")
    with Stack(workers=workers, env=env) as stack:
        stack.wait_kernels()
        r = redis.Redis.from_url(stack.redis_url)
        r.config_set("slowlog-log-slower-than", 5000)
        r.slowlog_reset()
        ns = "bragg"
        owner = stack.client()
        other = httpx.Client(base_url=stack.base_url, timeout=60,
                             headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        submits, ids = [], []
        for i in range(series):
            t0 = time.perf_counter()
            resp = owner.post("/v1/jobs", json={
                "nanobragg_args": SERIES_ARGS + ["-images", str(images)],
                "outputs": ["float"], "label": f"backlog {i}"})
            submits.append(time.perf_counter() - t0)
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        memory = r.info("memory")["used_memory"]
        print(f"{series} series of {images} images submitted: median "
              f"{statistics.median(submits) * 1000:.0f} ms, slowest {max(submits) * 1000:.0f} ms; "
              f"Redis memory {memory / 1e6:.1f} MB")
        time.sleep(settle_s)  # the workers are busy with the backlog now
        waits = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            small = other.post("/v1/jobs", json={"nanobragg_args": SMALL_ARGS,
                                                 "outputs": ["float"]}).json()
            done = _until(other, small["id"], {"finished", "failed", "canceled"}, 600)
            waits.append(time.perf_counter() - t0)
            if done["status"] != "finished":
                print(f"the other owner's job ended {done['status']}")
        print(f"the other owner's 32x32 job, {repeat} times one after another "
              f"{settle_s:g} s into the backlog: submission to finished median "
              f"{statistics.median(waits):.2f} s, slowest {max(waits):.2f} s")
        target = ids[len(ids) // 2]
        t0 = time.perf_counter()
        answer = owner.post(f"/v1/jobs/{target}/cancel")
        rec = _until(owner, target, {"canceled", "failed", "finished"}, 60)
        cancel_s = time.perf_counter() - t0
        print(f"cancel of one series: answered {answer.status_code} in "
              f"{answer.elapsed.total_seconds() * 1000:.0f} ms, {rec['status']} after "
              f"{cancel_s:.2f} s; its entries left on the queues: "
              f"{_left_on_queues(r, ns, target)}")
        slow = r.slowlog_get(128)
        worst = max((e["duration"] for e in slow), default=0)
        print(f"Redis commands over 5 ms meanwhile: {len(slow)}, slowest {worst / 1000:.1f} ms")
        progress = [owner.get(f"/v1/jobs/{j}").json()["series"]["images_done"] for j in ids]
        print(f"images rendered of the backlog meanwhile: {sum(progress)}")
        for job_id in ids:
            owner.post(f"/v1/jobs/{job_id}/cancel")
        for job_id in ids:
            _until(owner, job_id, {"canceled", "failed", "finished"}, 120)
        left = sum(_left_on_queues(r, ns, j) for j in ids)
        print(f"after canceling every series: {left} entries left on the queues")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--images", type=int, default=3600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds the backlog renders before the other owner's first job")
    ap.add_argument("--repeat", type=int, default=5, help="the other owner's jobs, one by one")
    args = ap.parse_args(argv)
    run(args.series, args.images, args.workers, args.settle, args.repeat)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
