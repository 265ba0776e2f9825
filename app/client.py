"""A Python client of the bragg-service REST API (v1); the ``bragg`` command line uses it.

    from app.client import BraggClient

    with BraggClient("http://127.0.0.1:8000", token=None) as bc:
        job = bc.submit_args(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100",
                              "-lambda", "6.2", "-N", "5", "-distance", "100", "-detpixels", "256"])
        done = bc.wait(job["id"], on_update=lambda rec: print(rec["status"], rec["progress"]))
        paths = bc.fetch(job["id"], "out/")          # every artifact, checked against sha256.txt

Input files named by nanoBragg flags (``-hkl``, ``-mat``, ``-sourcefile``, ``-mask``, ``-img``) or by a
config's file fields are uploaded first and replaced by their ids. Errors of the API raise
:class:`ApiError` with the API's ``detail``, ``hint`` and field ``errors``. docs/client.md has more.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

import httpx

from sim_core.inputs import FLAG_KINDS, INPUT_FILES

from .store import sha256_file

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("finished", "failed", "canceled")
OPTIONS = ("trace_pixels", "outputs", "device", "dtype", "label")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}$")


class ClientError(Exception):
    """Something the client itself found wrong (a missing file, a bad checksum, a timeout)."""


class ChecksumError(ClientError):
    pass


class ApiError(ClientError):
    """An error answer of the API: ``status_code``, ``detail``, ``hint``, ``errors``."""

    def __init__(self, status_code: int, detail: str, hint: str | None = None,
                 errors: list | None = None, body: dict | None = None):
        self.status_code, self.detail, self.hint = status_code, detail, hint
        self.errors, self.body = errors or [], body or {}
        super().__init__(self.describe())

    def describe(self) -> str:
        lines = [f"{self.status_code}: {self.detail}"]
        lines += [f"  {e.get('field', '?')}: {e.get('message', '')}" for e in self.errors]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        body = r.json()
    except ValueError:
        body = {"detail": r.text[:500] or r.reason_phrase}
    detail = body.get("detail") if isinstance(body, dict) else str(body)
    if not isinstance(detail, str):  # FastAPI's own validation errors
        detail = json.dumps(detail)
    raise ApiError(r.status_code, detail, body.get("hint"), body.get("errors"), body)


def read_sha256_list(path: Path) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` lines) as name -> hex."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            out[name.lstrip("*").strip()] = digest.strip()
    return out


class BraggClient:
    """The REST API of one deployment. ``url`` and ``token`` default to ``BRAGG_URL`` and
    ``BRAGG_TOKEN`` (no token: a deployment without tokens, on loopback)."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("BRAGG_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("BRAGG_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                 transport=transport)
        #: the Idempotency-Key of the latest submission (retry with it to get that job back)
        self.last_idempotency_key: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "BraggClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc} (is the service up? "
                              "`make run` or `bragg up` starts one)") from None
        _raise_for(r)
        return r

    # -- service --------------------------------------------------------------------------------
    def ready(self) -> dict:
        """/readyz: Redis reachable and a live worker (ApiError 503 otherwise)."""
        return self._call("GET", "/readyz").json()

    # -- files ----------------------------------------------------------------------------------
    def upload(self, path: str | Path, kind: str, name: str | None = None) -> dict:
        """Upload an input file; returns its record, ``{"id": "sha256:...", ...}``."""
        path = Path(path)
        if not path.is_file():
            raise ClientError(f"{path}: no such file")
        with open(path, "rb") as fh:
            return self._call("POST", "/v1/files", data={"kind": kind},
                              files={"file": (name or path.name, fh)}).json()

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, body: dict, *, idempotency_key: str | None = None, retries: int = 4) -> dict:
        """POST /v1/jobs with a ready body (``config`` or ``nanobragg_args`` + ``files``).

        Every submission carries an ``Idempotency-Key`` (a new UUID unless given), so that it can
        be retried safely: a connection cut or a 502/503/504 is retried with the same key, with
        backoff, and the service answers a retry with the job the first request created."""
        key = idempotency_key or str(uuid.uuid4())
        self.last_idempotency_key = key
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                r = self.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                if attempt == retries:
                    raise ClientError(f"cannot reach {self.url}: {exc} (is the service up? "
                                      "`make run` or `bragg up` starts one)") from None
            else:
                if r.status_code not in (502, 503, 504) or attempt == retries:
                    _raise_for(r)
                    return r.json()
            time.sleep(delay)
            delay = min(8.0, delay * 2)
        raise AssertionError("unreachable")

    def submit_args(self, args: list[str], *, base_dir: str | Path = ".", **options) -> dict:
        """Submit a nanoBragg command line; the files it names (relative to ``base_dir``) are
        uploaded. ``options``: trace_pixels, outputs, device, dtype, label."""
        args, files = self.upload_arg_files(list(args), Path(base_dir))
        body = {"nanobragg_args": args, **({"files": files} if files else {})}
        return self.submit(_with_options(body, options))

    def submit_config(self, config: dict, *, base_dir: str | Path = ".", **options) -> dict:
        """Submit a config (sim_core's SimulationConfig as a dict); file fields that are local
        paths (relative to ``base_dir``) are uploaded and replaced by their ids."""
        config = self.upload_config_files(json.loads(json.dumps(config)), Path(base_dir))
        return self.submit(_with_options({"config": config}, options))

    def submit_file(self, path: str | Path, **options) -> dict:
        """Submit a JSON (or YAML) file: a whole submission (with ``config`` or ``nanobragg_args``)
        or a bare config. Paths in it are relative to the file's folder."""
        path = Path(path)
        data = load_document(path)
        if not isinstance(data, dict):
            raise ClientError(f"{path}: expected an object")
        if "config" not in data and "nanobragg_args" not in data:
            return self.submit_config(data, base_dir=path.parent, **options)
        body = dict(data)
        if "nanobragg_args" in body:
            args, files = self.upload_arg_files(list(body["nanobragg_args"]), path.parent,
                                                body.get("files") or {})
            body["nanobragg_args"] = args
            if files:
                body["files"] = files
        elif isinstance(body["config"], dict):
            body["config"] = self.upload_config_files(body["config"], path.parent)
        return self.submit(_with_options(body, options))

    def upload_arg_files(self, args: list[str], base_dir: Path,
                         files: dict | None = None) -> tuple[list[str], dict[str, str]]:
        """Upload the files that ``args`` name; returns the args with bare names and the map."""
        files = dict(files or {})
        by_path: dict[Path, str] = {}
        out = list(args)
        for i, a in enumerate(args[:-1]):
            kind = FLAG_KINDS.get(a)
            value = args[i + 1]
            if kind is None or value in files:
                continue
            local = (base_dir / value).resolve()
            if not local.is_file():
                raise ClientError(f"{a} names {value}, which is not a file here "
                                  f"(looked for {local})")
            name = by_path.get(local)
            if name is None:
                name = local.name if _safe(local.name) else f"input.{kind}"
                n = 1
                while name in files:
                    n += 1
                    name = f"{n}_{local.name if _safe(local.name) else kind}"
                files[name] = self.upload(local, kind, name)["id"]
                by_path[local] = name
            out[i + 1] = name
        return out, files

    def upload_config_files(self, config: dict, base_dir: Path) -> dict:
        for f in INPUT_FILES:
            section, key = f.field.split(".")
            ref = (config.get(section) or {}).get(key)
            if isinstance(ref, str) and not ref.startswith("sha256:"):
                config[section][key] = self.upload(base_dir / ref, f.kind)["id"]
        return config

    def get(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self, status: str | None = None, limit: int = 20) -> list[dict]:
        """The caller's jobs, newest first (``limit`` of them, across pages)."""
        out: list[dict] = []
        cursor = None
        while len(out) < limit:
            params = {"limit": min(200, limit - len(out))}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", "/v1/jobs", params=params).json()
            out += page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor or not page["jobs"]:
                break
        return out

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's records as the events stream sends them, until the terminal one."""
        timeout = httpx.Timeout(30.0, read=120.0)
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                data: list[str] = []
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except httpx.TransportError as exc:
            raise ClientError(f"events stream of {job_id} broke: {exc}") from None

    def wait(self, job_id: str, *, timeout: float | None = None,
             on_update: Optional[Callable[[dict], None]] = None, poll_s: float = 0.5) -> dict:
        """Follow the job until it ends; returns its last record. ``on_update(record)`` is called
        at each status or progress change. Uses the events stream, polling if that breaks."""
        deadline = None if timeout is None else time.monotonic() + timeout
        rec = None
        try:
            for rec in self.events(job_id):
                if on_update:
                    on_update(rec)
                if rec["status"] in TERMINAL:
                    return rec
                if deadline is not None and time.monotonic() > deadline:
                    break
        except ClientError as exc:
            if isinstance(exc, ApiError):
                raise
        while deadline is None or time.monotonic() <= deadline:
            new = self.get(job_id)
            if on_update and (rec is None or (new["status"], new["progress"])
                              != (rec["status"], rec["progress"])):
                on_update(new)
            rec = new
            if rec["status"] in TERMINAL:
                return rec
            time.sleep(poll_s)
        raise ClientError(f"job {job_id} did not end within {timeout} s "
                          f"(last: {rec['status'] if rec else 'unknown'})")

    # -- artifacts and traces ---------------------------------------------------------------------
    def download(self, job_id: str, name: str, dest: str | Path) -> Path:
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/artifacts/{name}") as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                with open(part, "wb") as fh:
                    for block in r.iter_bytes(1 << 20):
                        fh.write(block)
        except httpx.TransportError as exc:
            part.unlink(missing_ok=True)
            raise ClientError(f"download of {name} broke: {exc}") from None
        os.replace(part, dest)
        return dest

    def fetch(self, job_id: str, dest: str | Path | None = None) -> list[Path]:
        """Download every artifact of a finished job into ``dest`` (default ``./<job id>``) and
        check each against the record and against ``sha256.txt``; raises ChecksumError."""
        rec = self.get(job_id)
        if rec["status"] != "finished":
            raise ClientError(f"job {job_id} is {rec['status']}, not finished")
        dest = Path(dest or job_id)
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for a in rec["artifacts"]:
            p = self.download(job_id, a["name"], dest / a["name"])
            if sha256_file(p) != a["sha256"]:
                raise ChecksumError(f"{a['name']}: sha256 differs from the job record")
            paths.append(p)
        verify_dir(dest)
        return paths

    def trace(self, job_id: str, slow: int, fast: int, *, timeout: float | None = 600,
              on_update: Optional[Callable[[dict], None]] = None) -> str:
        """The trace of pixel (slow, fast): served when traced, else traced now (and waited for)."""
        path = f"/v1/jobs/{job_id}/trace"
        params = {"pixel": f"{slow},{fast}"}
        for _ in range(3):
            r = self.http.get(path, params=params)
            if r.status_code == 200:
                return r.text
            if r.status_code != 404 or "trace" not in r.text:
                _raise_for(r)
            tid = (r.json() or {}).get("trace_job")
            if not tid or self.get(tid)["status"] not in ("queued", "running"):
                rt = self._call("POST", f"/v1/jobs/{job_id}/traces",
                                json={"pixels": [[slow, fast]]}).json()
                tid = (rt.get("trace_job") or {}).get("id")
            if tid:
                end = self.wait(tid, timeout=timeout, on_update=on_update)
                if end["status"] != "finished":
                    err = end.get("error") or {}
                    raise ClientError(f"trace job {tid} ended {end['status']}: "
                                      f"{err.get('message', '')}")
        r = self.http.get(path, params=params)
        _raise_for(r)
        return r.text


