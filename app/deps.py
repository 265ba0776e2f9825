"""Typed dependencies of the routes: ``ctx: CtxDep`` is the application's context, ``owner:
OwnerDep`` the owner named by the request's bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth import current_owner
from app.context import AppContext


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]
OwnerDep = Annotated[str, Depends(current_owner)]

__all__ = ["CtxDep", "OwnerDep", "get_ctx"]
