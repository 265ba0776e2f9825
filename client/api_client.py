"""A Python client of the bragg-service REST API (v1); the ``bragg`` command line uses it.

    from client.api_client import BraggClient

    with BraggClient("http://127.0.0.1:8000", token=None) as bc:
        job = bc.submit_args(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100",
                              "-lambda", "6.2", "-N", "5", "-distance", "100", "-detpixels", "256"])
        done = bc.wait(job["id"], on_update=lambda rec: print(rec["status"], rec["progress"]))
        paths = bc.fetch(job["id"], "out/")          # every artifact, checked against sha256.txt

A series (``images=N``: a rotation dataset, one parent job and child jobs) is fetched as its
dataset: one zip, streamed to disk, unpacked into a new folder with every file checked against the
zip's ``sha256.txt`` (:meth:`BraggClient.fetch_dataset`).

Input files named by nanoBragg flags (``-hkl``, ``-mat``, ``-sourcefile``, ``-mask``, ``-img``) or by a
config's file fields are uploaded first and replaced by their ids. Errors of the API raise
:class:`ApiError` with the API's ``detail``, ``hint`` and field ``errors``. docs/client.md has more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional

import httpx

from sim_core.inputs import FLAG_KINDS, INPUT_FILES

from sim_core.output_formats import SHA256SUMS

from jobs.job import TERMINAL_STATUSES
from jobs.store import sha256_file

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)
OPTIONS = ("trace_pixels", "outputs", "device", "dtype", "label")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}$")
#: the checksum list of a fetched job or dataset (``sha256sum`` format)
SEAL = SHA256SUMS
_SEAL_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
#: bytes read or written at a time while downloading and unpacking
CHUNK = 1 << 20


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

    def submit_args(self, args: list[str], *, base_dir: str | Path = ".",
                    images: int | None = None, first_image: int | None = None,
                    **options) -> dict:
        """Submit a nanoBragg command line; the files it names (relative to ``base_dir``) are
        uploaded. ``images``/``first_image`` set ``-images``/``-first_image`` in the command
        line (replacing values given there): ``images > 1`` makes a series (so does
        ``-random_orientations``, a stills dataset, even of one image). ``options``:
        trace_pixels, outputs, device, dtype, label."""
        args = with_series_args(list(args), images, first_image)
        args, files = self.upload_arg_files(args, Path(base_dir))
        body = {"nanobragg_args": args, **({"files": files} if files else {})}
        return self.submit(_with_options(body, options))

    def submit_config(self, config: dict, *, base_dir: str | Path = ".",
                      images: int | None = None, first_image: int | None = None,
                      **options) -> dict:
        """Submit a config (sim_core's SimulationConfig as a dict); file fields that are local
        paths (relative to ``base_dir``) are uploaded and replaced by their ids. ``images`` and
        ``first_image`` set ``scan.images`` and ``scan.first_image`` (``images > 1``: a
        series)."""
        config = with_series_config(json.loads(json.dumps(config)), images, first_image)
        config = self.upload_config_files(config, Path(base_dir))
        return self.submit(_with_options({"config": config}, options))

    def submit_file(self, path: str | Path, *, images: int | None = None,
                    first_image: int | None = None, **options) -> dict:
        """Submit a JSON (or YAML) file: a whole submission (with ``config`` or ``nanobragg_args``)
        or a bare config. Paths in it are relative to the file's folder. ``images`` and
        ``first_image`` set the series' size and first number in the config's ``scan`` or the
        command line's ``-images``/``-first_image``."""
        path = Path(path)
        data = load_document(path)
        if not isinstance(data, dict):
            raise ClientError(f"{path}: expected an object")
        if "config" not in data and "nanobragg_args" not in data:
            return self.submit_config(data, base_dir=path.parent, images=images,
                                      first_image=first_image, **options)
        body = dict(data)
        if "nanobragg_args" in body:
            args = with_series_args(list(body["nanobragg_args"]), images, first_image)
            args, files = self.upload_arg_files(args, path.parent, body.get("files") or {})
            body["nanobragg_args"] = args
            if files:
                body["files"] = files
        elif isinstance(body["config"], dict):
            config = with_series_config(dict(body["config"]), images, first_image)
            body["config"] = self.upload_config_files(config, path.parent)
        elif images is not None or first_image is not None:
            raise ClientError(f"{path}: its config is not an object, so the series' size "
                              "cannot be set in it (set scan.images in the file instead)")
        return self.submit(_with_options(body, options))

    def verify(self, args: list[str], sides: list[dict], *, base_dir: str | Path = ".",
               pixels=(), brightest: int = 0, phi_mode: str | None = None,
               reference_image: str | Path | None = None,
               reference_trace: str | Path | None = None, against: str | None = None,
               tolerance: float | None = None, trace_tolerance: float | None = None,
               label: str | None = None) -> dict:
        """POST /v1/verifications: the nanoBragg command line ``args`` (the files it names are
        uploaded, relative to ``base_dir``) on ``sides`` (``{"device": "cpu", "dtype":
        "float64"}``, ...), plus a reference side of the uploaded ``reference_image`` (raw
        float32) and/or ``reference_trace`` (a trace log), and a side of the earlier job
        ``against``. Returns the queued verification."""
        args, files = self.upload_arg_files(list(args), Path(base_dir))
        sides = [dict(s) for s in sides]
        if reference_image is not None or reference_trace is not None:
            ref = {}
            if reference_image is not None:
                ref["reference_image"] = self.upload(reference_image, "float_image")["id"]
            if reference_trace is not None:
                ref["reference_trace"] = self.upload(reference_trace, "trace_log")["id"]
            sides.append(ref)
        if against:
            sides.append({"against": against})
        body = {"nanobragg_args": args, "files": files, "sides": sides,
                "pixels": [list(p) for p in pixels], "brightest": brightest}
        for key, value in (("phi_mode", phi_mode), ("tolerance", tolerance),
                           ("trace_tolerance", trace_tolerance), ("label", label)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/v1/verifications", json=body).json()

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

    def jobs(self, status: str | None = None, limit: int | None = 20,
             parent: str | None = None) -> list[dict]:
        """The caller's jobs, newest first (a series once, not its children); with ``parent``
        the child jobs of that series, in image order. ``limit`` of them (None: all), across
        pages."""
        out: list[dict] = []
        cursor = None
        while limit is None or len(out) < limit:
            params = {"limit": 200 if limit is None else min(200, limit - len(out))}
            if status:
                params["status"] = status
            if parent:
                params["parent"] = parent
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", "/v1/jobs", params=params).json()
            out += page["jobs"]
            nxt = page.get("next_cursor")
            # a series' children are filtered by status after paging: a page may be empty
            # with more after it
            if not nxt or nxt == cursor or (not page["jobs"] and not parent):
                break
            cursor = nxt
        return out

    def children(self, series_id: str, status: str | None = None) -> list[dict]:
        """Every child job of a series, in image order (each has ``image_numbers``)."""
        return self.jobs(status=status, limit=None, parent=series_id)

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
    @contextlib.contextmanager
    def _streamed(self, path: str, what: str, broke: str = "") -> Iterator[httpx.Response]:
        """GET ``path`` as a stream: ApiError for an error answer, ClientError (``broke``
        appended to its message) when the connection fails or breaks while the body is read
        inside the ``with`` block."""
        try:
            with self.http.stream("GET", path) as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                yield r
        except httpx.TransportError as exc:
            raise ClientError(f"download of {what} broke: {exc}{broke}") from None

    def _download(self, path: str, what: str, dest: str | Path) -> Path:
        """Stream ``path`` into ``dest`` through ``dest.part`` and a rename."""
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        try:
            with self._streamed(path, what) as r:
                with open(part, "wb") as fh:
                    for block in r.iter_bytes(CHUNK):
                        fh.write(block)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return dest

    def download(self, job_id: str, name: str, dest: str | Path) -> Path:
        """One artifact of a job, streamed into ``dest``; returns ``dest``."""
        return self._download(f"/v1/jobs/{job_id}/artifacts/{name}", name, dest)

    def download_image(self, job_id: str, n: int, name: str, dest: str | Path) -> Path:
        """File ``name`` of image ``n`` of a series (named as a single job's artifact:
        ``floatimage.bin``, ``intimage.img``, ``image.cbf``, ``preview.png``,
        ``run_metadata.json``, ``commands.txt``, ``trace_S_F.log``), streamed into ``dest``."""
        return self._download(f"/v1/jobs/{job_id}/images/{int(n)}/artifacts/{name}",
                              f"{name} of image {n}", dest)

    def fetch(self, job_id: str, dest: str | Path | None = None) -> list[Path]:
        """Download a finished job's files into ``dest`` (default ``./<job id>``), checked.

        A single job: every artifact, each checked against the record and against
        ``sha256.txt``. A series: its dataset, through :meth:`fetch_dataset` (``dest`` must not
        exist or be an empty folder). Raises ChecksumError for a file that does not match."""
        rec = self.get(job_id)
        if rec["status"] != "finished":
            raise ClientError(f"job {job_id} is {rec['status']}, not finished")
        if rec.get("series"):
            return self.fetch_dataset(job_id, dest)
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

    def fetch_dataset(self, job_id: str, dest: str | Path | None = None) -> list[Path]:
        """Download a finished job's dataset (``GET /v1/jobs/{id}/dataset``, one zip) and unpack
        it, verified, into the new folder ``dest`` (default ``./<job id>``).

        The zip is streamed to a file (never held in memory) in a temporary folder next to
        ``dest``, and unpacked there by :func:`extract_verified`: every member's sha256 is
        checked against the zip's ``sha256.txt``, which must list exactly the other members, and
        ``sha256.txt`` is written into the folder too (``sha256sum -c sha256.txt`` works there).
        Only then is the folder renamed to ``dest`` and the zip deleted, so a broken download or
        a damaged zip leaves no ``dest`` behind. Needs room for the zip and its files at once.

        ``dest`` must not exist or be an empty folder (ClientError otherwise, before
        downloading). Returns the unpacked paths in the zip's order, ``sha256.txt`` last. Raises
        ChecksumError for a damaged or truncated zip, ClientError for a download that broke,
        ApiError for an error answer (409 while the job is not finished)."""
        dest = Path(dest or job_id)
        _check_new_folder(dest)
        broke = (f"; {dest} was not written (the service also ends a dataset early when a "
                 "stored file no longer matches its record: its log names the file)")
        with self._streamed(f"/v1/jobs/{job_id}/dataset", f"the dataset of {job_id}",
                            broke) as r:
            dest.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part",
                                         dir=dest.parent))
            try:
                zip_path = work / "dataset.zip"
                with open(zip_path, "wb") as fh:
                    for block in r.iter_bytes(CHUNK):
                        fh.write(block)
                unpacked = work / "files"
                names = extract_verified(zip_path, unpacked)
                zip_path.unlink()
                _check_new_folder(dest)
                if dest.is_dir():
                    dest.rmdir()
                os.rename(unpacked, dest)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return [dest / name for name in names]

    def reflections(self, job_id: str, n: int = 1, limit: int = 2000) -> list[dict]:
        """The predicted reflections of image ``n`` of a stills dataset (its ground truth), the
        ``limit`` strongest, each a dict of ``h, k, l, d_A, fast_px, slow_px, excitation_error,
        F, intensity``."""
        body = self._call("GET", f"/v1/jobs/{job_id}/images/{int(n)}/reflections",
                          params={"limit": limit}).json()
        return [dict(zip(body["columns"], row)) for row in body["reflections"]]

    def trace(self, job_id: str, slow: int, fast: int, *, image: int | None = None,
              timeout: float | None = 600,
              on_update: Optional[Callable[[dict], None]] = None) -> str:
        """The trace of pixel (slow, fast): served when traced, else traced now (and waited for).
        A series traces one image at a time: ``image`` is its number."""
        base = f"/v1/jobs/{job_id}" + (f"/images/{int(image)}" if image is not None else "")
        path = f"{base}/trace"
        params = {"pixel": f"{slow},{fast}"}
        for _ in range(3):
            r = self.http.get(path, params=params)
            if r.status_code == 200:
                return r.text
            if r.status_code != 404 or "trace" not in r.text:
                _raise_for(r)
            tid = (r.json() or {}).get("trace_job")
            if not tid or self.get(tid)["status"] not in ("queued", "running"):
                rt = self._call("POST", f"{base}/traces",
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
    listed = read_sha256_list(folder / SEAL)
    if not listed:
        raise ChecksumError(f"{folder}/sha256.txt lists no file")
    for name, digest in listed.items():
        p = folder / name
        if not p.is_file():
            raise ChecksumError(f"{name}: listed in sha256.txt but missing")
        if sha256_file(p) != digest:
            raise ChecksumError(f"{name}: sha256 differs from sha256.txt")
    return listed


def parse_sha256_text(text: str, where: str = SEAL) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` lines) as name -> hex, strictly: a line of any
    other form, or a name listed twice, raises ChecksumError naming the line."""
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SEAL_LINE.match(line)
        if not m:
            raise ChecksumError(f"{where} line {i} is not '<sha256>  <name>': {line[:120]!r}")
        digest, name = m.groups()
        if name in out:
            raise ChecksumError(f"{where} lists {name!r} twice")
        out[name] = digest
    return out


def _member_name_ok(name: str) -> bool:
    """A zip member name that unpacks inside the folder: relative POSIX, no ``..``, a file."""
    p = PurePosixPath(name)
    return (bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name
            and "\0" not in name and p.as_posix() == name)


def extract_verified(zip_path: str | Path, folder: str | Path) -> list[str]:
    """Unpack a dataset zip into ``folder`` (created here; it must not exist), verifying it.

    The zip's last member must be ``sha256.txt`` and must list every other member exactly once
    and nothing else; each member is unpacked as it is read and its sha256 compared with the
    listed one; ``sha256.txt`` itself is written last. Member names must stay inside ``folder``.
    Returns the member names in the zip's order. Raises ChecksumError (naming the member or the
    problem) for a truncated or damaged zip, a wrong list or a sha256 that differs; ``folder``
    may then hold part of the files, so unpack into a temporary folder and move it afterwards
    (as :meth:`BraggClient.fetch_dataset` does)."""
    zip_path, folder = Path(zip_path), Path(folder)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ChecksumError(f"{zip_path.name} is not a complete zip ({exc}): the download was "
                            "cut short or damaged") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if not names or names[-1] != SEAL:
            raise ChecksumError(f"{zip_path.name}: the last member is "
                                f"{names[-1] if names else 'missing'!r}, not {SEAL}")
        bad = [n for n in names if not _member_name_ok(n)]
        if bad:
            raise ChecksumError(f"{zip_path.name}: member names that would unpack outside the "
                                f"folder or are not files: {', '.join(map(repr, bad[:5]))}")
        twice = sorted(n for n, k in Counter(names).items() if k > 1)
        if twice:
            raise ChecksumError(f"{zip_path.name}: members named twice: {', '.join(twice)}")
        try:
            seal = zf.read(SEAL)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise ChecksumError(f"{SEAL} is damaged in {zip_path.name}: {exc}") from None
        try:
            listed = parse_sha256_text(seal.decode("utf-8"))
        except UnicodeDecodeError:
            raise ChecksumError(f"{SEAL} in {zip_path.name} is not UTF-8 text") from None
        members = names[:-1]
        unlisted = [n for n in members if n not in listed]
        absent = sorted(set(listed) - set(members))
        if unlisted or absent:
            parts = ([f"not listed: {', '.join(unlisted)}"] if unlisted else []) + \
                    ([f"listed but not in the zip: {', '.join(absent)}"] if absent else [])
            raise ChecksumError(f"{SEAL} does not list exactly the zip's other members "
                                f"({'; '.join(parts)})")
        folder.mkdir()
        for info in infos[:-1]:
            target = folder / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        h.update(block)
                        out.write(block)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise ChecksumError(f"{info.filename} is damaged in {zip_path.name}: "
                                    f"{exc}") from None
            if h.hexdigest() != listed[info.filename]:
                raise ChecksumError(f"{info.filename}: sha256 {h.hexdigest()} differs from "
                                    f"{SEAL}'s {listed[info.filename]}")
        (folder / SEAL).write_bytes(seal)
    return names


def _check_new_folder(dest: Path) -> None:
    """ClientError unless ``dest`` is absent or an empty folder (a dataset is unpacked whole)."""
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise ClientError(f"{dest} exists and is not an empty folder: a dataset is unpacked into "
                          "a new folder (give another --dir, or remove it)")


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
    """The API's rule for file names in ``files`` (jobs.store.safe_name)."""
    return bool(_NAME.match(name)) and ".." not in name


def with_series_args(args: list[str], images: int | None = None,
                     first_image: int | None = None) -> list[str]:
    """A nanoBragg command line with ``-images N`` and ``-first_image K`` set: the value after
    each such flag already there is replaced, else the flag and value are appended. None leaves
    a flag as it is."""
    out = list(args)
    for flag, value in (("-images", images), ("-first_image", first_image)):
        if value is None:
            continue
        at = [i for i, a in enumerate(out) if a == flag]
        if not at:
            out += [flag, str(value)]
        for i in at:
            if i + 1 < len(out):
                out[i + 1] = str(value)
            else:
                out.append(str(value))
    return out


def with_series_config(config: dict, images: int | None = None,
                       first_image: int | None = None) -> dict:
    """``config`` (changed in place and returned) with ``scan.images`` and ``scan.first_image``
    set where given."""
    if images is None and first_image is None:
        return config
    scan = config.get("scan")
    if scan is None:
        scan = config["scan"] = {}
    if not isinstance(scan, dict):
        raise ClientError(f"config.scan is {type(scan).__name__}, not an object: cannot set "
                          "scan.images in it")
    if images is not None:
        scan["images"] = images
    if first_image is not None:
        scan["first_image"] = first_image
    return config


def _with_options(body: dict, options: dict) -> dict:
    """``body`` with the given (not None) submission options set."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ClientError(f"unknown submission options: {', '.join(sorted(unknown))}")
    body.update({k: v for k, v in options.items() if v is not None})
    return body


__all__ = ["BraggClient", "ApiError", "ClientError", "ChecksumError", "verify_dir", "TERMINAL",
           "extract_verified", "parse_sha256_text", "with_series_args", "with_series_config"]
