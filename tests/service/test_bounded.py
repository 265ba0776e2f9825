"""Bounded work for any input: the API prices a job by arithmetic and refuses it before doing any
work; uploads are read once, as a stream, into summaries; limits on grids, bodies and kinds; bad
values are 4xx; non-finite images; one trace job per pixel; devices nobody serves; the OpenAPI
document's auth, examples and OPTIONS. Memory is read from /proc of the real API process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.schemas import EXAMPLE_CONFIG, EXAMPLE_FILES
from sim_core.config import load_config
from sim_core.cost import estimate
from tests.service.conftest import TOKENS, Service
from tests.service.helpers import SMALL_CONFIG, get, submit, upload, wait_status
from tests.service.inprocess import inprocess_client

HUGE = {
    "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "mosaic_spread_deg": 1,
                "mosaic_domains": 100},
    "scan": {"osc_range_deg": 1, "phi_steps": 10**5},
    "structure_factors": {"default_F": 100},
    "beam": {"hdiv_range_mrad": 1, "vdiv_range_mrad": 1, "hdiv_steps": 1000, "vdiv_steps": 1000},
    "detector": {"distance_mm": 100, "fast_pixels": 4096, "slow_pixels": 4096},
}


def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(scope="module")
def big_api(redis_url, tmp_path_factory):
    """An API of its own (default limits but a 64 MB upload limit), so that its peak RSS is this
    module's alone."""
    svc = Service(tmp_path_factory.mktemp("big-api"), redis_url)
    svc.env.update({"BRAGG_NAMESPACE": "bigapi", "BRAGG_MAX_UPLOAD_BYTES": str(64 << 20),
                    "BRAGG_MAX_DETECTOR_PIXELS": str(4096 * 4096),
                    "BRAGG_MAX_EVALUATIONS": "20000000000"})
    svc.start_api()
    yield svc
    svc.stop_all()


def test_the_api_prices_a_huge_job_by_arithmetic(redis_url, tmp_path):
    """4096² pixels x 842,160 sources x 10^5 phi steps x 100 domains: refused with the count,
    nothing built."""
    cost = estimate(load_config(HUGE))
    with inprocess_client(redis_url, tmp_path) as api:
        r = api.post("/v1/jobs", json={"config": HUGE})
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["limit"] == "max_evaluations" and err["value"] == cost.evaluations
    assert f"{cost.evaluations:,}" in err["message"] and "842,160 sources" in err["message"]


def test_the_api_process_never_loads_torch(service, alice):
    mat = upload(alice, EXAMPLE_FILES / "A.mat", "matrix")
    hkl = upload(alice, EXAMPLE_FILES / "P1.hkl", "hkl")
    args = ["-mat", "A.mat", "-hkl", "P1.hkl", "-lambda", "1", "-N", "2", "-detpixels", "32"]
    job = submit(alice, {"nanobragg_args": args,
                         "files": {"A.mat": mat["id"], "P1.hkl": hkl["id"]}})
    assert wait_status(alice, job["id"])["status"] == "finished"
    # the viewer's routes too: geometry, statistics, pixels, a trace
    base = f"/v1/jobs/{job['id']}"
    geo = alice.get(f"{base}/geometry", params={"pixel": "3,5"})
    assert geo.status_code == 200 and geo.json()["pixels"][0]["twotheta_deg"] > 0, geo.text
    assert alice.get(f"{base}/image/info").status_code == 200
    assert alice.get(f"{base}/image", params={"step": 4}).status_code == 200
    assert alice.post(f"{base}/traces", json={"pixels": [[3, 5]]}).status_code == 202
    # a block larger than the image is the image (no step x step allocation)
    whole = alice.get(f"{base}/image", params={"step": 65536})
    assert whole.status_code == 200 and whole.headers["x-image-shape"] == "1,1"
    # numbers of thousands of digits are a 422 naming the parameter, not a 500
    huge = "9" * 5000
    for path, params, field in ((f"{base}/image", {"slow": f"0:{huge}"}, "slow"),
                                (f"{base}/geometry", {"pixel": f"{huge},1"}, "pixel.0"),
                                (f"{base}/trace", {"pixel": f"1,{huge}"}, "pixel"),
                                (f"{base}/images/1/trace", {"pixel": f"{huge},1"}, "pixel")):
        r = alice.get(path, params=params)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (path, r.text)
    maps = Path(f"/proc/{service.api.pid}/maps").read_text()
    assert "libtorch" not in maps


