"""Bounded work for any input: hand-made abusive inputs against a real stack (redis-server, the API,
one CPU worker, default limits), each with its answer, the API's time and the peak RSS of the API
and the worker (VmHWM from /proc); then a long schemathesis run over the OpenAPI document.

    python -m bench.abuse                    # the inputs, then schemathesis (1,600 examples/operation)
    python -m bench.abuse --examples 0       # the inputs only
    python -m bench.abuse --no-inputs --examples 500 --seed 8   # schemathesis only, another seed

Targets: every input answered in < 2 s with a 4xx or handled, API peak RSS < 600 MB, worker < 1.5 GB,
no 5xx from schemathesis.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.service_stack import TOKEN, Stack

CELL = ["-cell", "100", "100", "100", "90", "90", "90"]
SMALL = {"crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
         "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 1},
         "detector": {"distance_mm": 100, "fast_pixels": 64, "slow_pixels": 64}}


def hwm_mb(pid: int, key: str = "VmHWM") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 1024


def cfg(**sections) -> dict:
    out = json.loads(json.dumps(SMALL))
    for section, values in sections.items():
        out.setdefault(section, {}).update(values)
    return out


class Bench:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.c = stack.client()
        self.api_pid, self.worker_pid = stack.procs[1].pid, stack.procs[2].pid
        self.rows = []
        self.tmp = Path(tempfile.mkdtemp(prefix="abuse-"))

    def record(self, name: str, fn):
        t0 = time.perf_counter()
        try:
            answer = fn()
        except httpx.HTTPError as exc:
            answer = f"connection closed ({type(exc).__name__})"
        dt = time.perf_counter() - t0
        row = {"input": name, "answer": answer, "api_s": round(dt, 3),
               "api_peak_mb": round(hwm_mb(self.api_pid)), "worker_peak_mb":
               round(hwm_mb(self.worker_pid))}
        self.rows.append(row)
        print(f"{name:58s} {str(answer)[:60]:60s} {dt:7.3f} s  API {row['api_peak_mb']:5d} MB  "
              f"worker {row['worker_peak_mb']:5d} MB", flush=True)
        return answer

    def _post(self, body) -> httpx.Response:  # json.dumps: NaN and Infinity as JSON5 literals
        return self.c.post("/v1/jobs", content=json.dumps(body),
                           headers={"Content-Type": "application/json"})

    def post_job(self, body) -> str:
        r = self._post(body)
        if r.status_code == 202:
            return f"202 {r.json()['id'][:8]}"
        errs = r.json().get("errors") or [{}]
        return f"{r.status_code} {errs[0].get('field', '')}: {errs[0].get('message', r.text)[:40]}"

    def upload(self, name: str, data: bytes, kind: str) -> tuple[int, dict]:
        r = self.c.post("/v1/files", data={"kind": kind}, files={"file": (name, data)})
        return r.status_code, r.json()

    def job_outcome(self, body) -> str:
        r = self._post(body)
        if r.status_code != 202:
            return f"{r.status_code} {(r.json().get('errors') or [{}])[0].get('message', '')[:50]}"
        job_id = r.json()["id"]
        while True:
            rec = self.c.get(f"/v1/jobs/{job_id}").json()
            if rec["status"] in ("finished", "failed", "canceled"):
                extra = rec["error"]["type"] if rec["error"] else "; ".join(rec["warnings"])[:40]
                return f"202 -> {rec['status']} {extra}"
            time.sleep(0.1)

    def run(self):
        b = self
        far = b"0 0 0 1\n999 999 199 1\n"
        for i in (1, 2):
            b.record(f"22-byte HKL, far-flung indices (upload {i})",
                     lambda: b.upload("far.hkl", far, "hkl")[0])
        b.record("hdiv=vdiv_steps=1000 on 4096^2", lambda: b.post_job({"config": cfg(
            beam={"hdiv_range_mrad": 1, "vdiv_range_mrad": 1, "hdiv_steps": 1000,
                  "vdiv_steps": 1000}, detector={"fast_pixels": 4096, "slow_pixels": 4096})}))
        b.record("phi_steps = 10^7", lambda: b.post_job({"config": cfg(
            scan={"osc_range_deg": 1, "phi_steps": 10**7})}))
        b.record("beam_size_mm = 0 with a flux", lambda: b.job_outcome({"config": cfg(
            beam={"beam_size_mm": 0, "flux_photons_per_s": 1e12})}))
        for v in ("NaN", "Infinity"):
            b.record(f"misset {v}", lambda v=v: b.post_job({"config": cfg(
                crystal={"misset_deg": [float(v.lower().replace("infinity", "inf")), 0, 0]})}))
        b.record("wavelength 1e-320", lambda: b.job_outcome({"config": cfg(beam={"wavelength_A": 1e-320})}))
        b.record("distance 1e-320", lambda: b.job_outcome({"config": cfg(detector={"distance_mm": 1e-320})}))
        b.record("mosaic_seed 1e30", lambda: b.job_outcome({"config": cfg(crystal={"mosaic_seed": 10**30})}))
        b.record("-osc 1e300 -phistep 1e-300", lambda: b.post_job({"nanobragg_args": CELL + [
            "-default_F", "1", "-detpixels", "16", "-osc", "1e300", "-phistep", "1e-300"]}))
        b.record("SMV mask with HEADER_BYTES=inf", lambda: b.upload("m.img", b"{\nHEADER_BYTES=inf;\n"
                 b"SIZE1=2;\nSIZE2=2;\n}\f".ljust(512) + bytes(8), "mask")[0])
        b.record("all-zero -mat", lambda: b.upload("z.mat", b"0 0 0\n0 0 0\n0 0 0\n", "matrix")[0])
        b.record("GET /v1/jobs?cursor=%C2%B2", lambda: b.c.get("/v1/jobs?cursor=%C2%B2").status_code)
        b.record("50 MB POST, no token", lambda: httpx.post(
            f"{b.stack.base_url}/v1/jobs", content=b"x" * (50 << 20), timeout=60).status_code)
        b.record("50 MB POST, with token", lambda: b.c.post(
            "/v1/jobs", content=b"x" * (50 << 20), headers={"Content-Type": "application/json"}
        ).status_code)
        b.record("-fluence 1e308", lambda: b.job_outcome({"nanobragg_args": CELL + [
            "-default_F", "100", "-N", "5", "-detpixels", "64", "-fluence", "1e308"]}))
        b.record("-default_F 1e200", lambda: b.job_outcome({"nanobragg_args": CELL + [
            "-default_F", "1e200", "-N", "5", "-detpixels", "64"]}))
        nan_fdump = b"0 0 0 0 0 0\n\f" + struct.pack("<8d", *([float("nan")] * 8))
        b.record("Fdump of NaN", lambda: b.upload("Fdump.bin", nan_fdump, "hkl")[0])
        b.record("noise seed 2^70", lambda: b.job_outcome({"config": cfg(noise={"seed": 2**70})}))
        hkl_status, hkl = b.upload("P1.hkl", b"1 2 3 100\n-1 0 2 50\n", "hkl")
        b.record("an HKL file used as -mat", lambda: b.post_job({"nanobragg_args": [
            "-mat", "P1.hkl", "-default_F", "1", "-detpixels", "16"], "files": {"P1.hkl": hkl["id"]}}))
        b.record("10 concurrent traces of one pixel", self.traces)
        b.record("device=cuda with no CUDA worker", lambda: b.post_job(
            {"config": SMALL, "device": "cuda"}))
        self.write_big_hkl()
        b.record("10M-line HKL (128 MB) upload, /readyz meanwhile", self.big_upload)
        if getattr(self, "big_id", None):
            b.record("a 64x64 job with that HKL", lambda: b.job_outcome({"config": cfg(
                structure_factors={"hkl_file": self.big_id, "default_F": 0})}))

    def traces(self) -> str:
        r = self.c.post("/v1/jobs", json={"config": SMALL, "outputs": ["float"]})
        job_id = r.json()["id"]
        while self.c.get(f"/v1/jobs/{job_id}").json()["status"] not in ("finished", "failed"):
            time.sleep(0.1)

        def ask(_):
            with self.stack.client() as c:
                return c.post(f"/v1/jobs/{job_id}/traces", json={"pixels": [[3, 4]]}).json()[
                    "pixels"][0]["job"]

        with ThreadPoolExecutor(10) as pool:
            ids = set(pool.map(ask, range(10)))
        return f"{len(ids)} trace job(s)"

    def write_big_hkl(self) -> None:
        with open(self.tmp / "big.hkl", "w") as fh:
            for h in range(200):  # 10 M lines, 132 MB
                fh.write("".join(f"{h} {k} {l} {(k * l) % 50 + 1}\n"
                                 for k in range(200) for l in range(250)))

    def big_upload(self) -> str:
        path = self.tmp / "big.hkl"
        size = path.stat().st_size
        worst = [0.0]
        done = threading.Event()

        def poll():
            while not done.is_set():
                t = time.perf_counter()
                httpx.get(f"{self.stack.base_url}/readyz", timeout=30)
                worst[0] = max(worst[0], time.perf_counter() - t)
                time.sleep(0.05)

        t = threading.Thread(target=poll)
        t.start()
        try:
            with open(path, "rb") as fh:
                r = self.c.post("/v1/files", data={"kind": "hkl"},
                                files={"file": ("big.hkl", fh)}, timeout=600)
        finally:
            done.set()
            t.join()
        if r.status_code == 201:
            self.big_id = r.json()["id"]
        return (f"{r.status_code} ({size / 1e6:.0f} MB, {r.json().get('summary', {}).get('count', 0):,}"
                f" lines); /readyz worst {worst[0]:.2f} s")


def schemathesis(stack: Stack, examples: int, seed: int) -> None:
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.base_url}/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", str(examples), "--seed", str(seed),
           "--header", f"Authorization: Bearer {TOKEN}", "--workers", "2", "--no-shrink"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=stack.dir)  # its cache goes there
    print(out.stdout[-3000:], out.stderr[-1000:])
    print(f"schemathesis: exit {out.returncode} in {time.perf_counter() - t0:.0f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1600,
                    help="schemathesis examples per operation (0: skip it)")
    ap.add_argument("--seed", type=int, default=7, help="schemathesis's seed")
    ap.add_argument("--no-inputs", action="store_true", help="only the schemathesis run")
    args = ap.parse_args(argv)
    stack = Stack(workers=1)
    try:
        print(f"idle: API {hwm_mb(stack.procs[1].pid, 'VmRSS'):.0f} MB, worker "
              f"{hwm_mb(stack.procs[2].pid, 'VmRSS'):.0f} MB")
        if not args.no_inputs:
            Bench(stack).run()
        if args.examples:
            schemathesis(stack, args.examples, args.seed)
        print(f"peak: API {hwm_mb(stack.procs[1].pid):.0f} MB, worker "
              f"{hwm_mb(stack.procs[2].pid):.0f} MB")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
