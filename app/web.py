"""The web page at ``/``: plain HTML and JavaScript over the REST API (no build step).

``install(app)`` adds ``/`` (app/static/index.html), ``/static/*``, ``/examples.json`` (the example
submissions of app/examples/) and ``/file_flags.json`` (the flags that name an input file, with their
upload kinds, from sim_core.inputs). All are public, like /docs; the page sends the bearer token
its user types in with every API call.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
EXAMPLES = Path(__file__).parent / "examples"


@lru_cache(maxsize=1)
def examples() -> list[dict]:
    """The example submissions: ``{"name", "title", "description", "submission"}``, by name."""
    out = []
    for p in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(p.read_text())
        out.append({"name": p.stem, "title": doc["title"],
                    "description": doc.get("description", ""), "submission": doc["submission"]})
    return out


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/examples.json", include_in_schema=False)
    def example_list():
        return JSONResponse(examples())

    @app.get("/file_flags.json", include_in_schema=False)
    def file_flags():
        from sim_core.inputs import FLAG_KINDS
        return JSONResponse(FLAG_KINDS)
