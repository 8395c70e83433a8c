"""The ASGI middleware around every request, outermost first:

- `RequestContextMiddleware`: a request id, security headers, `X-Served-By` on answers a model computed,
  a time limit (504) and one JSON log line,
  which holds what an operator needs (id, method, route, model, status, timings, client) and never a body,
  a query string or file contents;
- `BodySizeLimitMiddleware`: the body limit, enforced while the body streams in, before it is parsed;
- `RequestMetricsMiddleware`: Prometheus counts and times by model, route template (never raw paths) and
  protocol (v1, v2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import BodyTooLarge, answer_for
from service.errors import MSG_BODY_TOO_LARGE, MSG_REQUEST_TIMEOUT, PayloadTooLarge, RequestTimeout
from service.telemetry import Metrics, RequestContext, current_request, request_served_by, request_timings

access_log = logging.getLogger("fastai_serve.access")

REQUEST_ID_HEADER = "X-Request-ID"
SERVED_BY_HEADER = "X-Served-By"  # which process (or Ray node and replica) ran the model
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


# Random bytes for request ids, drawn 256 ids at a time: `os.urandom` lets go of the GIL, and taking it back
# on the event loop waited behind the model and worker threads (a tenth of the loop's time under load).
_ID_BYTES = 16
_ID_POOL = 256
_random_ids: list[bytes] = []
os.register_at_fork(after_in_child=_random_ids.clear)  # a forked worker draws its own


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` makes."""
    if not _random_ids:
        pool = os.urandom(_ID_BYTES * _ID_POOL)
        _random_ids.extend(pool[i : i + _ID_BYTES] for i in range(0, len(pool), _ID_BYTES))
    raw = bytearray(_random_ids.pop())
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


# The paths whose model passes are predictions, for the payload log.
LOGGED_PATHS = ("/predict", "/predict/csv", "/infer")


def client_request_id(headers: dict[bytes, bytes]) -> str:
    """The client's own `X-Request-ID` when it is a sane token (letters, digits, `._-`, at most 64), else
    a new random one."""
    incoming = headers.get(b"x-request-id", b"").decode("latin-1")
    return incoming if _CLIENT_ID.match(incoming) else new_request_id()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = client_request_id(dict(scope["headers"]))
        path: str = scope.get("path", "")
        # What the payload log and the answers' item ids read; only predictions are logged (not evaluation
        # passes, nor the forward of a monitor's reference upload).
        context = RequestContext(
            request_id=request_id,
            protocol="v2" if path.startswith("/v2") else "v1",
            log=path.endswith(LOGGED_PATHS),
        )
        context_token = current_request.set(context)
        timings: dict[str, float] = {}
        token = request_timings.set(timings)
        served_by: list[str] = []
        served_token = request_served_by.set(served_by)
        started = context.started
        status, response_started = 500, False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if served_by:
                    headers[SERVED_BY_HEADER] = ", ".join(served_by)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not path.startswith(("/api/", *DOCS_PATHS)):
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
            await send(message)

        try:
            # A deadline on this task, not `wait_for`: that would run every request in a task of its own.
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, send_with_headers)
        except TimeoutError:
            if not response_started:
                timeout = RequestTimeout(MSG_REQUEST_TIMEOUT.format(seconds=self.timeout_s))
                await answer_for(path, timeout)(scope, receive, send_with_headers)
        finally:
            request_timings.reset(token)
            request_served_by.reset(served_token)
            current_request.reset(context_token)
            if access_log.isEnabledFor(logging.INFO):  # building the line is most of this middleware's cost
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


class BodySizeLimitMiddleware:
    """413 for a body over `max_bytes`: at once from Content-Length, else as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = MSG_BODY_TOO_LARGE.format(limit_mb=self.max_bytes / (1024 * 1024))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await answer_for(scope.get("path", ""), PayloadTooLarge(detail))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(detail)
            return message

        await self.app(scope, limited_receive, send)


class RequestMetricsMiddleware:
    """Counts and times every /api and /v2 request by model, route template and protocol."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is not None and template.startswith(("/api/", "/v2")):
                model = scope.get("path_params", {}).get("name", "")
                protocol = "v2" if template.startswith("/v2") else "v1"
                self.metrics.requests.labels(model, template, str(status), protocol).inc()
                self.metrics.request_seconds.labels(model, template, protocol).observe(
                    time.perf_counter() - started
                )
