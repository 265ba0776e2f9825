"""Source lists (``-sourcefile``): one X-ray source per line, ``X Y Z weight lambda``.

Read with the rules of nanoBragg's ``read_text_file`` for five columns: fields are separated by any
run of the characters ``" \\t,;:!"``, blank lines are skipped, columns after the fifth are ignored, and
missing trailing columns are reported as None (NaN in C) so that the caller fills in the defaults
(position ``-source_distance * beam``, weight 1, the nominal wavelength). X, Y, Z give the source
position (only its direction matters to nanoBragg), lambda is in metres.

Deliberate differences from the C program, which reads anything through ``atof``:

* a field that is not a number (``abc``, ``1.0x``) raises :class:`~sim_core.errors.InputFileError`
  naming the file and line, where C silently reads 0;
* lines starting with ``#`` are skipped as comments (C would read them as a source at the origin);
* a last line without a newline, or CRLF line ends, do not turn the missing columns into 0 (C does);
* an explicit ``nan`` is reported as None, which is what C's ``isnan`` test makes of it anyway.
"""

from __future__ import annotations

import math
import os
import re
from typing import NamedTuple, Optional, Union

from ..errors import InputFileError
from .textfile import read_text

PathLike = Union[str, "os.PathLike[str]"]

_DELIMITERS = re.compile(r"[ \t,;:!\r]+")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\Z",
                     re.IGNORECASE)
_COLUMNS = ("X", "Y", "Z", "weight", "lambda")


class SourceRow(NamedTuple):
    """One line of a source file; None where the column is missing."""

    x: Optional[float]
    y: Optional[float]
    z: Optional[float]
    weight: Optional[float]
    wavelength_m: Optional[float]


def read_source_file(path: PathLike) -> list[SourceRow]:
    """Read a source list: one :class:`SourceRow` per non-blank line, in file order.

    Raises:
        InputFileError: missing file, a non-numeric field (file, line and column named), or a file
            without any source.
    """
    name = os.fspath(path)
    text = read_text(path, "source file")
    rows: list[SourceRow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        fields = [f for f in _DELIMITERS.split(line) if f]
        if not fields or fields[0].startswith("#"):
            continue
        values: list[Optional[float]] = []
        for column, field in zip(_COLUMNS, fields):
            if not _NUMBER.match(field):
                raise InputFileError(f"{name} line {number}: column {column} is not a number: "
                                     f"'{field[:40]}' (expected 'X Y Z weight lambda')",
                                     path=name, line=number)
            value = float(field)
            values.append(None if math.isnan(value) else value)
        values.extend([None] * (len(_COLUMNS) - len(values)))
        rows.append(SourceRow(*values))
    if not rows:
        raise InputFileError(f"{name}: no sources in file", path=name)
    return rows


__all__ = ["SourceRow", "read_source_file"]
