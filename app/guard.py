"""Bounded work before a route runs (pure ASGI, so nothing of the body is read first):

* a request with a body to ``/v1/`` gets its 401 from the ``Authorization`` header alone;
* a JSON body (any body but a file upload) over ``max_body_bytes`` is 413, from its
  ``Content-Length`` or, without one, as soon as the bytes received pass the limit; an upload's own
  limit is checked by its route (max_upload_bytes, per kind);
* ``OPTIONS`` on a route answers 204 with every method its path serves in ``Allow``.
"""

from __future__ import annotations

import json

from starlette.routing import Match

from app.errors import TOKEN_HINT

_BODY_METHODS = {b"POST", b"PUT", b"PATCH", "POST", "PUT", "PATCH"}
UPLOAD_PATHS = ("/v1/files",)


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class BodyTooLarge(Exception):
    pass


class RequestGuard:
    def __init__(self, app, ctx_of):
        self.app = app
        self.ctx_of = ctx_of  # () -> AppContext (settings and tokens)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS":
            return await self._options(scope, send)
        if method not in _BODY_METHODS or not path.startswith("/v1/"):
            return await self.app(scope, receive, send)
        ctx = self.ctx_of()
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        if ctx.tokens:
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return await _send_json(send, 401, {"detail": "missing bearer token",
                                                    "hint": TOKEN_HINT},
                                        [(b"www-authenticate", b"Bearer")])
            if ctx.settings.owner_of(token.strip(), ctx.tokens) is None:
                return await _send_json(send, 401, {"detail": "invalid bearer token",
                                                    "hint": TOKEN_HINT},
                                        [(b"www-authenticate", b"Bearer")])
        if path in UPLOAD_PATHS:
            return await self.app(scope, receive, send)
        limit = ctx.settings.max_body_bytes
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, _too_large(int(length), limit))
        received = 0

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return msg

        started = False

        async def tracked_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, _too_large(received, limit))

    async def _options(self, scope, send):
        methods = set()
        for route in _routes(scope["app"].router.routes if "app" in scope else []):
            match, _ = route.matches(dict(scope, method="GET"))
            if match != Match.NONE and getattr(route, "methods", None):
                methods |= set(route.methods)
        if not methods:
            return await _send_json(send, 404, {"detail": "Not Found"})
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", allow.encode())]})
        await send({"type": "http.response.body", "body": b""})


def _routes(routes):
    """Every route, those of included routers too (newer FastAPI keeps them nested; our routers
    declare full paths, no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        elif getattr(route, "methods", None):
            yield route


def _too_large(size: int, limit: int) -> dict:
    return {"detail": "the request body exceeds the limit max_body_bytes",
            "errors": [{"field": "(body)", "limit": "max_body_bytes", "value": size,
                        "allowed": limit, "message": f"the body is {size:,} bytes or more; the "
                                                     f"limit max_body_bytes is {limit:,}"}]}


__all__ = ["RequestGuard"]
