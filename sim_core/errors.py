"""Typed exceptions of the simulator.

Every error that a user can cause carries enough context to be fixed without reading code: the flag,
field path, file and line involved. The service maps these onto 4xx answers and failed-job records.
"""

from __future__ import annotations


class SimCoreError(Exception):
    """Base class of every error raised on purpose by ``sim_core``."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class ConfigError(SimCoreError):
    """A simulation config that cannot describe a physical experiment.

    ``flag`` names the command-line flag that gave the bad value, when the config came from one.
    """

    def __init__(self, message: str, *, field: str | None = None, flag: str | None = None):
        super().__init__(message, field=field)
        self.flag = flag


class ArgumentError(SimCoreError):
    """An unknown or malformed nanoBragg command-line flag.

    A command line with several such errors raises one ArgumentError that lists them all in
    ``errors`` (each an ArgumentError naming its flag); ``flag`` is then the first one's.
    """

    def __init__(self, message: str, *, flag: str | None = None,
                 errors: list[SimCoreError] | None = None):
        super().__init__(message, field=flag)
        self.flag = flag
        self.errors = errors or [self]

    @classmethod
    def of(cls, errors: list[SimCoreError]) -> "SimCoreError":
        """One error for several: the error itself when there is one, else an ArgumentError
        whose message lists every message."""
        if len(errors) == 1:
            return errors[0]
        message = f"{len(errors)} errors in the command line: " + "; ".join(
            e.message for e in errors)
        return cls(message, flag=getattr(errors[0], "flag", None), errors=errors)


class ResourceError(SimCoreError):
    """A command that this machine cannot run: more memory than it has, or days of computing.
    ``flag`` names the flag whose value asks for it (None when the defaults do)."""

    def __init__(self, message: str, *, field: str | None = None, flag: str | None = None):
        super().__init__(message, field=field)
        self.flag = flag


class StructureFactorTableError(ResourceError):
    """A structure-factor table larger than the limit on it, known by arithmetic before any file
    is read: ``table_bytes`` (a float64 per point of its box) and ``limit`` (bytes); ``field`` is the
    config field of the file that gives it (``structure_factors.hkl_file``, ``.model_file``,
    ``.mtz_file``)."""

    def __init__(self, message: str, *, field: str | None = None, flag: str | None = None,
                 table_bytes: int = 0, limit: int = 0):
        super().__init__(message, field=field, flag=flag)
        self.table_bytes = table_bytes
        self.limit = limit


class InputFileError(SimCoreError):
    """An input file (HKL, matrix, source list, mask, model, MTZ) that is missing or malformed.

    ``line`` locates the problem in a text file, ``column`` names the MTZ column concerned.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, column: str | None = None):
        super().__init__(message, field=field)
        self.path = path
        self.line = line
        self.column = column


class DeviceError(SimCoreError):
    """The requested compute device is not available in this process."""


class RenderCancelled(SimCoreError):
    """The render was stopped between chunks by its cancel check."""

    def __init__(self, message: str = "render cancelled"):
        super().__init__(message)
