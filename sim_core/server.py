"""``nanobragg-server``: the warm render process behind every ``nanobragg`` command.

Importing PyTorch takes most of a second, longer than a small render, and the fused kernels
(sim_core.kernels) take seconds to compile, so a cold process renders with the slower eager engine.
The server imports everything once, compiles the kernels and keeps them warm; ``nanobragg`` hands
its command line to it over a Unix socket and prints what it sends back (the same files, output and
exit status as an in-process run).

Nobody has to start it: the first ``nanobragg`` that finds no server starts one in the background
(``sim_core.launcher``) and renders its own command in-process; later commands go to the server as
soon as it reports its kernels ready. It stops itself after 10 idle minutes. By hand:

    nanobragg-server start          # in the background, returns once the kernels are compiled
    nanobragg-server status | stop
    NANOBRAGG_SERVER=off nanobragg ...   # never use (or start) a server

Each request runs ``sim_core.cli.run`` in the server with the client's working directory, one at a
time (the working directory is per process). Standard output and error stream back as they are
written; closing the client (Ctrl-C) cancels the render at its next chunk. A client that is not
taken within ``HANDOVER_WAIT_S`` (the server busy with another command) or that hears the kernels
are still compiling renders in its own process instead. The socket lives in a directory only the
user can open, the server also checks the peer's uid, and an exclusive lock on ``server.lock`` in
that directory, held for the server's life, makes sure that commands started together start one
server. The server keeps the environment of the command that started it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

IDLE_SECONDS = 600
#: how long a client waits for the server to take its command before rendering in-process
HANDOVER_WAIT_S = 2.0
#: kernel states in which the server renders (compiled, or there is nothing to compile)
SERVING = ("ready", "off", "failed")
#: nice increment of the thread that compiles the kernels (a command renders meanwhile)
WARM_UP_NICE = 5


def socket_path() -> Path:
    base = os.environ.get("NANOBRAGG_SERVER_DIR")
    if base:
        root = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        root = Path(os.environ["XDG_RUNTIME_DIR"]) / "nanobragg"
    else:
        root = Path("/tmp") / f"nanobragg-{os.getuid()}"
    return root / "server.sock"


def _lock_path() -> Path:
    return socket_path().parent / "server.lock"


def _take_lock(path: Path) -> int | None:
    """A descriptor holding the exclusive lock on ``path``, or None when another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _secure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path} must belong to you and be private (mode 700)")


class _Stream(io.TextIOBase):
    """A text stream that forwards everything written to the client as a JSON line."""

    def __init__(self, conn: socket.socket, fd: int, lock: threading.Lock):
        self.conn, self.fd, self.lock = conn, fd, lock
        self.broken = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if text and not self.broken:
            try:
                _send(self.conn, {"fd": self.fd, "data": text}, self.lock)
            except OSError:
                self.broken = True
        return len(text)


def _send(conn: socket.socket, message: dict, lock: threading.Lock | None = None) -> None:
    data = (json.dumps(message) + "\n").encode()
    if lock is None:
        conn.sendall(data)
    else:
        with lock:
            conn.sendall(data)


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of ``conn``."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def _serve_one(conn: socket.socket, state: Callable[[], str]) -> None:
    """One request: a ping, or a command line. The server first says its kernels' state; a client
    that goes on (``{"go": true}``) gets its command rendered, one that hangs up renders itself."""
    reader = conn.makefile("r")
    request = json.loads(reader.readline() or "{}")
    now = state()
    if request.get("ping"):
        _send(conn, {"pong": os.getpid(), "kernels": now})
        return
    _send(conn, {"kernels": now})
    if now not in SERVING:
        return
    go = reader.readline()
    if not go or not json.loads(go).get("go"):
        return  # the client stopped waiting and renders in its own process
    _render(conn, reader, [str(a) for a in request.get("argv", [])], request.get("cwd"))


