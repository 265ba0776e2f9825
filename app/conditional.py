"""What an idle web page costs: the job list it polls every second answers 304 with no body while
nothing in it changed, and JSON and text answers are gzip-compressed.

:class:`ConditionalList` gives the GET answers of chosen paths (the job list) an ETag, the sha256 of
the body, and answers ``If-None-Match`` with that tag by 304: the list is read as before (a job's
progress is part of it), but a page whose list did not change receives a few headers, not 20 kB.
:func:`install` adds it and Starlette's gzip for JSON and text (binary images, zips and event
streams are left as they are: they are compressed already, ranged, or streamed).
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import GZipMiddleware

from app.views import etag_matches

#: the GET paths whose JSON answers get an ETag from their body
CONDITIONAL_PATHS = frozenset({"/v1/jobs"})
#: answers that gzip leaves alone: compressed already, served in ranges, or streamed
NOT_COMPRESSED = ("application/octet-stream", "application/zip", "application/gzip",
                  "application/x-gzip", "image/*", "text/event-stream")


class ConditionalList:
    """ETag = sha256 of a 200 JSON answer's body for GET requests to ``paths``; 304 when the
    request's If-None-Match names it."""

    def __init__(self, app, paths=CONDITIONAL_PATHS):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        asked = Headers(scope=scope).get("if-none-match")
        start = None
        body = []

        async def buffered(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await self._answer(start, b"".join(body), asked, send)

        await self.app(scope, receive, buffered)

    @staticmethod
    async def _answer(start, content: bytes, asked, send) -> None:
        headers = MutableHeaders(raw=list(start["headers"]))
        if start["status"] != 200 or "etag" in headers \
                or "json" not in headers.get("content-type", ""):
            await send(start)
            await send({"type": "http.response.body", "body": content})
            return
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        headers["ETag"] = etag
        headers["Cache-Control"] = "private, no-cache"
        if etag_matches(asked, etag):
            del headers["content-length"]
            del headers["content-type"]
            await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers.raw})
        await send({"type": "http.response.body", "body": content})


def install(app) -> None:
    """Conditional job lists inside, gzip outside (so the ETag is that of the JSON itself)."""
    app.add_middleware(ConditionalList)
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6,
                       exclude_content_types=NOT_COMPRESSED)


__all__ = ["ConditionalList", "install", "CONDITIONAL_PATHS"]
