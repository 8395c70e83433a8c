"""The one place where errors become answers: problem+json bodies on /api/v1 (and everything else), the
Open Inference Protocol's `{"error"}` on /v2; never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.v2.errors import is_v2, v2_answer, v2_error_response
from service.errors import (
    MSG_INTERNAL,
    MSG_REQUEST_INVALID,
    MSG_WRONG_KIND_PATH,
    ServiceError,
    WrongModelKind,
)
from service.inference.predictor import ModelKind

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Where each kind is served on /api/v1: what the answer to a WrongModelKind points to (a kind this version
# recognises but does not serve has none: the answer says only what the model is).
PREDICT_PATHS = {
    ModelKind.TABULAR: "/api/v1/tabular/{name}/predict",
    ModelKind.VISION: "/api/v1/vision/{name}/predict",
    ModelKind.TEXT: "/api/v1/text/{name}/predict",
    ModelKind.COLLAB: "/api/v1/collab/{name}/predict",
}


class BodyTooLarge(StarletteHTTPException):
    """The body limit, raised from inside the body stream: an HTTPException, so that FastAPI's body
    parsing re-raises it instead of calling it a malformed body (400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def problem_response(
    *,
    status: int,
    detail: str,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = title or HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"urn:fastai-serve:problem:{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _clean_validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    # FastAPI's errors may carry the offending input and exception objects: keep loc/msg/type only.
    return [
        {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in errors
    ]


def problem_for(error: ServiceError) -> JSONResponse:
    """The problem+json answer to a domain error."""
    detail = error.detail
    path = PREDICT_PATHS.get(ModelKind(error.kind)) if isinstance(error, WrongModelKind) else None
    if isinstance(error, WrongModelKind) and path is not None:  # the model exists: name its path
        detail = MSG_WRONG_KIND_PATH.format(
            name=error.name, kind=error.kind, path=path.format(name=error.name)
        )
    return problem_response(
        status=error.status, title=error.title, detail=detail, errors=error.errors, headers=error.headers
    )


def answer_for(path: str, error: ServiceError) -> JSONResponse:
    """The answer to a domain error in the format of the door `path` belongs to (the middleware's too)."""
    return v2_answer(error) if is_v2(path) else problem_for(error)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return answer_for(request.url.path, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_validation_errors(list(exc.errors()))
    detail = MSG_REQUEST_INVALID.format(count=len(errors))
    if is_v2(request.url.path):
        return v2_answer(ServiceError(detail=detail, status=400, errors=errors))
    return problem_response(status=422, title="Invalid input", detail=detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if is_v2(request.url.path):
        return v2_error_response(exc.status_code, str(exc.detail), headers)
    return problem_response(status=exc.status_code, detail=str(exc.detail), headers=headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if is_v2(request.url.path):
        return v2_error_response(500, MSG_INTERNAL)
    return problem_response(status=500, detail=MSG_INTERNAL)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
