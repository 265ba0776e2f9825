"""The Docker files, checked without a Docker engine: docker-compose.yml names the services, ports,
volumes, health checks and GPU reservation it must, and runs valid ``bragg`` commands; the
Dockerfile's images run as a user, and install the project the way the README shows (PyTorch for
the hardware, then ``pip install .``). Where a ``docker compose`` client exists it parses the file too.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from bragg.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
README = (ROOT / "README.md").read_text()


def parse_dockerfile(text: str) -> dict[str, dict]:
    """Stage name -> {"from": image, "instructions": [(KEYWORD, args)]}, continuation lines joined;
    ARG defaults before the first FROM are substituted into the FROM lines."""
    text = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif word == "FROM":
            m = re.match(r"(\S+)\s+AS\s+(\S+)", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), g.group(0)), m.group(1))
            current = stages[m.group(2)] = {"from": image, "instructions": []}
        elif current is not None:
            current["instructions"].append((word, " ".join(rest.split())))
    return stages


STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())


def runs(stage: str) -> list[str]:
    return [a for w, a in STAGES[stage]["instructions"] if w == "RUN"]


def _cmd(stage: str) -> list[str]:
    import json
    cmds = [a for w, a in STAGES[stage]["instructions"] if w == "CMD"]
    return json.loads(cmds[-1])


# -- docker-compose.yml ------------------------------------------------------------------------------
def test_compose_names_its_services_and_volumes():
    assert set(SERVICES) == {"redis", "api", "worker", "worker-cpu"}
    assert set(COMPOSE["volumes"]) == {"redis-data", "artifacts"}


def test_redis_is_persistent_and_health_checked():
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    cmd = redis["command"]
    assert cmd[0] == "redis-server" and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_api_waits_for_healthy_redis_and_publishes_8000():
    api = SERVICES["api"]
    assert api["build"] == {"context": ".", "target": "api"}
    assert api["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert api["ports"] == ["${BRAGG_PORT:-8000}:8000"]  # host port 8000 unless BRAGG_PORT
    env = api["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0" and env["BRAGG_DATA_DIR"] == "/data"
    # listening on every interface in its container: tokens are required, not defaulted
    assert env["BRAGG_TOKENS"].startswith("${BRAGG_TOKENS:?")
    assert "artifacts:/data" in api["volumes"]


def test_worker_reserves_an_nvidia_gpu_and_shares_the_artifacts():
    w = SERVICES["worker"]
    assert w["build"] == {"context": ".", "target": "worker"}
    assert "profiles" not in w  # part of a plain `docker compose up`
    devices = w["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert w["command"][-2:] == ["--device", "cuda"]
    assert w["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "artifacts:/data" in w["volumes"] and w["environment"]["BRAGG_DATA_DIR"] == "/data"


def test_cpu_worker_is_a_profile_without_gpu():
    w = SERVICES["worker-cpu"]
    assert w["profiles"] == ["worker-cpu"]
    assert "deploy" not in w and w["build"]["target"] == "api"
    assert w["command"][-2:] == ["--device", "cpu"]
    assert "artifacts:/data" in w["volumes"]
    assert w["environment"]["REDIS_URL"] == SERVICES["api"]["environment"]["REDIS_URL"]


@pytest.mark.parametrize("service", ["api", "worker", "worker-cpu"])
def test_compose_commands_are_valid_bragg_commands(service):
    cmd = SERVICES[service]["command"]
    assert cmd[0] == "bragg"
    args = build_parser().parse_args(cmd[1:])
    assert args.command == ("api" if service == "api" else "worker")


def test_compose_config_parses_where_docker_compose_exists(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"],
                                        capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` client here (the YAML checks above still ran)")
    out = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config",
                          "-q"], capture_output=True, text=True,
                         env={"BRAGG_TOKENS": "a:b", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr


# -- Dockerfile ----------------------------------------------------------------------------------------
def test_dockerfile_has_the_two_targets():
    assert set(STAGES) == {"api", "worker"}
    assert STAGES["api"]["from"].startswith("python:3.1")
    base = STAGES["worker"]["from"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and base.endswith("-runtime")


@pytest.mark.parametrize("stage", ["api", "worker"])
def test_images_run_as_an_unprivileged_user(stage):
    users = [a for w, a in STAGES[stage]["instructions"] if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    # the user owns the shared data folder
    setup = " ".join(runs(stage))
    assert "useradd --uid 10001" in setup and f"chown {users[-1]}:" in setup
    envs = " ".join(a for w, a in STAGES[stage]["instructions"] if w == "ENV")
    assert "BRAGG_DATA_DIR=/data" in envs


def _readme_install_lines() -> list[str]:
    block = README.split("### Install by hand", 1)[1].split("```", 2)[1]
    return [line.split("#")[0].strip() for line in block.splitlines()
            if line.strip().startswith("pip install")]


def test_images_install_the_project_as_the_readme_does():
    torch_line, project_line = _readme_install_lines()
    torch_req = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                     ["dependencies"] if d.startswith("torch"))
    # the README's CPU PyTorch is the project's own range, from PyTorch's CPU wheels
    assert shlex.split(torch_line)[2] == torch_req
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line
    assert project_line == "pip install ."
    api, worker = runs("api"), runs("worker")
    assert torch_line in api
    assert any(r.startswith(project_line + " ") or r == project_line for r in api)
    # the CUDA image brings its own torch: the worker installs only the project
    assert any(r.startswith(project_line + " ") or r == project_line for r in worker)
    assert not any("torch" in r.split("&&")[0] for r in worker)


@pytest.mark.parametrize("stage", ["api", "worker"])
def test_images_copy_every_package_and_their_data(stage):
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = {src for w, a in STAGES[stage]["instructions"] if w == "COPY"
              for src in a.split()[:-1]}
    assert {"pyproject.toml", "README.md"} <= copied
    for pkg in packages:
        assert pkg.rstrip("*") in copied, pkg
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)
    assert not {"app", "sim_core", "worker", "README.md", "pyproject.toml"} & set(ignored)


@pytest.mark.parametrize("stage, command", [("api", "api"), ("worker", "worker")])
def test_image_commands_are_valid_bragg_commands(stage, command):
    cmd = _cmd(stage)
    assert cmd[0] == "bragg" and build_parser().parse_args(cmd[1:]).command == command
    if stage == "worker":
        assert cmd[-2:] == ["--device", "cuda"]
