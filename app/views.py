"""Job records as the API shows them (JSON), and their ETags."""

from __future__ import annotations

from jobs.job import Job, JobKind
from jobs.records import iso


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_view(job: Job) -> dict:
    """The public view of a job (``JobRecord`` in app/schemas.py)."""
    jid = job.id
    error = {"type": job.error_type, "message": job.error_message} if job.error_type else None
    artifacts = [{"name": a.name, "size": a.size, "sha256": a.sha256,
                  "url": f"{job_url(jid)}/artifacts/{a.name}"} for a in job.artifacts]
    return {
        "id": jid,
        "kind": job.kind.value,
        "parent": job.parent or None,
        "label": job.label or None,
        "status": job.status.value,
        "progress": round(job.progress, 4),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "device": job.device,
        "dtype": job.dtype,
        "config_sha256": job.config_sha256,
        "error": error,
        "artifacts": artifacts,
        "outputs": job.outputs,
        "trace_pixels": job.trace_pixels,
        "shape": job.shape,
        "evaluations": job.evaluations,
        "timeout_s": job.timeout_s,
        "attempts": job.attempts,
        "worker": job.worker or None,
        "warnings": job.warnings,
        "cancel_requested": job.cancel,
        "series": series_view(job),
        "image_numbers": job.image_numbers,
        "verification": verification_view(job),
    }


def verification_view(job: Job) -> dict | None:
    """A verification's sides, pixels and verdict (None for any other job)."""
    if job.kind is not JobKind.verification:
        return None
    spec = job.verification
    return {"sides": spec.get("sides", []), "pixels": spec.get("pixels", []),
            "brightest": spec.get("brightest", 0), "tolerance": spec.get("tolerance"),
            "trace_tolerance": spec.get("trace_tolerance"), "verdict": job.verdict or None,
            "children_url": f"/v1/jobs?parent={job.id}" if job.children else None}


def series_view(job: Job) -> dict | None:
    """What a series' record says of its images (None for any other job)."""
    if not job.is_series:
        return None
    base = job_url(job.id)
    return {
        "images": job.images,
        "first_image": job.first_image,
        "images_done": job.images_done,
        "images_failed": job.images_failed,
        "images_canceled": job.images_canceled,
        "children": job.children,
        "children_ended": job.children_ended,
        "failures": job.failures,
        "children_url": f"/v1/jobs?parent={job.id}",
        "image_url": f"{base}/images/{{n}}/artifacts/{{name}}",
        "dataset_url": f"{base}/dataset",
    }


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return etag in tags or f"W/{etag}" in tags
