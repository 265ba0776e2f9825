"""GET /v1/jobs/{id}/artifacts/{name}: exactly the files the job record lists."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.deps import OwnerDep
from app.errors import not_found
from jobs.job import is_series
from app.schemas import error_responses
from app.views import etag_matches
from app.routes.jobs import owned_job

router = APIRouter(tags=["artifacts"])

CONTENT_TYPES = {
    ".bin": "application/octet-stream",
    ".img": "application/octet-stream",
    ".png": "image/png",
    ".json": "application/json",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(name: str) -> str:
    for ext, ctype in CONTENT_TYPES.items():
        if name.endswith(ext):
            return ctype
    return "application/octet-stream"


def serve_artifact(request: Request, rec: dict, name: str) -> Response:
    ctx = request.app.state.ctx
    entry = next((a for a in rec.get("artifacts") or [] if a["name"] == name), None)
    if entry is None:
        raise not_found("artifact", hint="the job record lists its artifacts")
    etag = f'"{entry["sha256"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    ctype = content_type(name)
    path = ctx.store.artifact_path(rec["id"], name)
    if path is not None:
        return FileResponse(path, media_type=ctype, headers=headers)
    try:
        fh = ctx.store.open_artifact(rec["id"], name)
    except FileNotFoundError:
        raise not_found("artifact") from None
    return StreamingResponse(iter(lambda: fh.read(1 << 16), b""), media_type=ctype,
                             headers=headers)


@router.get("/v1/jobs/{job_id}/artifacts/{name}", summary="Download an artifact",
            response_class=Response,
            responses={200: {"description": "the bytes; ETag is their sha256",
                             "content": {"application/octet-stream": {}, "image/png": {},
                                         "text/plain": {"example": "ab12...  floatimage.bin\n"},
                                         "application/json": {}}},
                       **error_responses(401, 404)})
def get_artifact(job_id: str, name: str, request: Request, owner: OwnerDep):
    """``floatimage.bin``, ``intimage.img``, ``noiseimage.img``, ``preview.png``,
    ``trace_<slow>_<fast>.log``, ``run_metadata.json``, ``commands.txt``, ``sha256.txt``: whatever
    the record lists. Any other name is 404."""
    rec = owned_job(request, job_id, owner)
    if is_series(rec):
        raise not_found("artifact", hint=f"a series' files are its images': GET /v1/jobs/{job_id}"
                                         f"/images/<n>/artifacts/{name}, or the whole dataset: "
                                         f"GET /v1/jobs/{job_id}/dataset")
    return serve_artifact(request, rec, name)
