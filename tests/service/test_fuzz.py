"""Fuzzing: property-based submissions (hypothesis) generated from the API's own schema and from the
nanoBragg flag table, through the in-process app, and a bounded schemathesis run over the OpenAPI
document against the real API; no input may answer 5xx."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.schemas import JobSubmission
from tests.service.conftest import TOKENS
from tests.service.inprocess import inprocess_client

FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 100.0, 1e-320, 5e-324, 1e-300, 1e300, -1e300, 1.7e308,
          math.nan, math.inf, -math.inf]
INTS = [0, 1, -1, 2, 4096, 10**7, 2**31, 2**63, 2**64 + 1, 10**30, -(2**63)]
WORDS = ["0", "1", "-1", "0.5", "100", "4096", "1e-320", "1e-300", "1e300", "1e308", "1e30",
         "nan", "inf", "-inf", "abc", "", "P1.hkl", "A.mat", "random"]


def from_schema(schema: dict, defs: dict) -> st.SearchStrategy:
    """Values shaped by a JSON schema, with the numbers that break simulators."""
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].split("/")[-1]], defs))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    if "allOf" in schema:
        return from_schema(schema["allOf"][0], defs)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return st.fixed_dictionaries({}, optional={k: from_schema(v, defs) for k, v in props.items()})
    if kind == "array":
        if "prefixItems" in schema:
            return st.tuples(*[from_schema(s, defs) for s in schema["prefixItems"]]).map(list)
        return st.lists(from_schema(schema.get("items", {}), defs), max_size=3)
    if kind == "number":
        return st.one_of(st.sampled_from(FLOATS), st.floats())
    if kind == "integer":
        return st.one_of(st.sampled_from(INTS), st.integers(-10**6, 10**6))
    if kind == "string":
        return st.one_of(st.sampled_from(WORDS + ["sha256:" + "0" * 64]), st.text(max_size=6))
    if kind == "boolean":
        return st.booleans()
    return st.none()


def flag_names() -> list[str]:
    """Every flag the nanoBragg command-line parser knows (names and aliases), from its table."""
    from sim_core.flag_table import FLAGS_BY_NAME
    return sorted(FLAGS_BY_NAME)


def leaves(schema: dict, defs: dict, prefix: tuple = ()) -> dict[tuple, dict]:
    """Path -> schema of every leaf field of an object schema."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    objects = [s for s in schema.get("anyOf", [schema]) if "$ref" in s or s.get("type") == "object"]
    if not objects or not prefix and schema.get("type") != "object":
        return {prefix: schema} if prefix else {}
    target = objects[0]
    target = defs[target["$ref"].split("/")[-1]] if "$ref" in target else target
    if "properties" not in target:
        return {prefix: schema}
    out = {}
    for name, sub in target["properties"].items():
        out.update(leaves(sub, defs, prefix + (name,)))
    return out


def patched(base: dict, patches) -> dict:
    cfg = json.loads(json.dumps(base))
    for path, value in patches:
        node = cfg
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return cfg


SCHEMA = JobSubmission.model_json_schema()
DEFS = SCHEMA["$defs"]
LEAVES = leaves(DEFS["SimulationConfig"], DEFS)
#: a valid 16 x 16 config with one to three fields replaced by generated values: deep enough to
#: reach the cost checks and the queue, where wholly random configs stop at the first bad field
BASE = {"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
        "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 1},
        "detector": {"distance_mm": 100, "fast_pixels": 16, "slow_pixels": 16}}
CONFIGS = st.one_of(
    from_schema(DEFS["SimulationConfig"], DEFS),
    st.lists(st.sampled_from(sorted(LEAVES)).flatmap(
        lambda path: st.tuples(st.just(path), from_schema(LEAVES[path], DEFS))),
        min_size=1, max_size=3).map(lambda patches: patched(BASE, patches)))
ARGS = st.lists(st.tuples(st.sampled_from(flag_names()),
                          st.lists(st.sampled_from(WORDS), max_size=3)),
                min_size=1, max_size=8).map(lambda pairs: [t for f, vs in pairs for t in [f, *vs]])


@pytest.fixture(scope="module")
def api(redis_url, tmp_path_factory):
    with inprocess_client(redis_url, tmp_path_factory.mktemp("fuzz")) as client:
        yield client


def _post(api, body: dict):
    r = api.post("/v1/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body, r.text)
    return r


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(config=CONFIGS, device=st.sampled_from([None, "cpu", "cuda"]))
@example(config=patched(BASE, [(("crystal", "misset_deg"), [math.nan, 0, 0])]), device=None)
@example(config=patched(BASE, [(("detector", "fdet_vector"), [math.inf, 0, 1])]), device=None)
@example(config=patched(BASE, [(("crystal", "phi_steps"), 10**7)]), device=None)  # earlier shape
@example(config=patched(BASE, [(("scan", "osc_range_deg"), 3600), (("scan", "phi_step_deg"), 1e-300)]),
         device=None)
def test_generated_configs_never_answer_5xx(api, config, device):
    body = {"config": config, "outputs": ["float"]}
    if device:
        body["device"] = device
    _post(api, body)


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(args=ARGS)
def test_generated_command_lines_never_answer_5xx(api, args):
    base = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-detpixels", "16"]
    _post(api, {"nanobragg_args": base + args})
    _post(api, {"nanobragg_args": args})


def test_schemathesis_finds_no_server_error(service, tmp_path):
    """A bounded run (a few examples per operation) of schemathesis's generated requests against
    the real API, uvicorn and Redis; bench/abuse.py runs it at length."""
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{service.base_url}/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", "12", "--seed", "1",
           "--header", f"Authorization: Bearer {TOKENS['carol']}", "--workers", "2",
           "--report-dir", str(tmp_path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:  # generated jobs that passed every check must not keep the workers from other tests
        with service.client("carol") as carol:
            for status in ("queued", "running"):
                for job in carol.get(f"/v1/jobs?status={status}&limit=200").json()["jobs"]:
                    carol.post(f"/v1/jobs/{job['id']}/cancel")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