def test_far_flung_hkl_indices_are_refused_at_upload(alice, tmp_path):
    p = tmp_path / "far.hkl"
    p.write_text("0 0 0 1\n999 999 199 1\n")
    r = alice.post("/v1/files", data={"kind": "hkl"}, files={"file": ("far.hkl", p.read_bytes())})
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["limit"] == "max_hkl_grid_points" and err["value"] == 200_000_000
    assert "h 0..999, k 0..999, l 0..199" in err["message"]
    assert "200,000,000 points" in err["message"] and "16,777,216" in err["message"]


def test_uploads_carry_their_summary(alice):
    rec = upload(alice, EXAMPLE_FILES / "P1.hkl", "hkl")
    s = alice.get(f"/v1/files/{rec['id']}").json()["summary"]
    assert s == {"format": "hkl", "count": 5, "h": [-1, 1], "k": [0, 1], "l": [0, 1],
                 "grid_points": 12, "F_min": 60.0, "F_max": 120.0, "finite": True}


def test_a_file_of_the_wrong_kind_is_named(alice):
    hkl = upload(alice, EXAMPLE_FILES / "P1.hkl", "hkl")
    cfg = {"crystal": {"matrix_file": hkl["id"], "Na": 2, "Nb": 2, "Nc": 2},
           "structure_factors": {"default_F": 1}, "detector": {"fast_pixels": 16, "slow_pixels": 16}}
    r = alice.post("/v1/jobs", json={"config": cfg})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "config.crystal.matrix_file" and "P1.hkl" in err["message"]
    assert "hkl file" in err["message"] and "kind=matrix" in err["message"]
    r = alice.post("/v1/jobs", json={"nanobragg_args": ["-mat", "P1.hkl", "-default_F", "1"],
                                     "files": {"P1.hkl": hkl["id"]}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "files.P1.hkl"


@pytest.mark.parametrize("kind,content,match", [
    ("mask", b"{\nHEADER_BYTES=inf;\nSIZE1=2;\nSIZE2=2;\n}\f".ljust(512) + bytes(8), "HEADER_BYTES"),
    ("matrix", b"0 0 0\n0 0 0\n0 0 0\n", "singular"),
    ("hkl", b"1 2 3 1e400\n", "not a finite number"),
    ("sources", b"0 0 -10 inf 1e-10\n", "infinite"),
])
def test_bad_files_are_422(alice, kind, content, match):
    r = alice.post("/v1/files", data={"kind": kind}, files={"file": ("bad", content)})
    assert r.status_code == 422 and match in r.json()["errors"][0]["message"], r.text


@pytest.mark.parametrize("body", [
    {"nanobragg_args": ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1",
                        "-osc", "1e300", "-phistep", "1e-300", "-detpixels", "16"]},
    {"config": dict(SMALL_CONFIG, scan={"osc_range_deg": 3600, "phi_step_deg": 1e-300})},
])
def test_impossible_step_counts_are_422(alice, body):
    r = alice.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text


def test_a_non_ascii_digit_cursor_is_422(alice):
    assert alice.get("/v1/jobs?cursor=%C2%B2").status_code == 422


def test_bodies_are_bounded_and_the_token_comes_first(big_api):
    base = big_api.base_url
    before = proc_kb(big_api.api.pid, "VmHWM")
    blob = b"x" * (50 << 20)
    try:  # the API answers 401 without reading the body; the client may see the socket close
        r = httpx.post(f"{base}/v1/jobs", content=blob, timeout=30,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 401
    except httpx.TransportError:
        pass
    r = httpx.post(f"{base}/v1/jobs", content=b"{" + b" " * (2 << 20) + b"}", timeout=30,
                   headers={"Content-Type": "application/json",
                            "Authorization": f"Bearer {TOKENS['alice']}"})
    assert r.status_code == 413 and r.json()["errors"][0]["limit"] == "max_body_bytes"
    assert proc_kb(big_api.api.pid, "VmHWM") - before < 40 * 1024  # kB: far less than 50 MB


def test_an_upload_is_read_as_a_stream(big_api, tmp_path):
    """A 16 MB HKL file (1.3 M reflections) costs the API far less than its text would as Python
    strings (the old reader took ~30x the file size), and /readyz keeps answering meanwhile."""
    lines = [f"{h} {k} {l} 100.5\n" for h in range(-50, 50) for k in range(-50, 50)
             for l in range(-65, 65)]
    p = tmp_path / "big.hkl"
    p.write_text("".join(lines))
    size = p.stat().st_size
    assert size > 15 << 20
    pid = big_api.api.pid
    idle = proc_kb(pid, "VmRSS")
    answers = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            answers.append(httpx.get(f"{big_api.base_url}/readyz", timeout=10).status_code)

    t = threading.Thread(target=poll)
    t.start()
    try:
        with big_api.client("alice") as c:
            rec = upload(c, p, "hkl")
    finally:
        done.set()
        t.join()
    assert rec["summary"]["count"] == len(lines) and rec["summary"]["grid_points"] == 100 * 100 * 130
    assert len(answers) >= 2
    assert proc_kb(pid, "VmHWM") - idle < 150 * 1024, "kB above idle"


def test_non_finite_images(service, alice, tmp_path):
    """F = 1e200 in an HKL file (finite, so accepted; the config's own default_F has a physical
    range) overflows: within an ROI the image is partly inf/NaN (a warning with the counts);
    without one it is wholly non-finite (failed, with the reason)."""
    hkl = tmp_path / "huge.hkl"
    hkl.write_text("".join(f"{h} {k} {l} 1e200\n" for h in range(-3, 4) for k in range(-3, 4)
                           for l in range(-3, 4)))
    ref = upload(alice, hkl, "hkl")["id"]
    cfg = dict(SMALL_CONFIG, structure_factors={"hkl_file": ref})
    part = dict(cfg, sampling={"roi": [0, 15, 0, 15]})
    job = submit(alice, {"config": part, "outputs": ["float"]})
    rec = wait_status(alice, job["id"])
    assert rec["status"] == "finished", rec
    md = alice.get(f"/v1/jobs/{job['id']}/artifacts/run_metadata.json").json()
    counts = md["non_finite_pixels"]
    assert counts["inf"] + counts["nan"] == 16 * 16
    assert any("inf and" in w and "NaN pixels" in w for w in rec["warnings"])
    assert md["warnings"] == rec["warnings"]
    job = submit(alice, {"config": cfg, "outputs": ["float"]})
    rec = wait_status(alice, job["id"])
    assert rec["status"] == "failed" and rec["error"]["type"] == "NonFiniteImage"
    assert "entirely non-finite" in rec["error"]["message"]


def test_concurrent_trace_requests_make_one_trace_job(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float"]})
    assert wait_status(alice, job["id"])["status"] == "finished"

    def ask(_):
        with service.client("alice") as c:
            r = c.post(f"/v1/jobs/{job['id']}/traces", json={"pixels": [[5, 6]]})
            assert r.status_code in (200, 202), r.text
            return r.json()["pixels"][0]["job"]

    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(ask, range(10)))
    assert len(ids) == 1
    assert wait_status(alice, ids.pop())["status"] == "finished"


def test_a_device_nobody_serves(service, alice, redis_url, tmp_path):
    r = httpx.get(f"{service.base_url}/readyz", timeout=5)
    assert r.json()["devices"] == ["cpu", "auto"]
    job = submit(alice, {"config": SMALL_CONFIG, "device": "cuda"})
    assert any("no live worker serves device 'cuda'" in w for w in job["warnings"])
    alice.post(f"/v1/jobs/{job['id']}/cancel")
    # the sweep, at a queue timeout of 0.5 s, on a namespace of its own
    import time
    from types import SimpleNamespace

    import redis as redis_lib

    from rq import Queue

    from jobs import queue as rq_queue
    from jobs.live_workers import fail_unserved
    from jobs.records import Records
    from jobs.settings import Settings
    from app.submit import create_job

    settings = Settings(redis_url=redis_url, namespace=f"unserved{time.monotonic_ns()}",
                        data_dir=tmp_path, queue_timeout_s=0.5)
    conn = redis_lib.Redis.from_url(redis_url)
    ctx = SimpleNamespace(settings=settings, redis=conn, records=Records(conn, settings.namespace))
    cfg = load_config(SMALL_CONFIG)
    cfg.run.device = "cuda"
    job_id = create_job(ctx, "tester", kind="render", config=cfg, file_names={}, outputs=["float"],
                        shape=(64, 64), evaluations=4096, warnings=[])
    assert fail_unserved(ctx) == []  # not waited long enough yet
    assert fail_unserved(ctx, now=time.time() + 1) == [job_id]
    rec = ctx.records.get(job_id)
    assert rec.status == "failed" and rec.error_type == "NoWorker"
    assert "no live worker serves device 'cuda'" in rec.error_message
    # the transition also leaves the outbox, the owner's quota and the queue
    k = ctx.records._k
    assert conn.zscore(k.queued, job_id) is None and conn.zscore(k.ended, job_id) is not None
    assert not conn.sismember(k.owner_active("tester"), job_id)
    assert rec.rq_id not in rq_queue.waiting(conn, rec.queue)
    assert fail_unserved(ctx, now=time.time() + 1) == []  # a failed job stays failed
    # a job in the outbox on no queue (the API died before enqueueing it) fails too, from the
    # sweeper's pass
    from jobs import sweeper

    lost = create_job(ctx, "tester", kind="render", config=cfg, file_names={}, outputs=["float"],
                      shape=(64, 64), evaluations=4096, warnings=[])
    conn.delete(Queue(rq_queue.queue_name(settings.namespace, "cuda"), connection=conn).key)
    conn.hset(k.job(lost), "created_at", time.time() - 1)  # submitted past the queue timeout
    assert sweeper.sweep(ctx, "t").unserved == [lost]
    assert conn.hgetall(k.stats) == {b"queued": b"0", b"failed": b"2"}


def test_openapi_auth_options_and_examples(service, alice):
    doc = httpx.get(f"{service.base_url}/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/jobs"]["post"]["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    r = httpx.options(f"{service.base_url}/v1/jobs", timeout=10)
    assert {"GET", "POST", "OPTIONS"} <= {m.strip() for m in r.headers["allow"].split(",")}
    # every request example of the document is accepted by its route (after uploading the
    # example files it names, and on a finished job where the path needs one)
    for name, kind in (("A.mat", "matrix"), ("P1.hkl", "hkl")):
        upload(alice, EXAMPLE_FILES / name, kind)
    finished = submit(alice, {"config": EXAMPLE_CONFIG, "outputs": ["float"]})  # 256 x 256
    wait_status(alice, finished["id"])
    walked = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content = (op.get("requestBody") or {}).get("content", {})
            for media, body in content.items():
                examples = [e["value"] for e in (body.get("examples") or {}).values()]
                examples += [body["example"]] if "example" in body else []
                ref = (body.get("schema") or {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    examples += doc["components"]["schemas"][ref.split("/")[-1]].get("examples", [])
                for value in examples:
                    url = path.replace("{job_id}", finished["id"]).replace("{n}", "1")
                    if media == "application/json":
                        r = alice.request(method.upper(), url, json=value)
                    else:
                        files = {"file": ("example", value["file"].encode())}
                        r = alice.request(method.upper(), url, files=files,
                                          data={k: v for k, v in value.items() if k != "file"})
                    assert r.status_code < 300, (path, method, value, r.text)
                    walked += 1
                    if r.status_code == 202:  # stay under the deployment's queued-jobs limit
                        queued = r.json().get("trace_job") or r.json()
                        wait_status(alice, queued["id"], timeout=120)
    assert walked >= 6


def test_a_file_uploaded_before_summaries_is_summarized_once(service, alice):
    from jobs.records.keys import Keys

    rec = upload(alice, EXAMPLE_FILES / "A.mat", "matrix")
    key = Keys("bragg").file("alice", rec["id"].removeprefix("sha256:"))
    service.redis.hdel(key, "summary")
    assert alice.get(f"/v1/files/{rec['id']}").json()["summary"] == {}
    cfg = {"crystal": {"matrix_file": rec["id"], "Na": 2, "Nb": 2, "Nc": 2},
           "structure_factors": {"default_F": 1}, "detector": {"fast_pixels": 16, "slow_pixels": 16}}
    job = submit(alice, {"config": cfg, "outputs": ["float"]})
    assert job["evaluations"] == 16 * 16  # oversample 1 for a 200 Å crystal at 100 mm
    summary = alice.get(f"/v1/files/{rec['id']}").json()["summary"]
    assert summary["cell_lengths_per_A"] == pytest.approx([100, 100, 100])
    assert wait_status(alice, job["id"])["status"] == "finished"
