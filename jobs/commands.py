"""The shell scripts that reproduce a job's images with the ``nanobragg`` command (commands.txt):
one command line for an image, a loop over a series' images. Workers write them into a job's
folder; the API writes a series' one into its dataset."""

from __future__ import annotations


def _inputs_check(config, file_names: dict[str, str]) -> list[str]:
    """Lines that check the job's input files by sha256 (none when it has none)."""
    refs = config.file_refs()
    if not refs:
        return []
    lines = ["# Put the input files in the working directory under these names; the check",
             "# below compares them with the files the job used.",
             "sha256sum -c - <<'EOF'"]
    for ref in sorted(set(refs.values()), key=lambda r: file_names.get(r, r)):
        lines.append(f"{ref.removeprefix('sha256:')}  {file_names.get(ref, ref)}")
    lines.append("EOF")
    return lines


def commands_text(job_id: str, config, file_names: dict[str, str], version: str | None, *,
                  cell=None, hkl_artifact: str | None = None) -> str:
    """A shell script: check the inputs by sha256, then the ``nanobragg`` command line.

    For structure factors from a model or MTZ file it also shows the C program's command line,
    reading the job's P1 table (``hkl_artifact``) with the unit cell the job used (``cell``).
    """
    from sim_core.nanobragg_args import config_to_args, format_command

    command = format_command(config_to_args(config, file_names=file_names))
    lines = [
        f"# Reproduces the image of bragg job {job_id} with the nanobragg command line",
        f"# (bragg-service {version or 'unknown'}; config_sha256 {config.config_sha256()}).",
    ]
    lines += _inputs_check(config, file_names) + [command]
    sf = config.structure_factors
    if sf.model_file or sf.mtz_file:
        lines += c_program_lines(config, file_names, cell, hkl_artifact)
    return "\n".join(lines) + "\n"


def series_commands_text(job_id: str, config, file_names: dict[str, str], version: str | None,
                         images, *, width: int = 5) -> str:
    """A bash script: check the inputs by sha256, then one ``nanobragg`` command per image.

    ``config`` is the series' config (image 1's φ range, the fixed crystal seeds); ``images`` the
    :class:`~sim_core.series.SeriesImage` of every image, whose ``-phi`` and ``-seed`` the loop sets
    and whose output files it numbers.
    """
    from sim_core.nanobragg_args import config_to_args
    from sim_core.series import series_command_loop

    images = list(images)
    lines = [
        f"# Reproduces the {len(images)} images of bragg series {job_id} with the nanobragg command",
        f"# line, one image at a time (bragg-service {version or 'unknown'}; config_sha256",
        f"# {config.config_sha256()}). Each row below: image number, start angle, noise seed.",
    ]
    loop = series_command_loop(config_to_args(config, file_names=file_names, outputs="explicit"),
                               images, width=width)
    return "\n".join(lines + _inputs_check(config, file_names)) + "\n" + loop


def stills_commands_text(job_id: str, config, file_names: dict[str, str],
                         version: str | None) -> str:
    """A bash script: check the inputs by sha256, then each still's own ``nanobragg`` command (its
    drawn orientation as ``-misset``, its drawn values, its seeds; a rotation series' loop over a
    table of φ and seed cannot carry them)."""
    from sim_core.stills import stills_commands

    scan = config.scan
    lines = [
        f"# Reproduces the {scan.images} stills of bragg dataset {job_id} with the nanobragg command",
        f"# line, one image per line (bragg-service {version or 'unknown'}; config_sha256",
        f"# {config.config_sha256()}; orientation seed {scan.orientation_seed}).",
    ]
    return ("\n".join(lines + _inputs_check(config, file_names)) + "\n"
            + stills_commands(config, file_names=file_names))


def c_program_lines(config, file_names: dict[str, str], cell, hkl_artifact: str | None
                    ) -> list[str]:
    """Commented lines: the C program's command for a job whose F come from a model or MTZ file."""
    from sim_core.config import SimulationConfig
    from sim_core.nanobragg_args import config_to_args, format_command

    if hkl_artifact is None:
        return ["# The C program nanoBragg reads P1 'h k l F' files only: submit the job with the",
                "# output 'hkl' to get its structure factors as structure_factors.hkl."]
    data = config.model_dump()
    sf = data["structure_factors"]
    data["structure_factors"] = {"hkl_file": hkl_artifact, "default_F": sf["default_F"],
                                 "interpolate": sf["interpolate"]}
    crystal = data["crystal"]
    if crystal["cell"] is None and crystal["matrix_file"] is None and cell is not None:
        # the cell from the file, as the job used it (rounding only the last bits of float noise)
        crystal["cell"] = dict(zip(("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg"),
                                   (round(float(x), 10) for x in cell)))
    data["run"] = {}  # our own flags (dtype, phi mode, traces) mean nothing to the C program
    args = config_to_args(SimulationConfig.model_validate(data), file_names=file_names)
    return ["# The same image with the C program nanoBragg, from the job's P1 structure factors",
            "# (the artifact structure_factors.hkl) and the unit cell it used:",
            "# " + format_command(args, program="nanoBragg")]


__all__ = ["commands_text", "series_commands_text", "stills_commands_text", "c_program_lines"]
