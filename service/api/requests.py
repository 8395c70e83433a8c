"""Per-request plumbing: a request id, one JSON log line, security headers, and a time limit.

The log line holds what an operator needs (id, method, route, model, status, timings, client) and never a
body, a query string or file contents.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response
from service.errors import MSG_REQUEST_TIMEOUT

access_log = logging.getLogger("fastai_serve.access")

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Frontend pages and API answers alike: no sniffing, no framing by other sites, no referrer leaks, and
# only this origin's scripts, styles and images (the frontend ships everything itself).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self' *; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DOCS_PATHS = ("/docs", "/redoc")  # FastAPI's pages load their assets from a CDN: no CSP there

# Timings a request collects on its way (e.g. the model's share), logged with its line.
request_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "request_timings", default=None
)


def record_timing(name: str, seconds: float) -> None:
    timings = request_timings.get()
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + seconds * 1000


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _CLIENT_ID.match(incoming) else uuid.uuid4().hex
        timings: dict[str, float] = {}
        token = request_timings.set(timings)
        started = time.perf_counter()
        status, response_started = 500, False
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not path.startswith(("/api/", *DOCS_PATHS)):
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, send_with_headers), self.timeout_s)
        except TimeoutError:
            if not response_started:
                detail = MSG_REQUEST_TIMEOUT.format(seconds=self.timeout_s)
                await problem_response(status=504, title="Request timeout", detail=detail)(
                    scope, receive, send_with_headers
                )
        finally:
            request_timings.reset(token)
            self._log(scope, request_id, status, started, timings)

    @staticmethod
    def _log(scope: Scope, request_id: str, status: int, started: float, timings: dict[str, float]) -> None:
        route = scope.get("route")
        client = scope.get("client")
        line: dict[str, Any] = {
            "event": "request",
            "request_id": request_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "route": getattr(route, "path", None),
            "model": scope.get("path_params", {}).get("name"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            **{f"{k}_ms": round(v, 2) for k, v in timings.items()},
            "client": client[0] if client else None,
        }
        access_log.info(json.dumps(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers parse without a grok pattern."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message) if message.startswith("{") else {"message": message}
        except json.JSONDecodeError:
            payload = {"message": message}
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            **payload,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
