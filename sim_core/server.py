"""``nanobragg-server``: a warm render process for scripts that run ``nanobragg`` many times.

Importing PyTorch takes most of a second, longer than a small render. A parameter sweep of a
thousand ``nanobragg`` commands pays that a thousand times. The server imports everything once and
keeps it (and numba's compiled generators) warm; while it runs, ``nanobragg`` hands its command line
to it over a Unix socket and prints what it sends back. It is opt-in:

    nanobragg-server start          # in the background; stops itself after 10 idle minutes
    nanobragg ...                   # now served by it (same files, output and exit status)
    nanobragg-server status | stop

Each request runs ``sim_core.cli.run`` in the server with the client's working directory, one at a
time (the working directory is per process). Standard output and error stream back as they are
written; closing the client (Ctrl-C) cancels the render at its next chunk. The socket lives in a
directory only the user can open, and the server also checks the peer's uid.
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

IDLE_SECONDS = 600


def socket_path() -> Path:
    base = os.environ.get("NANOBRAGG_SERVER_DIR")
    if base:
        root = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        root = Path(os.environ["XDG_RUNTIME_DIR"]) / "nanobragg"
    else:
        root = Path("/tmp") / f"nanobragg-{os.getuid()}"
    return root / "server.sock"


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


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _serve_one(conn: socket.socket) -> None:
    from .cli import main as cli_main

    lock = threading.Lock()
    reader = conn.makefile("r")
    request = json.loads(reader.readline() or "{}")
    if request.get("ping"):
        _send(conn, {"pong": os.getpid()})
        return
    argv = [str(a) for a in request.get("argv", [])]
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
    old = os.getcwd()
    try:
        os.chdir(request.get("cwd") or "/")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(argv, cancel=gone.is_set)
    except Exception as exc:  # a bug must not kill the server; report it to this client
        err.write(f"nanobragg-server: internal error: {exc!r}\n")
        code = 1
    finally:
        os.chdir(old)
    with contextlib.suppress(OSError):
        _send(conn, {"exit": code}, lock)


def serve(idle_seconds: float = IDLE_SECONDS) -> None:
    """Run the server in this process until it has been idle for ``idle_seconds``."""
    # warm everything a render needs before accepting requests
    from . import cli, kernels, outputs, simulate  # noqa: F401

    kernels.warm_up("cpu")  # compile the fused kernels before taking requests
    from .noise import poisson_noise
    import numpy as np

    poisson_noise(np.ones((4, 4), np.float32), 1)
    path = socket_path()
    _secure_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    os.chmod(path, 0o600)
    srv.listen(16)
    srv.settimeout(1.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last = time.monotonic()
    try:
        while not stop.is_set() and time.monotonic() - last < idle_seconds:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with conn:
                if _peer_uid(conn) != os.getuid():
                    continue
                conn.settimeout(None)
                _serve_one(conn)
            last = time.monotonic()
    finally:
        srv.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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


def ping() -> int | None:
    s = connect()
    if s is None:
        return None
    with s:
        _send(s, {"ping": True})
        line = s.makefile("r").readline()
    try:
        return int(json.loads(line)["pong"])
    except (ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nanobragg-server", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status", "run"],
                    help="start in the background, stop, report, or run in the foreground")
    ap.add_argument("--idle", type=float, default=IDLE_SECONDS,
                    help=f"seconds without requests before it exits (default {IDLE_SECONDS})")
    a = ap.parse_args(argv)
    pid = ping()
    if a.command == "status":
        print(f"running (pid {pid}) at {socket_path()}" if pid else "not running")
        return 0 if pid else 1
    if a.command == "stop":
        if pid:
            os.kill(pid, signal.SIGTERM)
            print(f"stopped (pid {pid})")
        else:
            print("not running")
        return 0
    if pid:
        print(f"already running (pid {pid})")
        return 0
    if a.command == "run":
        serve(a.idle)
        return 0
    proc = subprocess.Popen([sys.executable, "-m", "sim_core.server", "run", "--idle", str(a.idle)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(6000):  # compiling the kernels the first time on a machine takes a while
        if ping():
            print(f"started (pid {proc.pid}) at {socket_path()}")
            return 0
        if proc.poll() is not None:
            print("nanobragg-server: the server exited during start-up", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("nanobragg-server: no answer after 600 s", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
