"""The artifact store: uploaded input files (by content) and one folder of artifacts per job.

Bytes live here, never in Redis. :class:`ArtifactStore` is the interface the API and the workers use;
:class:`LocalStore` keeps everything in a directory tree (``BRAGG_DATA_DIR``)::

    files/<hex[:2]>/<hex>          uploaded inputs, named by their sha256
    jobs/<job id>/<artifact>       a finished job's artifacts
    tmp/                           uploads being received, job folders being written

Nothing is ever visible half-written: a file is written under a temporary name and renamed; a job's
folder is filled under ``tmp/`` and renamed into ``jobs/`` as a whole. An object store can replace
this class by implementing the same methods (``input_path`` would then download to a local cache).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

from sim_core.io.textfile import sha256_file

_HEX = re.compile(r"^[0-9a-f]{64}$")
_JOB = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}$")


#: errno -> (HTTP status, what to say) of a data folder that cannot be written; no path in it
_DISK_ERRORS = {
    errno.ENOSPC: (507, "the service's data folder is full"),
    errno.EDQUOT: (507, "the service's data folder is over its quota"),
    errno.EROFS: (503, "the service's data folder is read-only"),
    errno.EACCES: (503, "the service may not write its data folder"),
    errno.EPERM: (503, "the service may not write its data folder"),
}


def disk_error(exc: OSError) -> tuple[int, str] | None:
    """How to report a storage failure (None for another OSError)."""
    return _DISK_ERRORS.get(exc.errno)


def safe_name(name: str) -> bool:
    """A plain file name: no directories, no leading dot."""
    return bool(_NAME.match(name)) and ".." not in name


def sha256sum_text(entries) -> str:
    """``sha256sum`` output for ``(name, hex digest)`` pairs: ``<hex>  <name>`` lines, in order."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ArtifactStore(ABC):
    # -- inputs -----------------------------------------------------------------------------------
    @abstractmethod
    def scratch_file(self) -> Path:
        """An empty local file to receive an upload (give it to put_input or unlink it)."""

    @abstractmethod
    def put_input(self, src: Path, digest: str) -> None:
        """Move the local file ``src`` into the store as the input with sha256 ``digest``."""

    @abstractmethod
    def has_input(self, digest: str) -> bool: ...

    @abstractmethod
    def remove_input(self, digest: str) -> None:
        """Remove an input no owner keeps any more (retention)."""

    @abstractmethod
    def input_path(self, digest: str) -> Path:
        """A readable local path of an input file."""

    # -- job folders --------------------------------------------------------------------------------
    @abstractmethod
    def staging_dir(self, job_id: str, attempt: int) -> Path:
        """A fresh, empty local folder in which a job attempt writes its artifacts."""

    @abstractmethod
    def commit(self, job_id: str, staging: Path) -> None:
        """Publish ``staging`` as the job's folder, replacing any earlier one, in one step."""

    @abstractmethod
    def discard(self, staging: Path) -> None: ...

    @abstractmethod
    def sweep(self, job_id: str) -> None:
        """Remove every staging folder of ``job_id`` (left behind by a killed worker)."""

    @abstractmethod
    def remove_job(self, job_id: str) -> None: ...

    @abstractmethod
    def remove_stale_tmp(self, max_age_s: float, running: set[str] = frozenset()) -> int:
        """Remove temporary files and folders older than ``max_age_s`` (but not the staging
        folders of the ``running`` jobs); returns how many."""

    @abstractmethod
    def artifact_path(self, job_id: str, name: str) -> Path | None:
        """A local path of a published artifact (None where the store cannot give one)."""

    @abstractmethod
    def open_artifact(self, job_id: str, name: str) -> BinaryIO: ...


class LocalStore(ArtifactStore):
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.files = self.root / "files"
        self.jobs = self.root / "jobs"
        self.tmp = self.root / "tmp"
        for d in (self.files, self.jobs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- inputs -----------------------------------------------------------------------------------
    def scratch_file(self) -> Path:
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp)
        os.close(fd)
        return Path(tmp)

    def _input(self, digest: str) -> Path:
        if not _HEX.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.files / digest[:2] / digest

    def put_input(self, src: Path, digest: str) -> None:
        dest = self._input(digest)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(src, 0o644)
        os.replace(src, dest)  # same bytes under the same name: replacing is harmless

    def has_input(self, digest: str) -> bool:
        return self._input(digest).is_file()

    def input_path(self, digest: str) -> Path:
        return self._input(digest)

    def remove_input(self, digest: str) -> None:
        self._input(digest).unlink(missing_ok=True)

    # -- job folders --------------------------------------------------------------------------------
    def _job(self, job_id: str) -> Path:
        if not _JOB.match(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return self.jobs / job_id

    def staging_dir(self, job_id: str, attempt: int) -> Path:
        self._job(job_id)
        path = self.tmp / f"job-{job_id}-a{attempt}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        return path

    def commit(self, job_id: str, staging: Path) -> None:
        dest = self._job(job_id)
        for _ in range(5):
            if dest.exists():
                old = self.tmp / f"old-{job_id}-{uuid.uuid4().hex[:8]}"
                try:
                    os.rename(dest, old)
                except FileNotFoundError:
                    pass
                else:
                    shutil.rmtree(old, ignore_errors=True)
            try:
                os.rename(staging, dest)
                return
            except OSError:
                continue
        raise OSError(f"could not publish the folder of job {job_id}")

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def sweep(self, job_id: str) -> None:
        self._job(job_id)
        for p in self.tmp.glob(f"job-{job_id}-a*"):
            shutil.rmtree(p, ignore_errors=True)

    def remove_job(self, job_id: str) -> None:
        dest = self._job(job_id)
        if dest.exists():
            old = self.tmp / f"old-{job_id}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(dest, old)
            except FileNotFoundError:
                return
            shutil.rmtree(old, ignore_errors=True)

    def remove_stale_tmp(self, max_age_s: float, running: set[str] = frozenset()) -> int:
        cutoff = time.time() - max_age_s
        n = 0
        for p in self.tmp.iterdir():
            if p.name.startswith("job-") and p.name[4:].partition("-a")[0] in running:
                continue
            try:
                if p.lstat().st_mtime >= cutoff:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                n += 1
            except FileNotFoundError:
                continue
        return n

    def artifact_path(self, job_id: str, name: str) -> Path | None:
        if not safe_name(name):
            return None
        p = self._job(job_id) / name
        return p if p.is_file() else None

    def open_artifact(self, job_id: str, name: str) -> BinaryIO:
        p = self.artifact_path(job_id, name)
        if p is None:
            raise FileNotFoundError(name)
        return open(p, "rb")


def open_store(settings) -> ArtifactStore:
    return LocalStore(settings.data_dir)


__all__ = ["ArtifactStore", "LocalStore", "open_store", "write_atomic", "sha256_file",
           "sha256sum_text", "safe_name"]
