"""The last step of /openapi.json: the contract a generated client is built from.

FastAPI writes what the routes declare, with three gaps a client generator trips on: an error
declared on a route whose success is text or bytes lands under that media type (the trace routes'
errors read as ``text/plain``); a route with parameters and no 422 of its own gets FastAPI's
``HTTPValidationError``, a shape this API never answers (its 422 is :class:`ErrorBody`, from
``app/errors.py``); and a download declared by media type alone has no schema, so generators drop
it. :func:`finish` closes them for every route at once:

* every error response (4xx, 5xx) is ``application/json`` with the ``ErrorBody`` schema, keeping
  its example; every ``/v1/`` route declares 401 (tokens), 503 (Redis unreachable) and, where it
  takes a JSON body, 413 (``max_body_bytes``), because the guard and the exception handlers answer
  them for any route;
* byte downloads get ``{"type": "string", "format": "binary"}``, text ``{"type": "string"}``.

``tests/service/test_generated_client.py`` checks that no response of the document lacks a schema
and builds a client from it with ``openapi-python-client``.
"""

from __future__ import annotations

from app.guard import UPLOAD_PATHS
from app.schemas import ERROR_EXAMPLES

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
BINARY = {"type": "string", "format": "binary"}
TEXT = {"type": "string"}
#: FastAPI's own 422 shape, replaced by ErrorBody (the API's handlers never answer it)
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_DESCRIPTIONS = {401: "no or an unknown bearer token", 404: "not found (or another owner's)",
                 409: "not in a state that allows it", 413: "the request body is too large",
                 422: "invalid input: every field at fault, by its path",
                 503: "the job store (Redis) is unavailable; try again later"}


def binary(*media_types: str) -> dict:
    """The ``content`` of a download served as any of ``media_types``."""
    return {m: {"schema": dict(TEXT if m.startswith("text/") else BINARY)} for m in media_types}


def _error_response(code: int, old: dict | None) -> dict:
    example = None
    for media in (old or {}).get("content", {}).values():
        example = media.get("example", example)
    if example is None:
        example = ERROR_EXAMPLES.get(code)
    content: dict = {"schema": dict(ERROR_REF)}
    if example is not None:
        content["example"] = example
    description = (old or {}).get("description")
    if not description or description in ("Validation Error", "Additional Response"):
        description = _DESCRIPTIONS.get(code, "error")
    return {"description": description, "content": {"application/json": content}}


def _schema_for(media: str) -> dict | None:
    """Bytes and text need no model; a JSON answer does, from its route (left missing here, so
    the test of the document finds a route that forgot it)."""
    if media.startswith("text/"):
        return dict(TEXT)
    if media == "application/json" or media.endswith("+json"):
        return None
    return dict(BINARY)


def finish(doc: dict, public_paths: tuple[str, ...]) -> dict:
    """Complete the generated document in place (see the module's description)."""
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            implied = []
            if path.startswith("/v1/"):
                implied = [503] if path in public_paths else [401, 503]
                # an upload's size is its route's own 422 (max_upload_bytes, per kind)
                if "requestBody" in op and path not in UPLOAD_PATHS:
                    implied.append(413)
            for code in implied:
                responses.setdefault(str(code), None)
            for code, resp in list(responses.items()):
                if code[:1] in ("4", "5"):
                    responses[code] = _error_response(int(code), resp)
                    continue
                for media, body in (resp.get("content") or {}).items():
                    schema = body.get("schema") or _schema_for(media)
                    if schema is not None:
                        body["schema"] = schema
    schemas = doc.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    return doc


__all__ = ["finish", "binary", "BINARY", "ERROR_REF"]
