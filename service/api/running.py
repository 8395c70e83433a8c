"""Running a request through its model's batcher, with the model's faults kept to that model."""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import numpy as np
import torch

from service.api.requests import record_timing
from service.errors import MSG_MODEL_FAULT, MSG_MODEL_NAN, MSG_MODEL_OOM, ModelFault, ServiceError
from service.inference.batcher import BatcherPool
from service.registry import ModelEntry

logger = logging.getLogger(__name__)


async def run_model(
    entry: ModelEntry, predictor: Any, batchers: BatcherPool, payload: Any, size: int
) -> np.ndarray:
    """The probabilities for one request's prepared input.

    Out of memory is this request's problem (503, retry smaller); a forward that raises or returns
    non-finite numbers is the model's: it is marked failed (the model list and readiness show why) until
    an admin reloads it, and every other model keeps serving.
    """
    started = time.perf_counter()
    try:
        probs: np.ndarray = await batchers.for_predictor(entry.name, predictor).submit(payload, size)
    except ServiceError:
        raise
    except (MemoryError, torch.OutOfMemoryError):
        logger.warning("model %s ran out of memory on a batch", entry.name)
        raise ModelFault(MSG_MODEL_OOM.format(name=entry.name), status=503) from None
    except Exception as exc:  # noqa: BLE001 - whatever the model raised, it stays with this model
        logger.exception("model %s failed while predicting", entry.name)
        _fail(entry, predictor, f"{type(exc).__name__}: {exc}")
    finally:
        record_timing("model", time.perf_counter() - started)  # queue wait + forward, for the log line
    if not np.isfinite(probs).all():
        _fail(entry, predictor, MSG_MODEL_NAN)
    return probs


def _fail(entry: ModelEntry, predictor: Any, reason: str) -> NoReturn:
    detail = MSG_MODEL_FAULT.format(name=entry.name, reason=reason)
    if entry.predictor is predictor:  # not when a reload already replaced this version
        entry.fail(detail)
    raise ModelFault(detail)
