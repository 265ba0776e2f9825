"""The reproducibility files of a job folder: run_metadata.json, commands.txt, sha256.txt."""

from __future__ import annotations

import json
from pathlib import Path

from sim_core.output_formats import SHA256SUMS

from jobs.context import WorkerServices
from jobs.job import Artifact, Job
from jobs.records import iso
from jobs.store import sha256_file, sha256sum_text, write_atomic


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def seal(folder: Path) -> list[Artifact]:
    """Write sha256.txt over every other file; return the artifact list (sha256.txt included)."""
    entries = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name != SHA256SUMS:
            entries.append(Artifact(name=p.name, size=p.stat().st_size, sha256=sha256_file(p)))
    text = sha256sum_text((e.name, e.sha256) for e in entries)
    write_atomic(folder / SHA256SUMS, text)
    return entries + [Artifact(name=SHA256SUMS, size=len(text.encode()),
                               sha256=sha256_file(folder / SHA256SUMS))]


def metadata(ctx: WorkerServices, job: Job, *, attempt: int, started: float, ended: float,
             result=None, config=None, report=None, peak_memory: dict | None = None, traces=(),
             warnings: list[str] = ()) -> dict:
    from dataclasses import asdict

    cfg = result.config if result is not None else config
    v = ctx.versions
    md = {
        "job_id": job.id, "kind": job.kind.value, "label": job.label or None,
        "parent": job.parent or None,
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
        "input_files": [{"field": f, "id": ref, "name": job.file_names.get(ref)}
                        for f, ref in sorted(cfg.file_refs().items())],
        "trace_pixels": [list(p) for p in traces],
        "peak_memory": peak_memory,
        "warnings": list(warnings),
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