def _render(conn: socket.socket, reader, argv: list[str], cwd: str | None) -> None:
    from .cli import main as cli_main

    lock = threading.Lock()
    gone = threading.Event()

    def watch():  # the client closes its end when it is interrupted
        try:
            while reader.readline():
                pass
        except (OSError, ValueError):
            pass
        gone.set()

    threading.Thread(target=watch, daemon=True).start()
    out, err = _Stream(conn, 1, lock), _Stream(conn, 2, lock)
    t0 = time.monotonic()
    try:
        os.chdir(cwd or "/")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(argv, cancel=gone.is_set)
    except Exception as exc:  # a bug must not kill the server; report it to this client
        err.write(f"nanobragg-server: internal error: {exc!r}\n")
        code = 1
    finally:
        os.chdir("/")  # not the command's folder, which may be deleted after it
    with contextlib.suppress(OSError):
        _send(conn, {"exit": code}, lock)
    from . import runtime
    print(f"nanobragg-server: served a command of {len(argv)} arguments in {cwd}: exit {code}, "
          f"{time.monotonic() - t0:.2f} s, {runtime.last_choice or 'default'} threads",
          file=sys.stderr, flush=True)
    runtime.last_choice = None


class _WarmUp:
    """Imports the simulator and compiles the kernels in a background thread of lower priority;
    ``state`` is what the server reports: ``starting`` (importing), ``compiling``, then the
    kernels' final state (``ready``, ``off`` or ``failed``)."""

    def __init__(self):
        self.state = "starting"
        self.seconds: float | None = None
        self.thread = threading.Thread(target=self._run, name="warm-up", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        with contextlib.suppress(OSError, AttributeError):
            # a command renders in its own process meanwhile: let it have the cores first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WARM_UP_NICE)
        try:
            from . import cli, kernels, outputs, simulate  # noqa: F401
            from .noise import poisson_noise
            import numpy as np

            self.state = "compiling"
            kernels.warm_up("cpu")
            poisson_noise(np.ones((4, 4), np.float32), 1)
            self.state = kernels.state()
        except Exception as exc:  # pragma: no cover - a broken install
            print(f"nanobragg-server: warm-up failed: {exc!r}", file=sys.stderr, flush=True)
            self.state = "failed"
        self.seconds = time.monotonic() - t0
        print(f"nanobragg-server: kernels {self.state} after {self.seconds:.1f} s",
              file=sys.stderr, flush=True)


def serve(idle_seconds: float = IDLE_SECONDS) -> bool:
    """Run the server in this process until it has been idle for ``idle_seconds``; False at once
    when another server holds this user's socket directory."""
    from . import runtime

    path = socket_path()
    _secure_dir(path.parent)
    lock_fd = _take_lock(_lock_path())
    if lock_fd is None:
        return False
    os.chdir("/")  # between commands the server stays out of every folder
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a server that died; the lock says no other one runs
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        os.chmod(path, 0o600)
        srv.listen(16)
        srv.settimeout(0.5)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        warm = _WarmUp()
        # each render's threads: the cores that other processes leave idle (since the last mark)
        meter = runtime.CpuMeter()
        runtime.set_thread_policy(
            lambda eager=False: runtime.choose_threads(meter.others_busy(), eager))
        last = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() - last < idle_seconds:
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    meter.mark()
                    continue
                with conn:
                    pid, uid = _peer(conn)
                    if uid != os.getuid():
                        continue
                    conn.settimeout(None)
                    # the client's own start-up is this command's work, not other processes'
                    meter.guest = pid
                    with contextlib.suppress(OSError, ValueError):
                        _serve_one(conn, lambda: warm.state)
                    meter.guest = None
                meter.mark()
                last = time.monotonic()
        finally:
            srv.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        os.close(lock_fd)
    return True


def start_in_background(idle_seconds: float = IDLE_SECONDS) -> subprocess.Popen | None:
    """Start a server detached from this process (its output goes to ``server.log`` beside the
    socket); None when one is already starting (it holds the lock). Two commands that call this at
    once may both start a process: the lock lets one of them serve, the other exits at once."""
    from .runtime import openmp_environment

    path = socket_path()
    _secure_dir(path.parent)
    probe = _take_lock(_lock_path())
    if probe is None:
        return None
    os.close(probe)
    env = dict(os.environ)
    openmp_environment(env)
    # the same sim_core as this process's, whatever the working directory; the server runs in /
    # (a command's folder may be deleted while it lives)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [here] + [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    with open(path.parent / "server.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "sim_core.server", "run", "--idle",
                                 str(idle_seconds)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd="/")


