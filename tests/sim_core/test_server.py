"""The render server behind ``nanobragg``: started by hand or by the first command, serving the
same files and output as an in-process run, one server for commands started together, and commands
that render themselves while it compiles. Every test uses its own socket folder and stops the
server it started."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sim_core import server as srv
from tests.golden import load_case

BIN = Path(sys.executable).parent
#: a render that takes a while, for the interruption test
LONG = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "10", "-N", "8",
        "-detpixels", "512", "-mosaic", "1", "-mosaic_domains", "200", "-phisteps", "20",
        "-osc", "1", "-oversample", "2", "-floatfile", "f.bin", "-nonoise"]
SMALL = ["-cell", "50", "-default_F", "1", "-detpixels", "16", "-nonoise"]


def nanobragg(args, cwd, env, **kw):
    return subprocess.run([str(BIN / "nanobragg"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


def server_cmd(command, env, **kw):
    return subprocess.run([str(BIN / "nanobragg-server"), command], env=env, capture_output=True,
                          text=True, **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(env) -> tuple[int, str] | None:
    """(pid, kernels) of the server of ``env``'s folder, or None."""
    out = server_cmd("status", env).stdout
    if not out.startswith("running"):
        return None
    pid, kernels = out.split("(pid ")[1].split(")")[0].split(", kernels ")
    return int(pid), kernels


def wait_until(predicate, what, deadline_s=240):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline_s} s: {what}")


def stop(env):
    found = status(env)
    server_cmd("stop", env)
    if found:
        wait_until(lambda: not alive(found[0]), "the server exits")


@pytest.fixture
def auto_env(tmp_path):
    """The environment of a user whose commands start a server (compilation off: the tests start
    many processes on few cores); the server is stopped afterwards."""
    env = dict(os.environ, NANOBRAGG_SERVER="auto", NANOBRAGG_SERVER_DIR=str(tmp_path / "srv"),
               BRAGG_COMPILE="off")
    yield env
    stop(env)


@pytest.fixture
def server(auto_env):
    start = server_cmd("start", dict(auto_env, NANOBRAGG_SERVER="off"), timeout=300)
    assert start.returncode == 0, start.stderr
    assert "kernels off" in start.stdout
    return auto_env


def test_server_renders_the_same_files(tmp_path, server):
    case = load_case("dmin_roi")
    local = case.copy_to(tmp_path / "local")
    served = case.copy_to(tmp_path / "served")
    ref = nanobragg(case.args, local, dict(server, NANOBRAGG_SERVER="off"))
    assert ref.returncode == 0
    res = nanobragg(case.args, served, server)
    assert res.returncode == 0, res.stderr
    assert "served a command" in (tmp_path / "srv" / "server.log").read_text()
    for name in ("float.bin", "intimage.img", "image.pgm"):
        assert (served / name).read_bytes() == (local / name).read_bytes(), name
    drop = lambda text: [ln for ln in text.splitlines() if not ln.startswith("rendered on")]  # noqa
    assert drop(res.stdout) == drop(ref.stdout) and res.stderr == ref.stderr
    bad = nanobragg(["-nonsense"], served, server)
    bad_here = nanobragg(["-nonsense"], served, dict(server, NANOBRAGG_SERVER="off"))
    assert bad.returncode == bad_here.returncode == 2
    assert bad.stderr == bad_here.stderr and "unknown flag -nonsense" in bad.stderr


def test_interrupting_a_served_render_cancels_it(tmp_path, server):
    log = tmp_path / "srv" / "server.log"
    proc = subprocess.Popen([str(BIN / "nanobragg"), *LONG], cwd=tmp_path, env=server,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # interrupt once the server has the command (its progress lines come after 2 s)
    wait_until(lambda: proc.poll() is not None or "%" in (proc.stderr.readline() or ""),
               "the render's progress")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert not (tmp_path / "f.bin").exists()
    # the server survived and serves the next command
    again = nanobragg(SMALL, tmp_path, server)
    assert again.returncode == 0, again.stderr
    assert log.read_text().count("served a command") == 2


def test_first_command_starts_a_server_and_later_ones_use_it(tmp_path, auto_env):
    case = load_case("cubic_default_F")
    args = case.args + ["-seed", "7"]
    first = case.copy_to(tmp_path / "first")
    res = nanobragg(args, first, auto_env)
    assert res.returncode == 0, res.stderr
    pid, _ = wait_until(lambda: (s := status(auto_env)) and s[1] == "off" and s,
                        "the server started by the first command is ready")
    later = case.copy_to(tmp_path / "later")
    res2 = nanobragg(args, later, auto_env)
    assert res2.returncode == 0, res2.stderr
    log = (tmp_path / "srv" / "server.log").read_text()
    assert log.count("served a command") == 1, log  # the first rendered itself, the second not
    for name in sorted(p.name for p in first.iterdir()):
        assert (later / name).read_bytes() == (first / name).read_bytes(), name
    assert status(auto_env)[0] == pid


def test_commands_started_together_start_one_server(tmp_path, auto_env):
    procs = [subprocess.Popen([str(BIN / "nanobragg"), *SMALL], cwd=tmp_path, env=auto_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    wait_until(lambda: (s := status(auto_env)) and s[1] == "off", "a server is ready")
    log = tmp_path / "srv" / "server.log"
    # every process that lost the lock has said so and gone; one warmed up
    text = wait_until(lambda: (t := log.read_text()).count("kernels off") == 1 and t,
                      "the server's warm-up line")
    assert text.count("kernels ") == 1, text


def test_off_neither_uses_nor_starts_a_server(tmp_path, auto_env):
    env = dict(auto_env, NANOBRAGG_SERVER="off")
    assert nanobragg(SMALL, tmp_path, env).returncode == 0
    assert not (tmp_path / "srv").exists()


def _exchange(state: str, go: bool | None):
    """What a client hears from ``_serve_one`` with the kernels in ``state``."""
    a, b = socket.socketpair()

    def serve():
        with b:  # the server closes the connection after a request, as serve() does
            srv._serve_one(b, lambda: state)

    t = threading.Thread(target=serve)
    t.start()
    with a:
        srv._send(a, {"argv": SMALL, "cwd": "/nonexistent"})
        reader = a.makefile("r")
        first = json.loads(reader.readline())
        if go is not None:
            srv._send(a, {"go": go})
        a.shutdown(socket.SHUT_WR)
        rest = reader.read()
    t.join(timeout=60)
    return first, rest


def test_a_compiling_server_declines_and_a_client_that_hangs_up_gets_nothing():
    assert _exchange("compiling", None) == ({"kernels": "compiling"}, "")
    assert _exchange("starting", None) == ({"kernels": "starting"}, "")
    # a ready server waits for the client's go; a client that left gets nothing rendered
    assert _exchange("ready", None) == ({"kernels": "ready"}, "")
    assert _exchange("ready", False) == ({"kernels": "ready"}, "")
