"""Per-request count limits, checked right after parsing, and the counts the front doors share (the byte
limit is `BodySizeLimitMiddleware`'s)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Query

from service.errors import (
    MSG_TEXT_TOO_LONG,
    MSG_THRESHOLD_TASK,
    MSG_TOO_MANY_FILES,
    MSG_TOO_MANY_ROWS,
    MSG_TOO_MANY_TEXTS,
    InvalidInput,
    PayloadTooLarge,
)
from service.inference.tasks import Task
from service.registry import ModelEntry, ModelRegistry, P

# The counts every front door shares (the byte limits are `BodySizeLimitMiddleware`'s and `hot.py`'s).
MIN_TOP_K, MAX_TOP_K = 1, 1000  # `top_k` of an image classifier, on /api/v1 and /v2
# Validating a few rows costs less than a hop to a worker thread; more rows go off the event loop.
INLINE_ROWS = 32
# Predictions per part of a CSV's streamed JSON answer: memory stays bounded whatever the file's size.
ANSWER_ROWS = 4096

# `?threshold=` of the routes that decode a multi-label model: strictly between 0 and 1 (else 422).
Threshold = Annotated[
    float | None,
    Query(
        gt=0,
        lt=1,
        description="multi_label models only: a class is predicted when its probability is over this "
        "(default: the learner's own, fastai's 0.5)",
    ),
]


def check_rows(count: int, limit: int) -> None:
    """413 when a request carries more rows than MAX_ROWS."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_ROWS.format(count=count, limit=limit))


def check_files(count: int, limit: int) -> None:
    """413 when a request carries more files than MAX_FILES."""
    if count > limit:
        raise PayloadTooLarge(MSG_TOO_MANY_FILES.format(count=count, limit=limit))


def check_texts(texts: Sequence[Any], *, max_texts: int, max_chars: int) -> None:
    """413 when a request carries more texts than MAX_ROWS, or a text longer than MAX_TEXT_CHARS (naming
    the first such index); what a text must hold is the predictor's to check."""
    if len(texts) > max_texts:
        raise PayloadTooLarge(MSG_TOO_MANY_TEXTS.format(count=len(texts), limit=max_texts))
    for index, text in enumerate(texts):
        if isinstance(text, str) and len(text) > max_chars:
            raise PayloadTooLarge(MSG_TEXT_TOO_LONG.format(index=index, length=len(text), limit=max_chars))


def check_threshold(threshold: float | None, *, name: str, task: Task) -> None:
    """422 when a threshold is sent for a model that does not decode one (any but multi_label)."""
    if threshold is not None and task is not Task.MULTI_LABEL:
        raise InvalidInput(MSG_THRESHOLD_TASK.format(name=name, task=task.value))


def served(
    registry: ModelRegistry, name: str, predictor_type: type[P], *, threshold: float | None
) -> tuple[ModelEntry, P]:
    """The ready model of a kind's route, refusing a threshold its task does not take."""
    entry, predictor = registry.predictor(name, predictor_type)
    check_threshold(threshold, name=name, task=predictor.head.task)
    return entry, predictor
