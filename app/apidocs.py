"""/docs (Swagger UI) and /redoc (ReDoc) from files installed with the project, never a CDN.

The Swagger UI and ReDoc bundles come from the ``fastapi-offline`` package (released copies of the
npm packages ``swagger-ui-dist`` and ``redoc``). The pages work on a network without internet, and
ask no other host for anything: Swagger UI's online validator badge is switched off, and the
"API docs by Redocly" logo that ReDoc's bundle loads from Redocly's CDN is served from here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (get_redoc_html, get_swagger_ui_html,
                                  get_swagger_ui_oauth2_redirect_html)
from fastapi.responses import FileResponse, Response

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs/assets"
_REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "favicon.png": "image/png"}
_CACHE = {"Cache-Control": "public, max-age=86400"}


@lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    """ReDoc's bundle, its attribution logo pointed at this service's favicon."""
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(
        _REDOC_LOGO.encode(), f"{PREFIX}/favicon.png".encode())


def install(app: FastAPI) -> None:
    """Add the pages to an app made with ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url
    oauth2 = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request):
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2}",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})})

    @app.get(oauth2, include_in_schema=False)
    def swagger_ui_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request):
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{PREFIX}/favicon.png",
                              with_google_fonts=False)

    @app.get(PREFIX + "/redoc.standalone.js", include_in_schema=False)
    def redoc_js():
        return Response(redoc_bundle(), media_type="text/javascript", headers=_CACHE)

    for name, ctype in _FILES.items():
        def asset(path=ASSETS / name, ctype=ctype):
            return FileResponse(path, media_type=ctype, headers=_CACHE)
        app.add_api_route(f"{PREFIX}/{name}", asset, methods=["GET"], include_in_schema=False,
                          name=f"apidocs-{name}")
