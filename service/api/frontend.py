"""The static frontend at `/`: a plain folder of HTML, CSS and JS modules, mounted after every API route."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

logger = logging.getLogger(__name__)

# A source checkout keeps the frontend next to the package; used when the configured relative path is
# not found under the working directory (e.g. `fastai-serve serve` started from another folder).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
API_PREFIXES = ("/api", "/v2")  # the API's own paths: its 404s and 405s, never the frontend's


class _NoCacheStatic(StaticFiles):
    """Static files that browsers revalidate (cheap 304s), so a new frontend is never served stale."""

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


class FrontendMount(Mount):
    """Every path but `/api/...` and `/v2/...`: unknown API paths keep the router's own 404/405 answers."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        if any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


def resolve_frontend_dir(configured: Path | None) -> Path | None:
    """The folder holding index.html, or None when the frontend is switched off or absent."""
    if configured is None:
        return None
    candidates = [configured] if configured.is_absolute() else [configured, PROJECT_ROOT / configured]
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate.resolve()
    logger.warning("no frontend at %s (no index.html): / redirects to /docs", configured)
    return None


def install_frontend(app: FastAPI, configured: Path | None) -> None:
    """Serve the frontend at `/` after the API routes; without one, `/` redirects to the docs."""
    directory = resolve_frontend_dir(configured)
    if directory is None:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

        return
    static = _NoCacheStatic(directory=directory, html=True)
    app.router.routes.append(FrontendMount("/", app=static, name="frontend"))
