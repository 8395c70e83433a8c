"""Logging for `fastai-serve serve`: JSON lines (default) or plain text, uvicorn's loggers included."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`; uvicorn's own access log is replaced by
    the service's request line (fastai_serve.access), which carries the request id and model."""
    formatter = (
        {"()": "service.logs.JsonFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stdout"}
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options from the settings, the same for `serve` and the Ray front of `serve --ray`."""
    return {
        "log_level": settings.log_level,
        "log_config": logging_config(level=settings.log_level, fmt=settings.log_format),
        "access_log": False,  # the request middleware logs each request once, with its id
        # X-Forwarded-For is read by the app's AccessMiddleware, from FORWARDED_ALLOW_IPS only.
        "proxy_headers": False,
        "timeout_keep_alive": int(settings.keep_alive_s),
        "timeout_graceful_shutdown": int(settings.request_timeout_s) + 1,  # in-flight requests finish
    }
