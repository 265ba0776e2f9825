"""Bounded work for any input: hand-made abusive inputs against a real stack (redis-server, the API,
one CPU worker, default limits), each with its answer, the API's time and the peak RSS of the API
and the worker (VmHWM from /proc); then a long schemathesis run over the OpenAPI document.

    python -m bench.abuse                    # the inputs, then schemathesis (1,600 examples/operation)
    python -m bench.abuse --examples 0       # the inputs only
    python -m bench.abuse --examples 0 --bounded-only   # MTZ headers, cells, tables, connections...
    python -m bench.abuse --no-inputs --examples 500 --seed 8   # schemathesis only, another seed

Targets: every input answered in < 2 s with a 4xx or handled, API peak RSS < 400 MB, worker
< 1.5 GB, /healthz under 200 ms meanwhile (polled every 50 ms throughout; each row gives its
slowest), no 5xx (the one input that must get one, an artifact altered on disk, is counted
apart), none from schemathesis.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
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


def _poll_health(base_url: str, worst, failures, stop) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                ok = c.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            dt = time.perf_counter() - t
            with worst.get_lock():
                worst.value = max(worst.value, dt)
            if not ok:
                with failures.get_lock():
                    failures.value += 1
            time.sleep(0.05)


def _storm(base_url: str, token: str, job_id: str) -> list[int]:
    """Bench.image_storm's requests, in a niced process: 64 regions and 12 infos at once."""
    os.nice(19)
    base = f"/v1/jobs/{job_id}"

    def ask(i):
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as c:
            if i < 64:
                s0 = (i % 8) * 128  # a 128-row band at every step, the whole at step 4
                rows = f"{s0}:{s0 + 128}" if i % 4 else "0:1024"
                step = 4 if i % 4 == 0 else 1
                return c.get(f"{base}/image", params={"slow": rows, "step": step}).status_code
            return c.get(f"{base}/image/info", params={"n": 1}).status_code

    with ThreadPoolExecutor(76) as pool:
        return list(pool.map(ask, range(76)))


class Health:
    """/healthz every 50 ms from a process of its own (so that the bench's own threads do not
    slow the measurement): the slowest answer since the last take."""

    def __init__(self, base_url: str):
        ctx = multiprocessing.get_context("spawn")
        self._worst, self._failures = ctx.Value("d", 0.0), ctx.Value("i", 0)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_poll_health, daemon=True,
                                 args=(base_url, self._worst, self._failures, self._stop))
        self._proc.start()

    @property
    def failures(self) -> int:
        return self._failures.value

    def take(self) -> float:
        with self._worst.get_lock():
            worst, self._worst.value = self._worst.value, 0.0
        return worst

    def stop(self):
        self._stop.set()
        self._proc.join(10)


