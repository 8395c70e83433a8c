"""Where explanations run: beside predictions, never in a model's batcher queue.

`EXPLAINERS` is the table of kinds that have an explainer (a kind without one is refused with a 404 that
names those that do). `ExplainPool` runs explanations on its own threads (`EXPLAIN_CONCURRENCY`), each
model's explainer on its own copy of the model (built on first use, dropped with its predictor on a
reload), and refuses at once with 503 + Retry-After when `EXPLAIN_QUEUE` requests already wait: a burst of
explanations costs their CPU share and nothing else (prediction batches never wait behind one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, Protocol

from service.errors import (
    MSG_EXPLAIN_METHOD,
    MSG_EXPLAIN_OVERLOADED,
    MSG_EXPLAIN_UNSUPPORTED,
    ExplanationsUnsupported,
    InvalidInput,
    Overloaded,
)
from service.explain.core import Explained, Method
from service.explain.images import ImageExplainer
from service.explain.rows import RowExplainer
from service.explain.texts import TextExplainer
from service.inference.predictor import AnyPredictor, ModelKind
from service.telemetry import Metrics


class Explainer(Protocol):
    """Explains one request's prepared inputs (its kind's `Prepared`) on a copy of the model."""

    methods: ClassVar[tuple[Method, ...]]  # the first is the default

    def explain(self, prepared: Any, *, target: int | None, method: Method) -> Explained: ...


# Kinds that explain, and how: images (Grad-CAM, integrated gradients), rows and texts (integrated
# gradients). Collab models have none: a rating is a dot product of two embeddings, not of inputs.
EXPLAINERS: dict[ModelKind, Any] = {
    ModelKind.VISION: ImageExplainer,
    ModelKind.TABULAR: RowExplainer,
    ModelKind.TEXT: TextExplainer,
}


def explain_method(name: str, predictor: AnyPredictor, method: Method | None) -> Method:
    """The method that explains this model (404 for a kind without explanations, 422 for a method its
    kind does not have)."""
    explainer = EXPLAINERS.get(predictor.kind)
    if explainer is None:
        raise ExplanationsUnsupported(
            MSG_EXPLAIN_UNSUPPORTED.format(
                name=name,
                kind=predictor.kind.value,
                task=predictor.head.task.value,
                supported=", ".join(kind.value for kind in EXPLAINERS),
            )
        )
    methods: tuple[Method, ...] = explainer.methods
    if method is None:
        return methods[0]
    if method not in methods:
        raise InvalidInput(
            MSG_EXPLAIN_METHOD.format(
                name=name,
                kind=predictor.kind.value,
                methods=", ".join(m.value for m in methods),
                method=method.value,
            ),
            [{"loc": ["query", "method"], "msg": "not a method of this model", "type": "method"}],
        )
    return method


# How much lower than the server's own threads an explanation thread runs (Linux nice increment): the
# kernel's scheduler weights a nice-10 thread at about a tenth of a nice-0 one, so when predictions and
# explanations want the same core, predictions get it, and explanations take what predictions leave.
EXPLAIN_NICE = 10


def _explanation_thread() -> None:
    """An explanation thread's set-up: one torch thread (torch's OpenMP thread count is per calling
    thread, so the predictions' threads keep theirs) and a lower scheduling priority (`EXPLAIN_NICE`; on
    Linux a thread's nice value is its own)."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: priority unchanged
        os.setpriority(
            os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + EXPLAIN_NICE
        )


class ExplainPool:
    """Explanations on `concurrency` threads of their own, at most `max_queue` more requests waiting."""

    def __init__(
        self,
        *,
        concurrency: int,
        max_queue: int,
        metrics: Metrics | None = None,
        explainers: Mapping[ModelKind, Any] = EXPLAINERS,
    ) -> None:
        """`explainers`: what explains each kind (the table; a test may pass its own)."""
        self.concurrency, self.max_queue = concurrency, max_queue
        self._table = explainers
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="explain", initializer=_explanation_thread
        )
        self._metrics = metrics
        self._pending = 0
        self._explainers: weakref.WeakKeyDictionary[Any, Explainer] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Explain requests running or waiting."""
        return self._pending

    def explainer(self, name: str, predictor: AnyPredictor) -> Explainer:
        """This predictor's explainer (one per model version: a reload's new predictor gets a new one)."""
        with self._lock:
            explainer = self._explainers.get(predictor)
            if explainer is None:
                explainer = self._table[predictor.kind](predictor, name=name)
                self._explainers[predictor] = explainer
            return explainer

    def _explain(
        self, name: str, predictor: AnyPredictor, prepared: Any, target: int | None, method: Method
    ) -> Explained:
        return self.explainer(name, predictor).explain(prepared, target=target, method=method)

    async def run(
        self, name: str, predictor: AnyPredictor, prepared: Any, *, target: int | None, method: Method
    ) -> Explained:
        """Explain one request's inputs off the event loop; 503 when the explanation queue is full."""
        if self._pending >= self.concurrency + self.max_queue:
            if self._metrics is not None:
                self._metrics.explain_rejected.labels(name).inc()
            raise Overloaded(MSG_EXPLAIN_OVERLOADED.format(pending=self._pending))
        self._pending += 1
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            job = partial(self._explain, name, predictor, prepared, target, method)
            result = await loop.run_in_executor(self._executor, job)
        finally:
            self._pending -= 1
        if self._metrics is not None:
            self._metrics.explain_seconds.labels(name, method.value).observe(time.perf_counter() - started)
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
