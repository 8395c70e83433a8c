"""What the explain routes of every kind share: the query parameters, the limits, the model's own answer
beside each explanation, and the order of the steps (validate, prepare, explain on the explain pool)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from service.errors import MSG_EXPLAIN_TOO_MANY, PayloadTooLarge
from service.explain.core import Explained, Method, target_index
from service.explain.pool import ExplainPool, explain_method
from service.inference.predictor import AnyPredictor
from service.inference.tasks import AnyPrediction
from service.registry import ModelEntry, ModelRegistry

P = TypeVar("P", bound=AnyPredictor)

TargetQuery = Annotated[
    str | None,
    Query(
        description="what to explain: a class (classification, multi_label, segmentation), a target "
        "(regression) or a point (points: point_0, …); default the predicted class, the first target or "
        "point"
    ),
]
MethodQuery = Annotated[
    Method | None,
    Query(
        description="images: gradcam (default) or integrated_gradients; rows and texts: integrated_gradients"
    ),
]


async def get_explainers(request: Request) -> ExplainPool:
    explainers: ExplainPool = request.app.state.explainers
    return explainers


ExplainersDep = Annotated[ExplainPool, Depends(get_explainers)]


def check_items(count: int, limit: int) -> None:
    """413 when a request carries more items than MAX_EXPLAIN_ITEMS."""
    if count > limit:
        raise PayloadTooLarge(MSG_EXPLAIN_TOO_MANY.format(count=count, limit=limit))


def answer(prediction: AnyPrediction) -> dict[str, Any]:
    """The fields of the model's own answer an explanation repeats (those its task has)."""
    fields = {key: getattr(prediction, key, None) for key in ("label", "labels", "values")}
    probabilities = getattr(prediction, "probabilities", None)
    if fields["label"] is None and probabilities:  # multi_label: its most likely class
        fields["label"] = max(probabilities, key=probabilities.__getitem__)
    return {**fields, "warnings": list(prediction.warnings)}


def attributed(item: Any, prediction: AnyPrediction) -> dict[str, Any]:
    """The fields every attribution explanation (rows, texts) answers: the model's answer, what is
    explained and how, the explained number at the input and at the reference, completeness's error."""
    return {
        **answer(prediction),
        "target": item.target,
        "method": item.method,
        "output": item.output,
        "base_value": item.base_value,
        "completeness_error": item.error,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Explaining:
    """One explain request, checked: the model, its predictor, the method and the target's position."""

    entry: ModelEntry
    predictor: Any
    method: Method
    target: int | None


def explaining(
    registry: ModelRegistry,
    name: str,
    predictor_type: type[P],
    *,
    count: int,
    limit: int,
    target: str | None,
    method: Method | None,
) -> Explaining:
    """Everything that can refuse the request before any work: the model (404/503), its kind's explainer
    (404), the method (422), the target (422) and the item count (413)."""
    entry, predictor = registry.predictor(name, predictor_type)
    chosen_method = explain_method(name, predictor, method)
    index = target_index(predictor.head, target, name=name)
    check_items(count, limit)
    return Explaining(entry, predictor, chosen_method, index)


async def explain(
    request: Explaining, prepare: Callable[[], Any], *, explainers: ExplainPool
) -> tuple[Any, Explained, list[AnyPrediction]]:
    """Prepare (in a thread), explain (on the explain pool), and the model's predictions decoded from the
    outputs the explanation ran on."""
    prepared = await run_in_threadpool(prepare)
    explained = await explainers.run(
        request.entry.name, request.predictor, prepared, target=request.target, method=request.method
    )
    return prepared, explained, request.predictor.finish(prepared, explained.outputs)
