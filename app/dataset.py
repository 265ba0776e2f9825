"""A dataset as one zip, streamed: files from disk, a few small files from memory, one sha256.txt.

:func:`stream_zip` yields the bytes of a zip archive chunk by chunk, reading each file as it goes,
so a dataset of any size is sent with memory bounded by a few chunks: hand the generator to a
``StreamingResponse``. The archive is written as to a pipe (entries carry data descriptors and, past
4 GiB, ZIP64 records), which every unzip tool reads. The last member, ``sha256.txt``, lists the
sha256 of every other member in ``sha256sum`` format, computed from the bytes as they were sent;
a file whose expected digest is given and differs aborts the stream (the client is left with a
truncated zip, never a wrong one).
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Iterator, Mapping, Optional, Union

from app.store import sha256sum_text

PathLike = Union[str, "os.PathLike[str]"]
#: bytes read from a file at a time
CHUNK = 1 << 20
SEAL = "sha256.txt"


class ChecksumMismatch(Exception):
    """A file's bytes did not have the sha256 its record promised."""


@dataclass(frozen=True)
class DatasetFile:
    """A file of the archive: its name there, where it is, and optionally its known sha256."""

    name: str
    path: PathLike
    sha256: Optional[str] = None


class _Sink:
    """A write-only, unseekable stream that hands over what was written since the last call."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _check_name(name: str, seen: set[str]) -> None:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or name != p.as_posix():
        raise ValueError(f"not a relative archive name: {name!r}")
    if name in seen or name == SEAL:
        raise ValueError(f"archive name used twice: {name!r}")
    seen.add(name)


def _set_level(info: zipfile.ZipInfo, level: Optional[int]) -> None:
    # ZipFile.open(ZipInfo, "w") takes the level from the ZipInfo (renamed in Python 3.13)
    if hasattr(info, "compress_level"):
        info.compress_level = level
    else:
        info._compresslevel = level


def stream_zip(files: Iterable[Union[DatasetFile, tuple]],
               extra: Optional[Mapping[str, Union[bytes, str]]] = None, *,
               chunk_size: int = CHUNK, compression: int = zipfile.ZIP_DEFLATED,
               compresslevel: Optional[int] = 1) -> Iterator[bytes]:
    """Yield a zip of ``extra`` (name → small content, first), ``files`` and ``sha256.txt``.

    ``files`` holds :class:`DatasetFile` or ``(name, path)`` / ``(name, path, sha256)`` tuples and
    is consumed lazily. Names are relative POSIX paths (``images/image_00001.img``), each used once;
    ``sha256.txt`` is reserved. File members keep their modification time and permission bits;
    ``extra`` members and ``sha256.txt`` get the time the stream started.

    Raises (while iterating): ValueError for a bad or repeated name, OSError for an unreadable
    file, :class:`ChecksumMismatch` when a file's digest differs from the one given.
    """
    sink = _Sink()
    seen: set[str] = set()
    digests: list[tuple[str, str]] = []
    started = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=compression, allowZip64=True) as zf:

        def member(info: zipfile.ZipInfo, blocks: Iterable[bytes]) -> Iterator[bytes]:
            info.compress_type = compression
            _set_level(info, compresslevel)
            h = hashlib.sha256()
            with zf.open(info, "w", force_zip64=info.file_size * 1.05 > zipfile.ZIP64_LIMIT) as out:
                for block in blocks:
                    h.update(block)
                    out.write(block)
                    data = sink.take()
                    if data:
                        yield data
            digests.append((info.filename, h.hexdigest()))
            data = sink.take()  # the data descriptor
            if data:
                yield data

        def small(name: str, content: Union[bytes, str]) -> Iterator[bytes]:
            data = content.encode() if isinstance(content, str) else bytes(content)
            info = zipfile.ZipInfo(name, date_time=started)
            info.external_attr = 0o644 << 16
            info.file_size = len(data)
            yield from member(info, [data])

        for name, content in (extra or {}).items():
            _check_name(name, seen)
            yield from small(name, content)
        for item in files:
            f = item if isinstance(item, DatasetFile) else DatasetFile(*item)
            _check_name(f.name, seen)
            info = zipfile.ZipInfo.from_file(f.path, f.name)
            with open(f.path, "rb") as fh:
                yield from member(info, iter(lambda: fh.read(chunk_size), b""))
            if f.sha256 is not None and digests[-1][1] != f.sha256.removeprefix("sha256:"):
                raise ChecksumMismatch(f"{f.name}: sha256 {digests[-1][1]} differs from the "
                                       f"recorded {f.sha256}")
        yield from small(SEAL, sha256sum_text(sorted(digests)))
    yield sink.take()  # the central directory


__all__ = ["stream_zip", "DatasetFile", "ChecksumMismatch", "SEAL", "CHUNK"]
