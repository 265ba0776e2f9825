"""Bearer tokens: ``Authorization: Bearer <token>`` names the owner of a request.

Tokens come from settings (``BRAGG_TOKENS="alice:s3cret,bob:other"`` and/or ``BRAGG_TOKENS_FILE``).
Each job and file belongs to its token's owner; other owners get 404 for it. With no tokens
configured every request belongs to ``BRAGG_ANONYMOUS_OWNER``, and ``run_api`` refuses to bind
anything but a loopback address.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from app.errors import TOKEN_HINT, ApiError


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def current_owner(request: Request) -> str:
    """FastAPI dependency: the owner named by the request's bearer token (async: no I/O, so it
    runs on the event loop instead of a worker thread)."""
    ctx = request.app.state.ctx
    table = ctx.tokens
    if not table:
        return ctx.settings.anonymous_owner
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing bearer token", hint=TOKEN_HINT,
                       headers={"WWW-Authenticate": "Bearer"})
    owner = ctx.settings.owner_of(token.strip(), table)
    if owner is None:
        raise ApiError(401, "invalid bearer token", hint=TOKEN_HINT,
                       headers={"WWW-Authenticate": "Bearer"})
    return owner
