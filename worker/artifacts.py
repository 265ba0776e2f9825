"""The reproducibility files of a job folder: run_metadata.json, commands.txt, sha256.txt."""

from __future__ import annotations

import json
from pathlib import Path

from app.records import iso
from app.store import sha256_file, sha256sum_text, write_atomic


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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


def seal(folder: Path) -> list[dict]:
    """Write sha256.txt over every other file; return the artifact list (sha256.txt included)."""
    entries = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name != "sha256.txt":
            entries.append({"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)})
    text = sha256sum_text((e["name"], e["sha256"]) for e in entries)
    write_atomic(folder / "sha256.txt", text)
    seal_entry = {"name": "sha256.txt", "size": len(text.encode()),
                  "sha256": sha256_file(folder / "sha256.txt")}
    return entries + [seal_entry]


def metadata(ctx, rec: dict, *, attempt: int, started: float, ended: float, result=None,
             config=None, report=None, peak_memory: dict | None = None, traces=()) -> dict:
    from dataclasses import asdict

    cfg = result.config if result is not None else config
    v = ctx.versions
    md = {
        "job_id": rec["id"], "kind": rec.get("kind", "render"), "label": rec.get("label") or None,
        "parent": rec.get("parent") or None,
        "config": json.loads(cfg.canonical_json()), "config_sha256": cfg.config_sha256(),
        "project": {"name": "bragg-service", "version": v.get("project"),
                    "git_commit": v.get("git_commit")},
        "python": v.get("python"), "torch": v.get("torch"), "cuda": v.get("cuda"),
        "numpy": v.get("numpy"), "platform": v.get("platform"),
        "device": result.device if result is not None else ctx.device,
        "device_name": ctx.device_name,
        "dtype": result.dtype if result is not None else cfg.run.dtype,
        "worker": {"name": ctx.name, "host": ctx.host, "pid": ctx.pid}, "attempt": attempt,
        "started_at": iso(started), "finished_at": iso(ended), "elapsed_s": round(ended - started, 6),
        "input_files": [{"field": f, "id": ref, "name": (rec.get("file_names") or {}).get(ref)}
                        for f, ref in sorted(cfg.file_refs().items())],
        "trace_pixels": [list(p) for p in traces],
        "peak_memory": peak_memory,
        "warnings": rec.get("warnings") or [],
    }
    if result is not None:
        seeds = dict(result.seeds)
        seeds.setdefault("seed", cfg.noise.seed)
        md.update({
            "seeds": seeds,
            "render_elapsed_s": round(result.elapsed_s, 6),
            "evaluations": int(result.evaluations),
            "evaluations_per_second": round(result.evaluations_per_second, 1),
            "shape": list(result.image.shape),
            "image": asdict(result.image_stats),
            "notes": list(result.experiment.notes),
            "oversample": result.experiment.oversample,
        })
        if report is not None:
            md["int_scale"] = report.int_scale
            if report.noise is not None:
                md["noise"] = {"photons": float(report.noise.photons),
                               "overloads": int(report.noise.overloads)}
    else:
        md["seeds"] = {"mosaic_seed": cfg.crystal.mosaic_seed, "seed": cfg.noise.seed,
                       "misset_seed": cfg.crystal.misset_seed}
    return md
