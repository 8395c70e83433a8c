"""Request body limit enforced while the body streams in, before any of it is parsed."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response
from service.errors import MSG_BODY_TOO_LARGE, MSG_TOO_MANY_FILES, MSG_TOO_MANY_ROWS, PayloadTooLarge


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing re-raises it instead of calling it a 400."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class BodySizeLimitMiddleware:
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
            await problem_response(status=413, title="Payload too large", detail=detail)(scope, receive, send)
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


def check_rows(count: int, limit: int) -> None:
    """413 when a request carries more rows than MAX_ROWS."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_ROWS.format(count=count, limit=limit))


def check_files(count: int, limit: int) -> None:
    """413 when a request carries more files than MAX_FILES."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_FILES.format(count=count, limit=limit))
