"""Small client helpers shared by the service tests."""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path

import httpx

from tests.golden import GOLDEN

TERMINAL = ("finished", "failed", "canceled")

#: a cubic crystal with 20 mosaic domains x 10 phi steps x 4 subpixels on 128 x 128 pixels:
#: 13 M evaluations (see long_args for jobs of a given duration)
LONG_ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "1",
             "-N", "5", "-distance", "100", "-detpixels", "128", "-mosaic", "0.5",
             "-mosaic_domains", "20", "-phisteps", "10", "-osc", "1", "-oversample", "2"]


@functools.lru_cache(maxsize=1)
def _evaluations_per_second() -> float:
    """This machine's render speed for LONG_ARGS-like jobs, measured in this process."""
    from sim_core.nanobragg_args import parse_nanobragg_args
    from sim_core.simulate import simulate
    probe = parse_nanobragg_args(with_flag(LONG_ARGS, "-detpixels", 64)).config
    best = 0.0
    for _ in range(3):
        r = simulate(probe)
        best = max(best, r.evaluations / r.elapsed_s)
    return best


def with_flag(args: list[str], flag: str, value) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = str(value)
    return out


def long_args(seconds: float) -> list[str]:
    """LONG_ARGS with as many phi steps as make a render of about ``seconds`` on a CPU worker of
    this machine (cancel, SIGKILL and progress tests need a job that is still running when they
    act, whatever the engine's speed)."""
    per_step = 128 * 128 * 4 * 20
    steps = int(min(4000, max(10, _evaluations_per_second() * seconds / per_step)))
    return with_flag(LONG_ARGS, "-phisteps", steps)
#: a small cubic job (64 x 64 pixels, one evaluation each)
SMALL_CONFIG = {
    "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
    "structure_factors": {"default_F": 100},
    "beam": {"wavelength_A": 6.2},
    "detector": {"distance_mm": 100, "fast_pixels": 64, "slow_pixels": 64},
}


def upload(client: httpx.Client, path: Path, kind: str, name: str | None = None) -> dict:
    r = client.post("/v1/files", data={"kind": kind},
                    files={"file": (name or path.name, path.read_bytes())})
    assert r.status_code == 201, r.text
    return r.json()


def submit(client: httpx.Client, body: dict) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    assert int(r.headers["retry-after"]) >= 1
    return r.json()


def get(client: httpx.Client, job_id: str) -> dict:
    r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_status(client: httpx.Client, job_id: str, statuses=TERMINAL, timeout: float = 60,
                interval: float = 0.05, pred=None) -> dict:
    deadline = time.monotonic() + timeout
    rec = None
    while time.monotonic() < deadline:
        rec = get(client, job_id)
        if rec["status"] in statuses and (pred is None or pred(rec)):
            return rec
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} did not reach {statuses} in {timeout} s: {rec}")


def download_all(client: httpx.Client, rec: dict) -> dict[str, bytes]:
    out = {}
    for a in rec["artifacts"]:
        r = client.get(a["url"])
        assert r.status_code == 200, (a["name"], r.text)
        assert r.headers["etag"] == f'"{a["sha256"]}"'
        assert hashlib.sha256(r.content).hexdigest() == a["sha256"]
        assert len(r.content) == a["size"]
        out[a["name"]] = r.content
    return out


def golden(name: str) -> Path:
    return GOLDEN / name