class Bench:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.statuses: list[int] = []
        self.c = self.client()
        self.api_pid, self.worker_pid = stack.procs[1].pid, stack.procs[2].pid
        self.rows = []
        self.tmp = Path(tempfile.mkdtemp(prefix="abuse-"))
        self.health = Health(stack.base_url)
        self.designed_5xx = 0

    def client(self) -> httpx.Client:
        """A client of the stack whose every answer's status is counted (5xx)."""
        c = self.stack.client()
        c.event_hooks["response"].append(lambda r: self.statuses.append(r.status_code))
        return c

    def record(self, name: str, fn):
        self.health.take()
        t0 = time.perf_counter()
        try:
            answer = fn()
        except httpx.HTTPError as exc:
            answer = f"connection closed ({type(exc).__name__})"
        dt = time.perf_counter() - t0
        row = {"input": name, "answer": answer, "api_s": round(dt, 3),
               "api_peak_mb": round(hwm_mb(self.api_pid)), "worker_peak_mb":
               round(hwm_mb(self.worker_pid)), "healthz_worst_ms": round(self.health.take() * 1000)}
        self.rows.append(row)
        print(f"{name:58s} {str(answer)[:70]:70s} {dt:7.3f} s  API {row['api_peak_mb']:5d} MB  "
              f"worker {row['worker_peak_mb']:5d} MB  /healthz {row['healthz_worst_ms']:5d} ms",
              flush=True)
        return answer

    def summary(self) -> str:
        fivexx = sum(1 for s in self.statuses if s >= 500) - self.designed_5xx
        slowest = max(r["healthz_worst_ms"] for r in self.rows)
        return (f"answers: {len(self.statuses)}, 5xx: {fivexx} (and {self.designed_5xx} by design: "
                f"an altered artifact); /healthz slowest {slowest} ms, failed "
                f"{self.health.failures} times")

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
        self.bounded_requests()

    # -- every request bounded before it allocates ------------------------------------------------
    def upload_answer(self, name: str, data: bytes, kind: str) -> str:
        status, body = self.upload(name, data, kind)
        if status == 201:
            return f"201 {json.dumps(body.get('summary'))[:50]}"
        return f"{status} {(body.get('errors') or [{}])[0].get('message', '')[:60]}"

    def bounded_requests(self):
        b = self
        for label, pointer, v2 in (("0.5 GiB", 2**27 + 1, None), ("1 GiB", 2**28 + 1, None),
                                   ("2 GiB", 2**29 + 1, None), ("8 GiB", 2**31 - 1, None),
                                   ("2^40 words (MTZ v2)", -1, 2**40)):
            head = b"MTZ " + struct.pack("<i", pointer) + b"\x44\x41\x00\x00"
            if v2:
                head += struct.pack("<q", v2)
            b.record(f"4 KiB MTZ, header pointer {label}",
                     lambda head=head: b.upload_answer("big.mtz", head.ljust(4096, b"\0"), "mtz"))
        rng = random.Random(5)
        noise = b"MTZ " + bytes(rng.getrandbits(8) for _ in range(4092))
        b.record("4 KiB MTZ of random bytes", lambda: b.upload_answer("r.mtz", noise, "mtz"))
        mtz = self.mtz_bytes()
        at = mtz.index(b"NCOL")
        ncol = int(mtz[at + 4:at + 80].split()[0])
        lying = mtz[:at] + f"NCOL {ncol:8d} 2000000000 0".encode().ljust(80) + mtz[at + 80:]
        b.record("MTZ whose NCOL claims 2e9 reflections",
                 lambda: b.upload_answer("n.mtz", lying, "mtz"))
        imtz = self.mtz_bytes(columns=(("IMEAN", "J"), ("SIGIMEAN", "Q")))
        status, rec = b.upload("i.mtz", imtz, "mtz")
        b.record("intensities-only MTZ, no column named", lambda: b.post_job({"config": cfg(
            crystal={"cell": None, "Na": 5, "Nb": 5, "Nc": 5},
            structure_factors={"mtz_file": rec["id"], "default_F": 0})}))
        b.record("model with a 0.001 A cell", lambda: b.upload_answer("tiny.pdb", (
            "CRYST1    0.001    0.001    0.001  90.00  90.00  90.00 P 1\n"
            "ATOM      1  CA  GLY A   1       0.000   0.000   0.000  1.00 20.00           C\n"
            "END\n").encode(), "model"))
        status, huge = b.upload("huge.pdb", (
            "CRYST1 1000.000 1000.000 1000.000  90.00  90.00  90.00 P 1\n"
            "ATOM      1  CA  GLY A   1       1.000   2.000   3.000  1.00 20.00           C\n"
            "END\n").encode(), "model")
        if status == 201:
            b.record("model with a 1000 A cell to dmin_F_A 1 A: a 64 GB P1 table", lambda: b.post_job(
                {"config": cfg(crystal={"cell": None},
                               structure_factors={"model_file": huge["id"], "default_F": 0,
                                                  "dmin_F_A": 1.0})}))
        status, mat = b.upload("A.mat", b"1000 0 0\n0 1000 0\n0 0 1000\n", "matrix")
        if status == 201:
            b.record("-mat giving a 0.001 A cell", lambda: b.post_job({"nanobragg_args": [
                "-mat", "A.mat", "-default_F", "1", "-detpixels", "16"],
                "files": {"A.mat": mat["id"]}}))
        self.write_big_pdb()
        b.record("1.5 M-atom PDB (121 MB) upload", lambda: b.upload_answer(
            "big.pdb", (self.tmp / "big.pdb").read_bytes(), "model"))
        small = self.finished({"config": cfg(detector={"fast_pixels": 32, "slow_pixels": 32}),
                               "outputs": ["float"]})
        base = f"/v1/jobs/{small}"
        for step in (16384, 32768, 65536):
            b.record(f"32x32 image?step={step}", lambda step=step: self.get_answer(
                f"{base}/image", {"step": step}))
        huge = "9" * 5000
        for path, params in ((f"{base}/image", {"slow": f"0:{huge}"}),
                             (f"{base}/geometry", {"pixel": f"{huge},1"}),
                             (f"{base}/images/1/trace", {"pixel": f"{huge},1"}),
                             (f"{base}/image", {"n": huge}), ("/v1/jobs", {"limit": huge}),
                             (f"{base}/image/profile", {"start": f"{huge},0", "end": "1,1"})):
            name = f"5000 digits: {path.replace(base, '')}?{next(iter(params))}="
            b.record(name, lambda path=path, params=params: self.get_answer(path, params))
        self.storm_job = self.finished({"config": cfg(
            detector={"fast_pixels": 1024, "slow_pixels": 1024}, sampling={"oversample": 1}),
            "outputs": ["float"]})
        b.record("64 region + 12 info requests at once (1024^2)", self.image_storm)
        b.record("an artifact altered on disk", lambda: self.altered(small))
        b.record("50 slow-body + 1000 slow-header + 3000 idle connections", self.connections)

    def get_answer(self, path: str, params: dict) -> str:
        r = self.c.get(path, params=params)
        if r.status_code == 200:
            return f"200 {r.headers.get('x-image-shape', '')}"
        return f"{r.status_code} {(r.json().get('errors') or [{}])[0].get('field', r.text[:40])}"

    def finished(self, body: dict) -> str:
        job_id = self._post(body).json()["id"]
        while self.c.get(f"/v1/jobs/{job_id}").json()["status"] not in ("finished", "failed"):
            time.sleep(0.1)
        return job_id

    def mtz_bytes(self, columns=(("FP", "F"),)) -> bytes:
        import gemmi
        import numpy as np
        mtz = gemmi.Mtz(with_base=True)
        mtz.spacegroup = gemmi.SpaceGroup("P 1")
        mtz.set_cell_for_all(gemmi.UnitCell(100, 100, 100, 90, 90, 90))
        mtz.add_dataset("abuse")
        for label, kind in columns:
            mtz.add_column(label, kind)
        hkl = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 8.0)
        values = np.full((len(hkl), len(columns)), 100.0, dtype=np.float32)
        mtz.set_data(np.column_stack([hkl, values]).astype(np.float32))
        path = self.tmp / "x.mtz"
        mtz.write_to_file(str(path))
        return path.read_bytes()

    def write_big_pdb(self) -> None:
        atom = "ATOM  %5d  CA  GLY A%4d    %8.3f%8.3f%8.3f  1.00 20.00           C  \n"
        with open(self.tmp / "big.pdb", "w") as fh:
            fh.write("CRYST1  400.000  400.000  300.000  90.00  90.00  90.00 P 1\n")
            for i in range(1_500_000):
                fh.write(atom % (i % 99999, i % 9999, (i * 0.37) % 400, (i * 0.11) % 400,
                                 (i * 0.07) % 300))
            fh.write("END\n")

    def image_storm(self) -> str:
        """76 image requests at once, sent from a process of their own at the lowest CPU priority:
        the attacker's 76 client threads would run on its own machine, not on the service's
        cores (on this 2-core machine, at normal priority, they took 2 s of CPU during the row and
        kept the API's event loop waiting in the run queue)."""
        before = hwm_mb(self.api_pid, "VmRSS")
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            codes = pool.apply(_storm, (self.stack.base_url, TOKEN, self.storm_job))
        self.statuses.extend(codes)
        time.sleep(1)
        after = hwm_mb(self.api_pid, "VmRSS")
        return (f"{codes.count(200)} x 200, others {sorted(set(codes) - {200})}; API RSS "
                f"{before:.0f} -> {after:.0f} MB")

    def altered(self, job_id: str) -> str:
        path = self.stack.dir / "data" / "jobs" / job_id / "floatimage.bin"
        data = bytearray(path.read_bytes())
        data[7] ^= 0xFF
        path.write_bytes(bytes(data))
        r = self.c.get(f"/v1/jobs/{job_id}/artifacts/floatimage.bin")
        self.designed_5xx += r.status_code >= 500
        return f"{r.status_code} {r.json().get('detail', '')[:60]}"

    def connections(self) -> str:
        """Connections that never finish a request (50 slow bodies, 1000 slow headers, then 3000
        idle): how many the API holds at 12 s (past the header deadline) and at 40 s (past the
        body pause)."""
        import resource
        import socket

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 10000), hard))
        addr = ("127.0.0.1", self.stack.port)
        socks = []
        for i in range(4050):
            try:
                s = socket.create_connection(addr, timeout=5)
            except OSError:
                continue
            if 50 <= i < 1050:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            elif i < 50:
                s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{")
            s.setblocking(False)
            socks.append(s)

        def still_open() -> int:
            n = 0
            for s in socks:
                try:
                    n += s.recv(65536, socket.MSG_PEEK) is None
                except BlockingIOError:
                    n += 1
                except OSError:
                    pass
            return n

        opened = len(socks)
        time.sleep(12)
        at_12 = still_open()
        time.sleep(28)
        at_40 = still_open()
        for s in socks:
            s.close()
        return f"{opened} opened; open at 12 s: {at_12}, at 40 s: {at_40}"

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
    ap.add_argument("--bounded-only", action="store_true",
                    help="of the inputs, only those of bounded requests (MTZ headers onwards)")
    args = ap.parse_args(argv)
    stack = Stack(workers=1)
    try:
        print(f"idle: API {hwm_mb(stack.procs[1].pid, 'VmRSS'):.0f} MB, worker "
              f"{hwm_mb(stack.procs[2].pid, 'VmRSS'):.0f} MB")
        if not args.no_inputs:
            bench = Bench(stack)
            bench.bounded_requests() if args.bounded_only else bench.run()
            bench.health.stop()
            print(bench.summary())
        if args.examples:
            schemathesis(stack, args.examples, args.seed)
        print(f"peak: API {hwm_mb(stack.procs[1].pid):.0f} MB, worker "
              f"{hwm_mb(stack.procs[2].pid):.0f} MB")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