def hand_over(argv: list[str], start: bool = True) -> int | None:
    """Run ``argv`` in the server and relay its output; the exit status, or None when the command
    must run in this process (no server, kernels still compiling, or the server busy). With
    ``start``, a missing server is started in the background for the next commands."""
    conn = connect()
    if conn is None:
        if start:
            start_in_background()
        return None
    with conn:
        try:
            _send(conn, {"argv": argv, "cwd": os.getcwd()})
            conn.settimeout(HANDOVER_WAIT_S)
            reader = conn.makefile("r")
            first = reader.readline()
            if not first or json.loads(first).get("kernels") not in SERVING:
                return None
            conn.settimeout(None)
            _send(conn, {"go": True})
        except (OSError, ValueError):  # busy past the wait, or gone
            return None
        except KeyboardInterrupt:
            print("nanobragg: interrupted", file=sys.stderr)
            return 130
        return _relay(reader)


def _relay(reader) -> int:
    try:
        for line in reader:
            msg = json.loads(line)
            if "exit" in msg:
                return int(msg["exit"])
            stream = sys.stdout if msg.get("fd") == 1 else sys.stderr
            stream.write(msg.get("data", ""))
            stream.flush()
    except KeyboardInterrupt:
        print("nanobragg: interrupted", file=sys.stderr)
        return 130
    print("nanobragg: the server went away before finishing", file=sys.stderr)
    return 1


def connect(timeout: float = 0.5) -> socket.socket | None:
    """A connection to a running server, or None."""
    path = socket_path()
    if not path.exists():
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        return None
    s.settimeout(None)
    return s


def ping() -> tuple[int, str] | None:
    """The running server's pid and its kernels' state, or None."""
    s = connect()
    if s is None:
        return None
    try:
        with s:
            s.settimeout(HANDOVER_WAIT_S)
            _send(s, {"ping": True})
            msg = json.loads(s.makefile("r").readline())
        return int(msg["pong"]), str(msg.get("kernels", "ready"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    from .runtime import openmp_environment

    openmp_environment()  # before anything loads torch
    ap = argparse.ArgumentParser(prog="nanobragg-server", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status", "run"],
                    help="start in the background, stop, report, or run in the foreground")
    ap.add_argument("--idle", type=float, default=IDLE_SECONDS,
                    help=f"seconds without requests before it exits (default {IDLE_SECONDS})")
    a = ap.parse_args(argv)
    found = ping()
    if a.command == "status":
        if found:
            print(f"running (pid {found[0]}, kernels {found[1]}) at {socket_path()}")
        else:
            print("not running")
        return 0 if found else 1
    if a.command == "stop":
        if found:
            os.kill(found[0], signal.SIGTERM)
            print(f"stopped (pid {found[0]})")
        else:
            print("not running")
        return 0
    if a.command == "run":
        if not serve(a.idle):
            print("nanobragg-server: another server holds this directory", file=sys.stderr)
        return 0
    if found is None:
        proc = start_in_background(a.idle)
    else:
        proc = None
    deadline = time.monotonic() + 600  # compiling the first time on a machine takes a while
    while time.monotonic() < deadline:
        found = ping()
        if found and found[1] in SERVING:
            print(f"running (pid {found[0]}, kernels {found[1]}) at {socket_path()}")
            return 0
        if proc is not None and proc.poll() is not None and not found:
            print("nanobragg-server: the server exited during start-up (see "
                  f"{socket_path().parent / 'server.log'})", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("nanobragg-server: not ready after 600 s", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
