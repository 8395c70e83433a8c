"""Domain errors raised by the registry and predictors; `service.api.problems` maps them to HTTP.

The messages live here so tests can assert them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MSG_MODEL_NOT_FOUND = "model {name!r} does not exist"
MSG_WRONG_KIND = "model {name!r} is a {kind} model; use {path}"
MSG_NO_SCHEMA_FOR_VISION = (
    "model {name!r} is a vision model; it takes images, see input_schema in /api/v1/models/{name}"
)
MSG_MODEL_LOADING = "model {name!r} is still loading"
MSG_MODEL_FAILED = "model {name!r} failed to load: {reason}"
MSG_TOO_MANY_ROWS = "{count} rows sent; at most {limit} are accepted per request"
MSG_TOO_MANY_FILES = "{count} files sent; at most {limit} are accepted per request"
MSG_BODY_TOO_LARGE = "request body is larger than the {limit_mb:g} MB limit"
MSG_INVALID_ROWS = "{count} problem(s) in the submitted rows"
MSG_CSV_UNREADABLE = "the uploaded file {filename!r} is not a readable CSV: {reason}"
MSG_CSV_EMPTY = "the uploaded CSV {filename!r} has no data rows"
MSG_CSV_MISSING_COLUMNS = "the uploaded CSV {filename!r} lacks column(s): {columns}"
MSG_CSV_MEDIA = "the uploaded file {filename!r} is not CSV text"
MSG_JSON_MEDIA = "send the rows as JSON with Content-Type: application/json (got {media!r})"
MSG_NOT_AN_IMAGE = "file {filename!r} is not a supported image (JPEG, PNG, GIF, BMP, WEBP or TIFF)"
MSG_CORRUPT_IMAGE = "file {filename!r} looks like {format} but cannot be decoded: {reason}"
MSG_UNSEEN_CATEGORY = "{column}: {value!r} is not a known category; treated as missing (#na#)"
MSG_TOLERANT_MATCH = "{column}: {value!r} matched category {category!r} (ignoring whitespace and case)"
MSG_NULL_FILLED = "{column}: missing value filled with {fill:g} as the learner does"
MSG_NULL_CATEGORY = "{column}: missing value treated as #na#"
MSG_RELOAD_FAILED = "model {name!r} was not reloaded, the previous version keeps serving: {reason}"
MSG_API_KEY_MISSING = "this endpoint needs the X-API-Key header"
MSG_API_KEY_WRONG = "the X-API-Key header does not match"
MSG_ADMIN_DISABLED = "admin endpoints are disabled: set FASTAI_SERVE_API_KEY to enable them"
MSG_MODEL_FAULT = "model {name!r} failed while predicting ({reason}); it is marked failed until reloaded"
MSG_MODEL_OOM = "model {name!r} ran out of memory on this request; retry with fewer items"
MSG_MODEL_NAN = "the model produced non-finite probabilities"
MSG_IMAGE_TOO_LARGE = "file {filename!r} is {width}x{height} pixels; at most {limit} pixels are accepted"
MSG_IMAGE_BOMB = "file {filename!r} declares far more than {limit} pixels (a decompression bomb?); refused"
MSG_REQUEST_TIMEOUT = "the request took longer than {seconds:g} s and was stopped"
MSG_NO_REPORT = "model {name!r} has no training report (train it with `fastai-serve train` to get one)"
MSG_NO_ARTIFACT = "model {name!r} has no report artifact {artifact!r}"
MSG_EVAL_NO_TARGET = "the uploaded CSV {filename!r} lacks the target column {target!r} needed to evaluate"
MSG_EVAL_MISSING_LABELS = "{count} row(s) have no value in the target column {target!r}"
MSG_EVAL_UNKNOWN_LABELS = "label(s) not among the model's classes {classes}: {labels}"
MSG_EVAL_LABEL_COUNT = "{files} file(s) but {labels} label(s): send one `labels` field per file, in order"
MSG_EVAL_NOTHING = "send either `files` with one `labels` field each, or one zip `archive`"
MSG_EVAL_BOTH = "send either `files` with `labels` or an `archive`, not both"
MSG_ARCHIVE_NOT_ZIP = "the archive {filename!r} is not a readable zip file"
MSG_ARCHIVE_UNSAFE_PATH = "the archive holds an unsafe path {path!r} (absolute or with '..')"
MSG_ARCHIVE_NO_CLASS_FOLDERS = (
    "the archive {filename!r} has no class folders: put each image in a folder named after its class"
)
MSG_ARCHIVE_TOO_LARGE = "the archive unpacks to more than {limit_mb:g} MB"
MSG_ARCHIVE_TOO_MANY = "the archive holds {count} files; at most {limit} are accepted"
MSG_NULL_NOT_FILLABLE = (
    "missing value, and the learner has no fill value for this column (it had none missing in training)"
)
MSG_SHARE_OFF = "sharing is off: FASTAI_SERVE_NGROK_API_URL is empty"
MSG_SHARE_NO_SIDECAR = (
    "no ngrok sidecar answered at {url} ({error}); start one with `docker compose --profile public up`"
)
MSG_SHARE_TIMEOUT = "the ngrok sidecar at {url} did not answer within {timeout:g} s"
MSG_SHARE_BAD_ANSWER = "the ngrok sidecar at {url} answered {what}, not its list of tunnels"
MSG_SHARE_NO_TUNNEL = "the ngrok sidecar at {url} has no https tunnel (yet); its log says why"


@dataclass
class ServiceError(Exception):
    """Base class: `status` is the HTTP status the API layer uses."""

    detail: str
    status: int = 500
    title: str = "Internal error"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail


class ModelNotFound(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=404, title="Model not found")


class ModelNotReady(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=503, title="Model not ready", headers={"Retry-After": "5"})


class InvalidInput(ServiceError):
    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail=detail, status=422, title="Invalid input", errors=errors or [])


class BadRequest(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=400, title="Bad request")


class UnsupportedMedia(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=415, title="Unsupported media type")


class PayloadTooLarge(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=413, title="Payload too large")


class NotFound(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=404, title="Not found")


class ReloadFailed(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=422, title="Reload failed")


class Unauthorized(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            detail=detail, status=401, title="Unauthorized", headers={"WWW-Authenticate": "ApiKey"}
        )


class Forbidden(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=403, title="Forbidden")


class ModelFault(ServiceError):
    def __init__(self, detail: str, *, status: int = 500) -> None:
        headers = {"Retry-After": "1"} if status == 503 else {}
        super().__init__(detail=detail, status=status, title="Model failed", headers=headers)


class RequestTimeout(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=504, title="Request timeout")
