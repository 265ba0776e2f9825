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
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Iterator, Mapping, Optional, Union

from sim_core.output_formats import BY_KEY, COMMANDS, RUN_METADATA, SHA256SUMS, nexus_data_name

from jobs.context import ServiceContext
from jobs.job import Job
from jobs.store import sha256sum_text

PathLike = Union[str, "os.PathLike[str]"]
#: bytes read from a file at a time
CHUNK = 1 << 20
SEAL = SHA256SUMS


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
               compresslevel: Optional[int] = 1,
               made_at: Optional[float] = None) -> Iterator[bytes]:
    """Yield a zip of ``extra`` (name → small content, first), ``files`` and ``sha256.txt``.

    ``files`` holds :class:`DatasetFile` or ``(name, path)`` / ``(name, path, sha256)`` tuples and
    is consumed lazily. Names are relative POSIX paths (``images/image_00001.img``), each used once;
    ``sha256.txt`` is reserved. File members keep their modification time and permission bits;
    ``extra`` members and ``sha256.txt`` get the time ``made_at`` (epoch seconds; a job's end, so
    that every download of a finished job's dataset is the same bytes), else the time the stream
    started.

    Raises (while iterating): ValueError for a bad or repeated name, OSError for an unreadable
    file, :class:`ChecksumMismatch` when a file's digest differs from the one given.
    """
    sink = _Sink()
    seen: set[str] = set()
    digests: list[tuple[str, str]] = []
    started = time.localtime(made_at)[:6]
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


# -- a job's dataset ----------------------------------------------------------------------------------
#: a series image's per-image files that its dataset leaves out (the series' own cover them)
PER_IMAGE_BOOKKEEPING = ("run_metadata", "commands", "sha256")


def in_dataset(name: str) -> bool:
    """A child's artifact that a series' dataset holds (its images, traces, the P1 table)."""
    return not name.startswith(PER_IMAGE_BOOKKEEPING)


def job_dataset(ctx: ServiceContext, job: Job) -> tuple[dict[str, str], Iterator[DatasetFile]]:
    """The members of a finished job's dataset: (small files made now, files of the store).

    A single job: its artifacts (sha256.txt is made anew over the archive). A series: every
    image's files, numbered (``floatimage_00001.bin`` ...), with its trace logs and the P1 table
    once; the series' ``run_metadata.json`` (every image with its φ range, seeds, files and render
    figures, read from each image's own metadata) and ``commands.txt`` (a loop that renders every
    image with ``nanobragg``), a stills dataset each still's command instead, and
    ``experiments.expt``; with the ``nexus`` output, each child's NeXus data file and the master
    file over them, made now (:func:`nexus_master`). Each stored file is checked against the
    sha256 its record lists while it is sent."""
    if not job.is_series:
        return {}, _files(ctx, job, lambda name: name != SEAL)
    children = list(ctx.records.children(job.id))
    md = series_run_metadata(ctx, job, children)
    version = (md.get("project") or {}).get("version")
    extras = {RUN_METADATA: json.dumps(md, indent=2, sort_keys=True) + "\n"}
    if md["series"].get("stills") is not None:
        extras.update(stills_extras(ctx, job, children, version))
    else:
        extras[COMMANDS] = series_commands(job, version)
    if "nexus" in job.outputs:
        extras[BY_KEY["nexus"].artifact] = nexus_master(ctx, children)

    def files() -> Iterator[DatasetFile]:
        seen: set[str] = set()
        for child in children:
            for f in _files(ctx, child, lambda name: in_dataset(name) and name not in seen):
                seen.add(f.name)
                yield f
    return extras, files()


def nexus_master(ctx: ServiceContext, children: list[Job]) -> bytes:
    """The series' NXmx master file: every child's NeXus data file, in image order, as the frames
    of one virtual dataset (``sim_core.io.nexus_master``); a few kilobytes, made in memory."""
    from sim_core.io.nexus_master import series_master

    parts = []
    for child in sorted(children, key=lambda c: min(c.image_numbers)):
        name = nexus_data_name(min(child.image_numbers))
        path = ctx.store.artifact_path(child.id, name) if child.artifact(name) else None
        if path is None:
            raise FileNotFoundError(f"{name} of job {child.id} is not in the store")
        parts.append((name, path))
    return series_master(parts)


