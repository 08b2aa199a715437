"""The small web app mounted next to the API: the page at `/` and `GET /metadata`.

Plain Starlette (BentoML's own server framework), no build step: the page is one HTML file
with inline JS that calls `/explain` and draws the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"


def make_web_app(metadata: Callable[[], dict[str, Any]]) -> Starlette:
    """Routes `/` (the page) and `/metadata` (JSON from `metadata()`, called per request)."""
    page = INDEX_HTML.read_text(encoding="utf-8")

    async def index(_: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def model_metadata(_: Request) -> Response:
        try:
            body = metadata()
        except RuntimeError as exc:  # the model is not loaded (yet)
            return JSONResponse({"error": "not_ready", "detail": str(exc)}, status_code=503)
        return JSONResponse(body)

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/metadata", model_metadata, methods=["GET"]),
        ]
    )
