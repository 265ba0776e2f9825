"""POST /v1/files: store an input file by content, after checking it for its declared kind."""

from __future__ import annotations

import hashlib
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request as StarletteRequest

from sim_core.errors import InputFileError
from sim_core.inputs import KINDS
from sim_core.io.summary import MAX_BYTES

from app.context import AppContext
from app.deps import CtxDep, OwnerDep
from app.limits import check_grid
from app.errors import ApiError, invalid_field, limit_exceeded, not_found
from app.schemas import FileRecord, error_responses
from app.work import summarize_upload
from jobs.store import safe_name

router = APIRouter(tags=["files"])

#: room for the multipart boundaries and the other fields around the file
FORM_OVERHEAD = 64 * 1024

_UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file", "kind"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "kind": {"type": "string", "enum": list(KINDS),
                     "description": "; ".join(f"{k}: {about}" for k, about in KINDS.items())},
        }},
        "examples": {"hkl": {"summary": "an HKL file (app/examples/files/P1.hkl)",
                             "value": {"file": "0 0 1 100.0\n1 0 0 120.0\n", "kind": "hkl"}}},
    }},
}


def upload_limit(settings, kind: str | None) -> int:
    """Bytes a file of ``kind`` may have: max_upload_bytes, less for kinds read whole."""
    return min(settings.max_upload_bytes, MAX_BYTES.get(kind or "", settings.max_upload_bytes))


def _receive_limited(request: Request, cap: int, limit: int):
    total = 0

    async def receive():
        nonlocal total
        msg = await request.receive()
        if msg.get("type") == "http.request":
            total += len(msg.get("body", b""))
            if total > cap:
                raise limit_exceeded("file", "max_upload_bytes", total, limit, "the upload size")
        return msg

    return receive


def _store_upload(ctx: AppContext, owner: str, upload: UploadFile, kind: str, name: str) -> dict:
    """Copy the upload into the store under its sha256 and record its summary (read with bounded
    memory; runs in a worker thread, and a large file's summary in a child process, so the event
    loop keeps answering meanwhile: app/work.py)."""
    limit = upload_limit(ctx.settings, kind)
    tmp = ctx.store.scratch_file()
    try:
        h = hashlib.sha256()
        size = 0
        upload.file.seek(0)
        with open(tmp, "wb") as out:
            for block in iter(lambda: upload.file.read(1 << 20), b""):
                size += len(block)
                if size > limit:
                    raise limit_exceeded("file", "max_upload_bytes", size, limit,
                                         "the upload size")
                h.update(block)
                out.write(block)
        if size == 0:
            raise invalid_field("file", "the file is empty")
        try:
            summary = summarize_upload(ctx.settings, tmp, kind, size)
        except InputFileError as exc:
            message = str(exc).replace(str(tmp), name)
            err = {"field": "file", "message": message}
            if exc.line is not None:
                err["line"] = exc.line
            if exc.column is not None:
                err["column"] = exc.column
            raise ApiError(422, f"{name} is not a valid {kind} file", errors=[err]) from None
        if kind == "hkl":
            check_grid(ctx.settings, summary, "file", name)
        digest = h.hexdigest()
        ctx.store.put_input(tmp, digest)
        return ctx.records.put_file(owner, digest, name, size, kind, summary).public()
    finally:
        if tmp.exists():
            os.unlink(tmp)


@router.post("/v1/files", status_code=201, response_model=FileRecord,
             summary="Upload an input file (HKL, matrix, sources, mask, model, MTZ) or an image to view",
             responses=error_responses(401, 422), openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_file(request: Request, ctx: CtxDep, owner: OwnerDep):
    """Stores the bytes under their sha256. The same bytes give the same id. The file is read as
    its ``kind`` on upload, once, into the small ``summary`` that submissions use and GET shows
    (HKL ranges and counts; a model's or MTZ file's cell, space group, atoms or reflections): a
    malformed file is 422 naming the line (or the MTZ column), an HKL file whose index ranges make a
    grid beyond max_hkl_grid_points is 422 stating the ranges, the size and the limit. Matrix files
    may have 1 MiB, source lists 16 MiB, other kinds max_upload_bytes."""
    limit = ctx.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise limit_exceeded("file", "max_upload_bytes", int(length), limit, "the upload size")
    limited = StarletteRequest(request.scope, _receive_limited(request, limit + FORM_OVERHEAD,
                                                                limit))
    form = await limited.form(max_files=1, max_fields=8)
    try:
        kind = form.get("kind")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid_field("file", "send the file as the multipart field 'file'")
        if kind not in KINDS:
            raise invalid_field("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        name = os.path.basename((upload.filename or "").replace("\\", "/")) or "upload"
        if not safe_name(name):
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip("._") \
                or "upload"
        rec = await run_in_threadpool(_store_upload, ctx, owner, upload, kind, name)
    finally:
        await form.close()
    return JSONResponse(rec, status_code=201)


@router.get("/v1/files/{file_id}", response_model=FileRecord, summary="An uploaded file's record",
            responses=error_responses(401, 404))
def get_file(file_id: str, ctx: CtxDep, owner: OwnerDep):
    digest = file_id.removeprefix("sha256:")
    rec = ctx.records.get_file(owner, digest) if len(digest) == 64 else None
    if rec is None:
        raise not_found("file")
    return rec.public()


