"""Reading an input text file with errors that name it (shared by the HKL, matrix and source readers),
and the sha256 that identifies an input file."""

from __future__ import annotations

import hashlib
import os
from typing import Union

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]


def read_text(path: PathLike, what: str) -> str:
    """The file's text (latin-1, so any byte reads); InputFileError naming the file otherwise."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("latin-1")
    except FileNotFoundError as exc:
        raise InputFileError(f"{name}: {what} not found", path=name) from exc
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read {what} ({exc.strerror or exc})",
                             path=name) from exc


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
