"""``run_api(host, port)``: the API on uvicorn (``bragg api``)."""

from __future__ import annotations

import sys

from app.auth import is_loopback
from jobs.settings import get_settings


def check_bind(host: str, tokens: dict) -> str | None:
    """Why the API must not bind ``host`` (None when it may)."""
    if not tokens and not is_loopback(host):
        return (f"refusing to bind {host}: no tokens are configured (set BRAGG_TOKENS or "
                "BRAGG_TOKENS_FILE), so the API may only listen on a loopback address such as "
                "127.0.0.1")
    return None


def bind_address(settings, host: str | None, port: int | None) -> tuple[str, int, dict]:
    """The (host, port, tokens) the API will serve with; ValueError says why it must not start."""
    host = host or settings.api_host
    port = port or settings.api_port
    try:
        tokens = settings.token_table()
    except (OSError, ValueError) as exc:
        raise ValueError(f"bad token configuration: {exc}") from None
    reason = check_bind(host, tokens)
    if reason:
        raise ValueError(reason)
    return host, port, tokens


def run_api(host: str | None = None, port: int | None = None, *, workers: int = 1,
            log_level: str | None = None) -> int:
    import uvicorn

    settings = get_settings()
    try:
        host, port, tokens = bind_address(settings, host, port)
    except ValueError as exc:
        print(f"bragg api: error: {exc}", file=sys.stderr)
        return 2
    if not tokens:
        print(f"bragg api: no tokens configured: open access as owner "
              f"'{settings.anonymous_owner}', loopback only ({host})", file=sys.stderr)
    else:
        print(f"bragg api: {len(tokens)} token(s) configured", file=sys.stderr)
    # the connection bounds: app/http_protocol.py (and docs/deployment.md for a proxy in front)
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level or settings.log_level, access_log=False,
                http="app.http_protocol:BoundedH11Protocol",
                timeout_keep_alive=settings.http_keepalive_s,
                h11_max_incomplete_event_size=settings.http_max_header_bytes,
                backlog=settings.http_backlog)
    return 0
