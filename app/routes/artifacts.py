"""GET /v1/jobs/{id}/artifacts/{name}: exactly the files the job record lists."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from sim_core.output_formats import content_type

from app.context import AppContext
from app.deps import CtxDep, OwnedJobDep
from app.errors import not_found
from app.contract import binary
from app.integrity import check_small, checked_blocks, is_verified, stream_key
from app.schemas import error_responses
from app.views import etag_matches
from jobs.job import Job

router = APIRouter(tags=["artifacts"])
#: an artifact's bytes: images as bytes, text files as text, run_metadata.json as JSON
ARTIFACT_CONTENT = {**binary("application/octet-stream", "image/png"),
                    "text/plain": {"schema": {"type": "string"},
                                   "example": "ab12...  floatimage.bin\n"},
                    "application/json": {"schema": {"type": "object"}}}


def serve_artifact(request: Request, ctx: AppContext, job: Job, name: str) -> Response:
    entry = job.artifact(name)
    if entry is None:
        raise not_found("artifact", hint="the job record lists its artifacts")
    etag = f'"{entry.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    ctype = content_type(name)
    where = f"job {job.id} artifact {name}"
    path = ctx.store.artifact_path(job.id, name)
    if path is not None:
        # checked against the record's sha256 before (small files) or while (large) it is sent
        st = os.stat(path)
        if is_verified(path, st, entry.sha256):
            return FileResponse(path, media_type=ctype, headers=headers, stat_result=st)
        if st.st_size <= ctx.settings.artifact_check_first_bytes:
            return Response(check_small(path, st, entry.sha256, where), media_type=ctype,
                            headers=headers)
        blocks = checked_blocks(open(path, "rb"), entry.sha256, where,
                                stream_key(path, st, entry.sha256))
        return StreamingResponse(blocks, media_type=ctype,
                                 headers={**headers, "Content-Length": str(st.st_size)})
    try:
        fh = ctx.store.open_artifact(job.id, name)
    except FileNotFoundError:
        raise not_found("artifact") from None
    return StreamingResponse(checked_blocks(fh, entry.sha256, where), media_type=ctype,
                             headers=headers)


@router.get("/v1/jobs/{job_id}/artifacts/{name}", summary="Download an artifact",
            response_class=Response,
            responses={200: {"description": "the bytes; ETag is their sha256",
                             "content": ARTIFACT_CONTENT},
                       **error_responses(401, 404)})
def get_artifact(job: OwnedJobDep, name: str, request: Request, ctx: CtxDep):
    """``floatimage.bin``, ``intimage.img``, ``noiseimage.img``, ``preview.png``,
    ``trace_<slow>_<fast>.log``, ``run_metadata.json``, ``commands.txt``, ``sha256.txt``: whatever
    the record lists. Any other name is 404."""
    if job.is_series:
        raise not_found("artifact", hint=f"a series' files are its images': GET /v1/jobs/{job.id}"
                                         f"/images/<n>/artifacts/{name}, or the whole dataset: "
                                         f"GET /v1/jobs/{job.id}/dataset")
    return serve_artifact(request, ctx, job, name)
