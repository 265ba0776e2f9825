"""Warnings for what a submission names that the service does not do as asked: output file names.

The service names a job's files itself (``floatimage.bin``, ``intimage.img``; the output-format
table, ``sim_core.output_formats``) and writes the files its ``outputs`` list asks for, so
``-floatfile out.bin``, ``-nonoise`` or a config's ``outputs.float_file`` change nothing. The C
program would have obeyed them; a user who wrote them should hear that they were ignored, and how
to get the file they wanted.
"""

from __future__ import annotations

from sim_core.config import SimulationConfig
from sim_core.flag_table import FLAGS_BY_NAME
from sim_core.output_formats import OUTPUT_FORMATS

_BY_FIELD = {f.config_field: f for f in OUTPUT_FORMATS if f.config_field}


def _advice(field: str, outputs: list[str]) -> str:
    fmt = _BY_FIELD.get(field)
    if fmt is None:
        return "the job writes the files its 'outputs' list asks for"
    if fmt.key in outputs:
        return f"the job writes it as {fmt.artifact}"
    return (f"the job writes the files its 'outputs' list asks for; add \"{fmt.key}\" to it for "
            f"{fmt.artifact}")


def output_flag_warnings(argv: list[str], outputs: list[str]) -> list[str]:
    """One warning per output flag of a command line (``-floatfile NAME``, ``-nonoise`` ...)."""
    out = []
    for i, token in enumerate(argv):
        row = FLAGS_BY_NAME.get(token)
        if row is None or not row.output:
            continue
        if row.kind == "switch":  # -nonoise, -nopgm: the outputs list says what is written
            out.append(f"{token} is ignored: the job writes the files its 'outputs' list asks "
                       f"for ({', '.join(outputs)})")
            continue
        given = f"{token} {argv[i + 1]}" if i + 1 < len(argv) else token
        out.append(f"{given} is ignored: the service names its files itself; "
                   f"{_advice(row.fields[0], outputs)}")
    return out


def output_field_warnings(config: SimulationConfig, outputs: list[str]) -> list[str]:
    """One warning per file name a config's ``outputs`` section sets."""
    section = config.outputs
    return [f"config.outputs.{name} is ignored: the service names its files itself; "
            f"{_advice(f'outputs.{name}', outputs)}"
            for name in sorted(section.model_fields_set) if f"outputs.{name}" in _BY_FIELD]


__all__ = ["output_flag_warnings", "output_field_warnings"]
