"""How a /v2 refusal reads: the protocol's `{"error": "..."}` body, never problem+json.

`service.api.problems` calls this for every error on a /v2 path (the routes', FastAPI's and the
middleware's alike), so the same domain errors answer in the format of the door they came in by.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from service.errors import ServiceError

V2_PREFIX = "/v2"
# The protocol's statuses: an input the model cannot take is a bad request, whatever /api/v1 calls it.
_STATUS = {415: 400, 422: 400}


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def _where(loc: list[Any]) -> str:
    # /api/v1 locates a cell as ["rows", i, column]; on /v2 that cell is element i of input `column`.
    if len(loc) == 3 and loc[0] == "rows":
        return f"{loc[2]}[{loc[1]}]"
    return ".".join(str(part) for part in loc)


def error_message(error: ServiceError) -> str:
    if not error.errors:
        return error.detail
    details = "; ".join(f"{_where(list(e.get('loc', [])))}: {e.get('msg')}" for e in error.errors[:10])
    return f"{error.detail}: {details}"


def v2_error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=_STATUS.get(status, status), headers=headers)


def v2_answer(error: ServiceError) -> JSONResponse:
    """The /v2 answer to a domain error."""
    return v2_error_response(error.status, error_message(error), error.headers)
