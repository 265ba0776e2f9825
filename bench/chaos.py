"""Chaos run: many clients submit while workers, the API and Redis are killed; nothing may be lost.

    python -m bench.chaos [--jobs 500] [--clients 16] [--workers 3] [--series 3]

A deployment of its own (redis-server with its append-only file, fsync on every write; `bragg api`;
CPU workers) in a temporary folder. 16 client threads submit the jobs with client.api_client (an
Idempotency-Key each, retried through outages). Meanwhile a worker (a busy one where there is one,
never the last live one) is SIGKILLed every 10 s (and a new one started), the API is SIGKILLed twice (and started again 2 s later) and Redis is SIGKILLed
once (and started again 5 s later on the same port and folder). Another owner submits ``--series``
series of one-image children meanwhile and cancels the first. Then every job must end
``finished`` and every job folder must verify against its sha256.txt; the series must end
``finished`` with every image (every child's folder verifying), the first ``canceled``, none of
their entries left on a queue.

Prints: jobs lost (accepted, then no record), stuck (still queued or running once no job has
ended for 120 s), failed, duplicates (one submission, several jobs), recovery time after a worker
kill (from SIGKILL to the victim's job running again or ended, p50/max), submit latency p50/p99.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis

from bench.host import describe
from jobs import queue as rq_queue
from client.api_client import BraggClient, ClientError
from bragg.stack import _child_setup, free_port  # children get SIGTERM should this run die

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "chaos-token"
#: the owner of the series: another owner, so that fair share runs through the chaos too
SERIES_TOKEN = "chaos-series-token"
CONFIG = {
    "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5,
                "mosaic_spread_deg": 0.5, "mosaic_domains": 10},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 6.2},
    "detector": {"distance_mm": 100, "fast_pixels": 64, "slow_pixels": 64},
}


def _wait(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


class Deployment:
    def __init__(self, workers: int):
        self.dir = Path(tempfile.mkdtemp(prefix="bragg-chaos-"))
        self.rport, self.port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.redis_url = f"redis://127.0.0.1:{self.rport}/0"
        (self.dir / "redis").mkdir()
        self.env = dict(os.environ, REDIS_URL=self.redis_url, BRAGG_DATA_DIR=str(self.dir / "data"),
                        BRAGG_TOKENS=f"chaos:{TOKEN},serial:{SERIES_TOKEN}",
                        BRAGG_LOG_LEVEL="info", BRAGG_MAX_QUEUED_JOBS_PER_OWNER="100000",
                        # one image a child: a series' children are made one by one (ADMIT)
                        BRAGG_SERIES_CHILD_EVALUATIONS="1", PYTHONPATH=str(ROOT),
                        PYTHONUNBUFFERED="1")
        self.redis = self.api = None
        self.workers: dict[str, subprocess.Popen] = {}
        self._n = 0
        self.start_redis()
        self.start_api()
        for _ in range(workers):
            self.start_worker()
        _wait(lambda: len(httpx.get(self.base_url + "/readyz").json().get("workers", []))
              >= workers, 180, "workers")

    def _spawn(self, args, log) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "bragg.main", *args], cwd=self.dir,
                                env=self.env, stdout=open(self.dir / f"{log}.log", "ab"),
                                stderr=subprocess.STDOUT, preexec_fn=_child_setup)

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.rport), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.dir / "redis")],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT,
            preexec_fn=_child_setup)
        _wait(redis.Redis.from_url(self.redis_url).ping, 30, "redis")

    def start_api(self) -> None:
        self.api = self._spawn(["api", "--port", str(self.port)], "api")
        _wait(lambda: httpx.get(self.base_url + "/healthz").status_code == 200, 60, "api")

    def start_worker(self) -> str:
        self._n += 1
        name = f"chaos{self._n}"
        self.workers[name] = self._spawn(["worker", "--device", "cpu", "--name", name], name)
        return name

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def close(self, keep: bool = False) -> None:
        for p in [*self.workers.values(), self.api, self.redis]:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in [*self.workers.values(), self.api, self.redis]:
            if p is not None:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        if keep:
            print(f"deployment folder (logs, data) kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def submitter(dep: Deployment, bodies: list, out: dict, lat: list, lock) -> None:
    c = BraggClient(dep.base_url, token=TOKEN, timeout=30)
    for i, body in bodies:
        t0 = time.perf_counter()
        try:
            job = c.submit(body, retries=12)
        except ClientError as exc:
            with lock:
                out[i] = f"error: {exc}"
            continue
        with lock:
            lat.append(time.perf_counter() - t0)
            out[i] = job["id"]


def series_owner(dep: Deployment, count: int, images: int, cancel_at: float, out: dict,
                 canceled: list) -> None:
    """Another owner submits ``count`` series of ``images`` images and cancels the first one
    ``cancel_at`` s later (each request retried through the outages); ``canceled`` gets whether
    the cancel came before the series had finished."""
    c = BraggClient(dep.base_url, token=SERIES_TOKEN, timeout=30)
    t0 = time.monotonic()
    for i in range(count):
        body = {"config": dict(CONFIG, noise={"seed": 1000 + i},
                               scan={"osc_range_deg": 0.1, "images": images}),
                "label": f"series-{i}", "outputs": ["float"]}
        try:
            out[i] = c.submit(body, retries=12)["id"]
        except ClientError as exc:
            out[i] = f"error: {exc}"
    if count and not out[0].startswith("error"):
        time.sleep(max(0.0, cancel_at - (time.monotonic() - t0)))
        for _ in range(60):
            try:
                answer = httpx.post(f"{dep.base_url}/v1/jobs/{out[0]}/cancel", timeout=10,
                                    headers={"Authorization": f"Bearer {SERIES_TOKEN}"})
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code < 500:
                # 409: it had finished already (a short series on a quiet machine)
                canceled.append(answer.status_code != 409)
                break
            time.sleep(1)  # the API or Redis is down: again


def check_series(dep: Deployment, r: redis.Redis, ids: dict,
                 canceled: list) -> tuple[list[str], int]:
    """Problems of the series (the first one canceled unless it had finished before the cancel,
    the others finished with every image,
    every child folder verifying, none of their entries left on a queue), and their images."""
    problems, images = [], 0
    queued = " ".join(m for d in rq_queue.DEVICES
                      for m in rq_queue.waiting(r, rq_queue.queue_name("bragg", d)))
    for i, job_id in ids.items():
        if job_id.startswith("error"):
            problems.append(f"series {i} refused: {job_id}")
            continue
        rec = {k.decode(): v.decode() for k, v in r.hgetall(f"bragg:job:{job_id}").items()}
        want = "canceled" if i == 0 and canceled[:1] != [False] else "finished"
        if rec.get("status") != want:
            problems.append(f"series {i} ({job_id}) {rec.get('status')}, not {want}")
        if i and rec.get("images_done") != rec.get("images"):
            problems.append(f"series {i}: {rec.get('images_done')} of {rec.get('images')} images")
        images += int(rec.get("images_done") or 0)
        for child in r.zrange(f"bragg:job:{job_id}:children", 0, -1):
            cst = r.hget(f"bragg:job:{child.decode()}", "status")
            if cst == b"finished" and not verify_folder(dep.dir / "data" / "jobs" / child.decode()):
                problems.append(f"series {i}: child {child.decode()} does not verify")
        if job_id in queued:
            problems.append(f"series {i}: entries left on a queue")
    return problems, images


def chaos(dep: Deployment, done: threading.Event, recoveries: list, events: list,
          worker_every: float, api_at: tuple, redis_at: float) -> None:
    r = redis.Redis.from_url(dep.redis_url, socket_timeout=5)
    t0 = time.monotonic()
    api_left, redis_done, last_worker_kill = list(api_at), False, t0
    watching: list[tuple[str, str, float]] = []  # (job id, victim, killed at)
    while not done.is_set() or watching:
        now = time.monotonic() - t0
        if not done.is_set() and time.monotonic() - last_worker_kill >= worker_every:
            last_worker_kill = time.monotonic()
            live = []  # started workers (a new one needs a while to import torch and warm up)
            try:
                for name in dep.workers:
                    w = r.hgetall(f"bragg:worker:{name}")
                    if w:
                        live.append((name, w.get(b"job", b"").decode()))
            except redis.RedisError:
                pass
            running = [(n, j) for n, j in live if j] or live
            if len(live) >= 2:  # never the last live worker: the run would only stall
                name, job_id = random.choice(running)
                dep.kill(dep.workers.pop(name))
                events.append(f"{now:6.1f} s: SIGKILL worker {name} (job {job_id[:8] or '-'})")
                if job_id:
                    watching.append((job_id, name, time.monotonic()))
                dep.start_worker()
        if api_left and now >= api_left[0]:
            api_left.pop(0)
            dep.kill(dep.api)
            events.append(f"{now:6.1f} s: SIGKILL api")
            time.sleep(2)
            dep.start_api()
            events.append(f"{time.monotonic() - t0:6.1f} s: api started again")
        if not redis_done and now >= redis_at:
            redis_done = True
            dep.kill(dep.redis)
            events.append(f"{now:6.1f} s: SIGKILL redis")
            time.sleep(5)
            dep.start_redis()
            events.append(f"{time.monotonic() - t0:6.1f} s: redis started again")
        still = []
        for job_id, victim, t_kill in watching:
            try:
                st, worker = r.hmget(f"bragg:job:{job_id}", "status", "worker")
            except redis.RedisError:
                still.append((job_id, victim, t_kill))
                continue
            moved = st in (b"finished", b"failed", b"canceled") or (
                st == b"running" and worker and worker.decode() != victim)
            if moved:
                recoveries.append(time.monotonic() - t_kill)
            elif time.monotonic() - t_kill < 300:
                still.append((job_id, victim, t_kill))
        watching = still
        time.sleep(0.1)


def verify_folder(folder: Path) -> bool:
    listing = folder / "sha256.txt"
    if not listing.is_file():
        return False
    for line in listing.read_text().splitlines():
        digest, _, name = line.partition("  ")
        p = folder / name
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            return False
    return True


def served_as_recorded(dep: "Deployment", finished: list[str],
                       sample: int = 50) -> tuple[int, int, str]:
    """Downloads through the API of ``sample`` finished jobs' float images: how many match the
    folder's sha256.txt; then one altered on disk: what the API answers (never its bytes)."""
    good = 0
    picked = finished[:sample]
    with httpx.Client(base_url=dep.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for j in picked:
            listing = (dep.dir / "data" / "jobs" / j / "sha256.txt").read_text()
            want = next(line.partition("  ")[0] for line in listing.splitlines()
                        if line.endswith("  floatimage.bin"))
            r = c.get(f"/v1/jobs/{j}/artifacts/floatimage.bin")
            good += r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == want
        if not picked:
            return 0, 0, "no finished job"
        path = dep.dir / "data" / "jobs" / picked[0] / "floatimage.bin"
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
        r = c.get(f"/v1/jobs/{picked[0]}/artifacts/floatimage.bin")
        altered = f"{r.status_code} {r.json().get('detail', '')}" if r.status_code != 200 \
            else "200: SERVED"
    return good, len(picked), altered


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--worker-kill-every", type=float, default=10.0)
    ap.add_argument("--api-kills-at", type=float, nargs="*", default=[15.0, 40.0])
    ap.add_argument("--redis-kill-at", type=float, default=28.0)
    ap.add_argument("--series", type=int, default=3,
                    help="series another owner submits (the first canceled at --cancel-at s)")
    ap.add_argument("--series-images", type=int, default=30)
    ap.add_argument("--cancel-at", type=float, default=20.0)
    ap.add_argument("--settle-s", type=float, default=120.0,
                    help="a job still open when no job has ended for this long is stuck")
    ap.add_argument("--keep", action="store_true", help="keep the deployment's folder (logs)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too

    dep = Deployment(args.workers)
    t_start = time.monotonic()
    ok = False
    try:
        bodies = [(i, {"config": dict(CONFIG, noise={"seed": i + 1}), "label": f"chaos-{i}"})
                  for i in range(args.jobs)]
        out: dict[int, str] = {}
        lat: list[float] = []
        lock = threading.Lock()
        done = threading.Event()
        recoveries: list[float] = []
        events: list[str] = []
        chaos_t = threading.Thread(target=chaos, args=(dep, done, recoveries, events,
                                                       args.worker_kill_every,
                                                       tuple(args.api_kills_at),
                                                       args.redis_kill_at), daemon=True)
        chaos_t.start()
        threads = [threading.Thread(target=submitter,
                                    args=(dep, bodies[k::args.clients], out, lat, lock),
                                    daemon=True)
                   for k in range(args.clients)]
        series_ids: dict[int, str] = {}
        series_canceled: list[bool] = []
        threads.append(threading.Thread(target=series_owner, daemon=True, args=(
            dep, args.series, args.series_images, args.cancel_at, series_ids, series_canceled)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_submitted = time.monotonic()
        # keep the chaos going until at least the Redis kill and both API kills have happened
        while time.monotonic() - t_start < max([args.redis_kill_at, *args.api_kills_at]) + 8:
            time.sleep(0.5)
        accepted = {i: j for i, j in out.items() if not j.startswith("error")}
        rejected = {i: j for i, j in out.items() if j.startswith("error")}
        r = redis.Redis.from_url(dep.redis_url)

        def statuses():
            pipe = r.pipeline(transaction=False)
            watched = [*accepted.values(),
                       *(j for j in series_ids.values() if not j.startswith("error"))]
            for j in watched:
                pipe.hget(f"bragg:job:{j}", "status")
            return dict(zip(watched, pipe.execute()))

        # wait while jobs keep ending; a job still open once none has ended for settle_s is stuck
        last_change, last_open = time.monotonic(), None
        while time.monotonic() - last_change < args.settle_s:
            st = statuses()
            open_now = sum(v not in (b"finished", b"failed", b"canceled") for v in st.values())
            if open_now == 0:
                break
            if open_now != last_open:
                last_open, last_change = open_now, time.monotonic()
            time.sleep(1)
        st = statuses()
        t_end = time.monotonic()
        series_problems, series_images = check_series(dep, r, series_ids, series_canceled)
        st = {j: v for j, v in st.items() if j in set(accepted.values())}
        lost = [j for j, v in st.items() if v is None]
        stuck = [j for j, v in st.items() if v in (b"queued", b"running")]
        failed = [j for j, v in st.items() if v in (b"failed", b"canceled")]
        finished = [j for j, v in st.items() if v == b"finished"]
        bad = [j for j in finished if not verify_folder(dep.dir / "data" / "jobs" / j)]
        served, sampled, altered = served_as_recorded(dep, finished)
        labels = [r.hget(f"bragg:job:{m.decode()}", "label")
                  for m in r.zrange("bragg:owner:chaos:jobs", 0, -1)]
        duplicates = len(labels) - len(set(labels))
        # only now: processes the chaos thread (re)started get SIGTERM when it ends
        done.set()
        chaos_t.join(60)
        print(f"machine: {describe()}")
        print(f"{args.jobs} jobs (64x64, 10 mosaic domains) from {args.clients} clients, "
              f"{args.workers} CPU workers; all submitted in {t_submitted - t_start:.1f} s, "
              f"all ended {t_end - t_start:.1f} s after the start")
        for e in events:
            print("  " + e)
        print(f"accepted {len(accepted)}, refused {len(rejected)}, finished {len(finished)}, "
              f"failed/canceled {len(failed)}")
        print(f"lost {len(lost)}, stuck {len(stuck)}, sha256.txt not verifying {len(bad)}, "
              f"duplicate jobs {duplicates}")
        print(f"downloads as recorded: {served} of {sampled}; an artifact altered on disk: "
              f"{altered}")
        if recoveries:
            print(f"recovery after a worker SIGKILL ({len(recoveries)} busy kills): p50 "
                  f"{statistics.median(recoveries):.1f} s, max {max(recoveries):.1f} s")
        print(f"submit latency (incl. retries through outages): p50 {pct(lat, 0.5) * 1e3:.0f} ms, "
              f"p99 {pct(lat, 0.99) * 1e3:.0f} ms, max {max(lat) * 1e3:.0f} ms")
        print(f"series of another owner: {args.series} of {args.series_images} images, the "
              f"first canceled at {args.cancel_at:g} s: {series_images} images finished; "
              f"problems: {len(series_problems)}")
        for line in series_problems[:10]:
            print("  " + line)
        for i, e in list(rejected.items())[:5]:
            print(f"  refused {i}: {e}")
        ok = not (lost or stuck or bad or rejected or failed or duplicates or served != sampled
                  or altered.startswith("200") or series_problems)
        for j in stuck[:5]:
            print(f"  stuck {j}: {r.hgetall(f'bragg:job:{j}')}")
        return 0 if ok else 1
    finally:
        dep.close(keep=args.keep or not ok)


if __name__ == "__main__":
    raise SystemExit(main())