def verify_dir(folder: str | Path) -> dict[str, str]:
    """Check the files of a fetched job against its ``sha256.txt`` (like ``sha256sum -c``)."""
    folder = Path(folder)
    listed = read_sha256_list(folder / "sha256.txt")
    if not listed:
        raise ChecksumError(f"{folder}/sha256.txt lists no file")
    for name, digest in listed.items():
        p = folder / name
        if not p.is_file():
            raise ChecksumError(f"{name}: listed in sha256.txt but missing")
        if sha256_file(p) != digest:
            raise ChecksumError(f"{name}: sha256 differs from sha256.txt")
    return listed


def load_document(path: Path):
    text = Path(path).read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ClientError(f"{path}: YAML needs PyYAML (pip install pyyaml)") from None
        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"{path}: not JSON: {exc}") from None


def _safe(name: str) -> bool:
    """The API's rule for file names in ``files`` (app.store.safe_name)."""
    return bool(_NAME.match(name)) and ".." not in name


def _with_options(body: dict, options: dict) -> dict:
    """``body`` with the given (not None) submission options set."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ClientError(f"unknown submission options: {', '.join(sorted(unknown))}")
    body.update({k: v for k, v in options.items() if v is not None})
    return body


__all__ = ["BraggClient", "ApiError", "ClientError", "ChecksumError", "verify_dir", "TERMINAL"]
