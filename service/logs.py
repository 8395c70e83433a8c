"""Logging for `fastai-serve serve`: JSON lines (default) or plain text, uvicorn's loggers included."""

from __future__ import annotations

from typing import Any


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`; uvicorn's own access log is replaced by
    the service's request line (fastai_serve.access), which carries the request id and model."""
    formatter = (
        {"()": "service.api.requests.JsonFormatter"}
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