def _files(ctx: ServiceContext, job: Job, wanted) -> Iterator[DatasetFile]:
    for a in job.artifacts:
        if wanted(a.name):
            path = ctx.store.artifact_path(job.id, a.name)
            if path is None:
                raise FileNotFoundError(f"{a.name} of job {job.id} is not in the store")
            yield DatasetFile(a.name, path, a.sha256)


def stills_extras(ctx: ServiceContext, job: Job, children: list[Job],
                  version: str | None) -> dict[str, str]:
    """A stills dataset's own members: ``commands.txt`` with each still's command line, and
    ``experiments.expt`` (the true crystal, beam and detector of every image, each experiment
    pointing at its image file in the archive) from the images' ``truth_NNNNN.json``."""
    from sim_core.config import load_config
    from sim_core.ground_truth import experiment_list
    from sim_core.output_formats import BY_KEY, EXPERIMENTS, TRUTH, image_artifact
    from sim_core.stills import EXPT_IMAGE_KINDS

    from jobs.commands import stills_commands_text

    image = BY_KEY[next(k for k in EXPT_IMAGE_KINDS if k in job.outputs)].artifact
    truths = {}
    for child in children:
        for n in child.image_numbers:
            path = ctx.store.artifact_path(child.id, image_artifact(TRUTH, n))
            if path is None:
                raise FileNotFoundError(f"{image_artifact(TRUTH, n)} of job {child.id} is not "
                                        "in the store")
            truths[n] = json.loads(path.read_text())
    numbers = sorted(truths)
    expt = experiment_list([truths[n] for n in numbers],
                           [image_artifact(image, n) for n in numbers])
    return {COMMANDS: stills_commands_text(job.id, load_config(job.config), job.file_names,
                                           version),
            EXPERIMENTS: json.dumps(expt, indent=1) + "\n"}


def series_commands(job: Job, version: str | None) -> str:
    """The series' commands.txt: a loop that renders every image with ``nanobragg``."""
    from sim_core.config import load_config
    from sim_core.series import series_of

    from jobs.commands import series_commands_text

    cfg = load_config(job.config)
    return series_commands_text(job.id, cfg, job.file_names, version, series_of(cfg))


def series_run_metadata(ctx: ServiceContext, job: Job, children: list[Job]) -> dict:
    """The series' run_metadata.json: its config and numbering, and every image (φ range, seed,
    files with their sha256, the child job, worker and render figures of its own metadata)."""
    from sim_core.config import load_config
    from sim_core.series import numbered_name, series_metadata

    from jobs.records import iso

    cfg = load_config(job.config)
    series = series_metadata(cfg)
    by_number = {}
    project = None
    for child in children:
        sums = {a.name: a.sha256 for a in child.artifacts}
        for n in child.image_numbers:
            own = {}
            path = ctx.store.artifact_path(child.id, numbered_name(RUN_METADATA, n))
            if path is not None and path.is_file():
                own = json.loads(path.read_text())
            project = project or own.get("project")
            suffix = numbered_name("", n)  # "_00003"
            by_number[n] = {
                "job": child.id, "worker": (own.get("worker") or {}).get("name"),
                "attempt": own.get("attempt"), "device": own.get("device"),
                "render_elapsed_s": own.get("render_elapsed_s"),
                "evaluations": own.get("evaluations"), "stats": own.get("image"),
                "noise": own.get("noise"), "int_scale": own.get("int_scale"),
                "files": {name: digest for name, digest in sums.items()
                          if suffix in name and in_dataset(name)},
            }
    for im in series["image"]:
        im.update(by_number.get(im["n"], {}))
    return {
        "job_id": job.id, "kind": job.kind.value, "label": job.label or None,
        "config": json.loads(cfg.canonical_json()), "config_sha256": cfg.config_sha256(),
        "project": project, "dtype": job.dtype, "shape": job.shape,
        "outputs": job.outputs, "created_at": iso(job.created_at),
        "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
        "input_files": [{"field": f, "id": ref, "name": job.file_names.get(ref)}
                        for f, ref in sorted(cfg.file_refs().items())],
        "warnings": job.warnings,
        "series": series,
    }


__all__ = ["stream_zip", "DatasetFile", "ChecksumMismatch", "SEAL", "CHUNK", "job_dataset",
           "series_run_metadata", "series_commands", "nexus_master", "stills_extras"]
