"""A throw-away service deployment for benchmarks: redis-server, the API and N workers on free
ports in a temporary folder (the same processes an operator starts)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.host import describe

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


class Stack:
    def __init__(self, workers: int = 1, api_workers: int = 1, env: dict | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="bragg-bench-"))
        self.procs: list[subprocess.Popen] = []
        rport, self.port = _free_port(), _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.procs.append(subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(rport), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL))
        self.redis_url = f"redis://127.0.0.1:{rport}/0"
        _wait(redis.Redis.from_url(self.redis_url).ping, 10, "redis")
        self.env = dict(os.environ, REDIS_URL=self.redis_url, BRAGG_DATA_DIR=str(self.dir / "data"),
                        BRAGG_TOKENS=f"bench:{TOKEN}", BRAGG_LOG_LEVEL="warning",
                        PYTHONPATH=str(ROOT))
        self.env.update(env or {})  # a bench's own settings win (BRAGG_TOKENS too)
        try:
            self._spawn(["api", "--port", str(self.port), "--workers", str(api_workers)], "api")
            _wait(lambda: httpx.get(self.base_url + "/healthz").status_code == 200, 60, "api")
            for i in range(workers):
                self._spawn(["worker", "--device", "cpu", "--name", f"bench{i}"], f"worker{i}")
            _wait(lambda: len(httpx.get(self.base_url + "/readyz").json().get("workers", []))
                  >= workers, 120, "workers")
        except BaseException:
            self.close()  # no redis-server or worker left behind
            raise

    def wait_kernels(self, timeout: float = 600) -> None:
        """Until no worker is compiling its kernels in the background (``kernels`` of /readyz)."""
        _wait(lambda: all(w.get("kernels") != "compiling" for w in
                          httpx.get(self.base_url + "/readyz").json().get("workers", [])),
              timeout, "the workers' kernels")

    def _spawn(self, args, log):
        self.procs.append(subprocess.Popen([sys.executable, "-m", "bragg.main", *args],
                                           cwd=self.dir, env=self.env,
                                           stdout=open(self.dir / f"{log}.log", "wb"),
                                           stderr=subprocess.STDOUT))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=60)

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def machine() -> str:
    """The processor, its vector extension, the CPUs, the load and Python (bench.host)."""
    return describe()
