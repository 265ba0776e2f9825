"""API errors: one JSON shape for every 4xx answer.

``{"detail": "<what went wrong>", "errors": [{"field": "<path>", "message": "..."}], "hint": ...}``
(``errors`` for 422 answers, ``hint`` where there is something to do about it). Field paths are dotted
paths into the request body (``config.detector.fast_pixels``, ``trace_pixels.0``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sim_core.config import FieldError

from jobs.store import disk_error

log = logging.getLogger("bragg.api")
#: what a request without a valid token is told: the header, and the bragg command's options
TOKEN_HINT = ("send 'Authorization: Bearer <token>' (the bragg command: --token TOKEN or "
              "BRAGG_TOKEN=TOKEN)")


class ApiError(StarletteHTTPException):
    def __init__(self, status: int, detail: str, *, errors: Optional[list[dict]] = None,
                 hint: Optional[str] = None, headers: Optional[dict] = None, extra: dict | None = None):
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.errors = errors
        #: the summaries an answer of several checks (Checks) was made of
        self.details = [detail]
        self.hint = hint
        self.extra = extra or {}

    def body(self) -> dict:
        out: dict = {"detail": self.detail}
        if self.errors is not None:
            out["errors"] = self.errors
        if self.hint:
            out["hint"] = self.hint
        out.update(self.extra)
        return out


def invalid(errors: list[dict], detail: str = "invalid request") -> ApiError:
    return ApiError(422, detail, errors=errors)


def invalid_field(field: str, message: str) -> ApiError:
    return invalid([{"field": field, "message": message}])


def limit_exceeded(field: str, limit: str, value: int, allowed: int, what: str) -> ApiError:
    return ApiError(422, f"{what} exceeds the limit {limit}",
                    errors=[{"field": field, "limit": limit, "value": value, "allowed": allowed,
                             "message": f"{what} is {value:,}; the limit {limit} is {allowed:,}"}])


class Checks:
    """Checks of one request that can be known together: each runs in ``with checks.check():``;
    the field errors of every failing one are answered at once by ``checks.done()`` (a user
    fixes a submission in one round, not one error per try). Other errors pass through."""

    def __init__(self) -> None:
        self.failed: list[ApiError] = []

    @contextmanager
    def check(self):
        try:
            yield
        except ApiError as exc:
            if exc.status_code != 422 or not exc.errors:
                raise
            self.failed.append(exc)

    @property
    def ok(self) -> bool:
        return not self.failed

    def done(self) -> None:
        if not self.failed:
            return
        if len(self.failed) == 1:
            raise self.failed[0]
        errors = [e for exc in self.failed for e in exc.errors]
        # each distinct summary once (those of nested checks too), the generic one only alone
        details = [d for exc in self.failed for d in exc.details]
        details = list(dict.fromkeys(d for d in details if d != "invalid request")) \
            or ["invalid request"]
        err = ApiError(422, f"{len(errors)} problems: " + "; ".join(details), errors=errors)
        err.details = details
        raise err


def not_found(what: str, hint: Optional[str] = None, **extra) -> ApiError:
    return ApiError(404, f"{what} not found", hint=hint, extra=extra)


def job_not_found(job_id: str) -> ApiError:
    """404 naming the job id asked for (cut short: it comes from the path, unchecked)."""
    shown = job_id if len(job_id) <= 64 else job_id[:64] + "…"
    return ApiError(404, f"job {shown} not found")


def _loc_path(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form"):
        parts = parts[1:]
    # tagged unions and function validators add their own names: drop them
    parts = [p for p in parts if not p.startswith("function-")]
    return ".".join(parts) or "(body)"


def validation_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        loc = list(err.get("loc", ()))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):  # a check across fields names the field at fault
            loc.append(cause.field)
        out.append({"field": _loc_path(loc), "message": msg})
    return out


async def api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def request_validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": "invalid request", "errors": validation_errors(exc)},
                        status_code=422)


async def redis_down_handler(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "the job store (Redis) is unavailable",
                         "hint": "try again later"}, status_code=503,
                        headers={"Retry-After": "5"})


async def os_error_handler(request: Request, exc: OSError) -> JSONResponse:
    found = disk_error(exc)
    status, detail = found or (503, "the service could not read or write its data folder")
    log.error("%s %s: storage error: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": detail, "hint": "try again later; the operator has been told "
                                                   "in the service's log"},
                        status_code=status, headers={"Retry-After": "60"})


def install(app) -> None:
    import redis

    app.add_exception_handler(redis.exceptions.ConnectionError, redis_down_handler)
    app.add_exception_handler(redis.exceptions.TimeoutError, redis_down_handler)
    app.add_exception_handler(OSError, os_error_handler)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
