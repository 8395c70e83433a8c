"""The one model interface every front door serves through: a `Predictor` of some `ModelKind`.

A request goes `prepare` (validate and encode, off the model thread; a bad request fails alone) →
`forward_many` (one batched model call for several requests' prepared inputs, on the model thread) →
`finish` (the request's own predictions, decoded by the predictor's task `head`). The /api/v1 routes,
and any other protocol or deployment, are adapters over these three steps; none re-implements one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from service.inference.runtime import ModelRuntime
from service.inference.tasks import AnyHead, AnyPrediction

RequestT_contra = TypeVar("RequestT_contra", contravariant=True)
PreparedT = TypeVar("PreparedT", bound="Prepared")


class ModelKind(StrEnum):
    """What a learner takes as input; decides its predictor and the paths that serve it."""

    TABULAR = "tabular"
    VISION = "vision"
    TEXT = "text"
    COLLAB = "collab"


class Prepared(Protocol):
    """One request's validated, encoded input, ready to join a batch."""

    @property
    def n(self) -> int:
        """How many items (rows, images) it holds: what batch sizes and queue limits count."""
        ...


class Predictor(Protocol[RequestT_contra, PreparedT]):
    """What a model needs to be served, whatever its kind and whichever door a request came in by."""

    kind: ClassVar[ModelKind]
    # What comes out and how it is decoded (`inference/tasks.py`): the task, its classes or targets.
    head: AnyHead
    # The forward under the fast path (torch, or ONNX Runtime once `runtime.select_runtime` checked it).
    runtime: ModelRuntime

    @property
    def classifies(self) -> bool:
        """Whether its outputs are one label's probabilities (single-label classification)."""
        ...

    @property
    def fast_path(self) -> bool:
        """Whether the learner's preprocessing is reproduced here; if not, fastai's own pipeline runs."""
        ...

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """Encoded inputs a new runtime must match torch on: the self-check input, then a random batch."""
        ...

    def input_schema(self) -> dict[str, Any]:
        """What a client sends, derived from the learner (columns and categories, or image size)."""
        ...

    def prepare(self, request: RequestT_contra, /) -> PreparedT:
        """Validate and encode one request; raises the service's 4xx errors. Runs off the model thread."""
        ...

    def forward_many(self, batch: list[PreparedT], /) -> list[np.ndarray]:
        """One model call for several requests: each gets its own (n, width) outputs, in order."""
        ...

    def finish(
        self, prepared: PreparedT, outputs: np.ndarray, /, *, threshold: float | None = None
    ) -> list[AnyPrediction]:
        """The request's predictions from its slice of the batch, decoded by the head (`threshold`: a
        multi-label request's own)."""
        ...

    def self_check(self) -> None:
        """Predict one input built from the learner's own schema; raises when it cannot."""
        ...


# What a served model is held as: any kind's predictor (a front door narrows it with `isinstance`).
AnyPredictor = Predictor[Any, Any]
# A predictor version's `forward_many`; the batcher groups a batch by it (see `batching.BatcherPool`).
ForwardMany = Callable[[list[Any]], list[np.ndarray]]


def split_rows(probs: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Cut one batch's probabilities back into each request's rows, in order."""
    bounds = np.cumsum([0, *sizes])
    return [probs[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
