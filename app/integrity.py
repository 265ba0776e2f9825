"""Artifacts are served only as recorded: every download is checked against the sha256 its job
record lists.

A file whose (path, modification time, size) was verified against its sha256 is sent from disk
at once (the verified keys are kept in a small LRU). Any other file is checked as it is read: a
small one (up to ``artifact_check_first_bytes``) whole before the answer starts, so that a
mismatch is a clean error answer; a large one while it streams (with its Content-Length), and a
mismatch ends the stream before its last block, so that no client takes the truncated body for
the file. Every mismatch is logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO, Iterator

from app.errors import ApiError

log = logging.getLogger("bragg.api")

BLOCK = 1 << 16
#: verified (path, mtime_ns, size, sha256) keys kept
_VERIFIED_KEYS = 4096
_verified: OrderedDict[tuple, None] = OrderedDict()
_lock = threading.Lock()


class ArtifactCorrupt(Exception):
    """A stored artifact's bytes differ from the sha256 its record lists."""


def _key(path: Path, st: os.stat_result, sha256: str) -> tuple:
    return (str(path), st.st_mtime_ns, st.st_size, sha256)


def is_verified(path: Path, st: os.stat_result, sha256: str) -> bool:
    key = _key(path, st, sha256)
    with _lock:
        if key in _verified:
            _verified.move_to_end(key)
            return True
    return False


def _remember(key: tuple) -> None:
    with _lock:
        _verified[key] = None
        _verified.move_to_end(key)
        while len(_verified) > _VERIFIED_KEYS:
            _verified.popitem(last=False)


def _mismatch(where: str, got: str, want: str) -> str:
    message = f"{where}: the stored bytes have sha256 {got}, not the recorded {want}"
    log.error("artifact corrupt, not served: %s", message)
    return message


def corrupt_error(what: str) -> ApiError:
    return ApiError(500, f"{what} is damaged in the store and is not served",
                    hint="its bytes differ from the sha256 its record lists; the operator is "
                         "told in the API's log")


def check_small(path: Path, st: os.stat_result, sha256: str, where: str) -> bytes:
    """The bytes of a small file, checked (ApiError 500 on a mismatch, logged)."""
    with open(path, "rb") as fh:
        data = fh.read()
    got = hashlib.sha256(data).hexdigest()
    want = sha256.removeprefix("sha256:")
    if got != want or len(data) != st.st_size:
        _mismatch(where, got, want)
        raise corrupt_error(where)
    _remember(_key(path, st, sha256))
    return data


def checked_blocks(fh: BinaryIO, sha256: str, where: str,
                   remember: tuple | None = None) -> Iterator[bytes]:
    """The file's blocks, the last one held back until the whole file's sha256 is known: a
    mismatch raises ArtifactCorrupt instead, which ends the response short."""
    h = hashlib.sha256()
    want = sha256.removeprefix("sha256:")
    try:
        held = None
        for block in iter(lambda: fh.read(BLOCK), b""):
            h.update(block)
            if held is not None:
                yield held
            held = block
        got = h.hexdigest()
        if got != want:
            raise ArtifactCorrupt(_mismatch(where, got, want))
        if remember is not None:
            _remember(remember)
        if held is not None:
            yield held
    finally:
        fh.close()


def stream_key(path: Path, st: os.stat_result, sha256: str) -> tuple:
    return _key(path, st, sha256)


__all__ = ["ArtifactCorrupt", "check_small", "checked_blocks",
           "corrupt_error", "is_verified", "stream_key"]
