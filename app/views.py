"""Job records as the API shows them (JSON), and their ETags."""

from __future__ import annotations

from .records import iso


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_view(rec: dict) -> dict:
    jid = rec["id"]
    error = None
    if rec.get("error_type"):
        error = {"type": rec["error_type"], "message": rec.get("error_message", "")}
    artifacts = [{"name": a["name"], "size": a["size"], "sha256": a["sha256"],
                  "url": f"{job_url(jid)}/artifacts/{a['name']}"}
                 for a in (rec.get("artifacts") or [])]
    return {
        "id": jid,
        "kind": rec.get("kind", "render"),
        "parent": rec.get("parent") or None,
        "label": rec.get("label") or None,
        "status": rec["status"],
        "progress": round(float(rec.get("progress") or 0.0), 4),
        "created_at": iso(rec.get("created_at")),
        "started_at": iso(rec.get("started_at")),
        "finished_at": iso(rec.get("finished_at")),
        "device": rec.get("device", ""),
        "dtype": rec.get("dtype", ""),
        "config_sha256": rec.get("config_sha256", ""),
        "error": error,
        "artifacts": artifacts,
        "outputs": rec.get("outputs") or [],
        "trace_pixels": rec.get("trace_pixels") or [],
        "shape": rec.get("shape") or [],
        "evaluations": int(rec.get("evaluations") or 0),
        "timeout_s": int(rec.get("timeout_s") or 0),
        "attempts": int(rec.get("attempts") or 0),
        "worker": rec.get("worker") or None,
        "warnings": rec.get("warnings") or [],
        "cancel_requested": rec.get("cancel") == "1",
    }


def job_etag(rec: dict) -> str:
    return f'"{rec["id"]}.{rec.get("version", "0")}"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return etag in tags or f"W/{etag}" in tags
