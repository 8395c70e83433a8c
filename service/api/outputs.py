"""The /api/v1 front door's codec per task: a prediction as its JSON item (API.md, "Prediction item per
task"). Keyed by `Task`; `tests/unit/test_task_table.py` checks every served task has its entry."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from service.inference.masks import mask_png
from service.inference.predictor import ModelKind
from service.inference.tasks import AnyPrediction, Task
from service.schemas.collab import CollabPrediction
from service.schemas.predict import (
    Identified,
    TabularItem,
    TabularMultiLabelPrediction,
    TabularPrediction,
    TabularRegressionPrediction,
    TextItem,
    TextMultiLabelPrediction,
    TextPrediction,
    TopK,
    VisionItem,
    VisionMultiLabelPrediction,
    VisionPointsPrediction,
    VisionPrediction,
    VisionRegressionPrediction,
    VisionSegmentationPrediction,
)
from service.telemetry import item_ids

ItemT = TypeVar("ItemT", bound=Identified)

TABULAR_ITEMS: dict[Task, Callable[[Any], TabularItem]] = {
    Task.CLASSIFICATION: lambda p: TabularPrediction(
        label=p.label, probabilities=p.probabilities, warnings=p.warnings
    ),
    Task.MULTI_LABEL: lambda p: TabularMultiLabelPrediction(
        labels=p.labels, probabilities=p.probabilities, threshold=p.threshold, warnings=p.warnings
    ),
    Task.REGRESSION: lambda p: TabularRegressionPrediction(values=p.values, warnings=p.warnings),
}

# (prediction, filename, top_k) -> item
VISION_ITEMS: dict[Task, Callable[[Any, str, int], VisionItem]] = {
    Task.CLASSIFICATION: lambda p, filename, k: VisionPrediction(
        filename=filename,
        label=p.label,
        probabilities=p.probabilities,
        top_k=[TopK(label=label, probability=prob) for label, prob in p.top_k(k)],
    ),
    Task.MULTI_LABEL: lambda p, filename, k: VisionMultiLabelPrediction(
        filename=filename, labels=p.labels, probabilities=p.probabilities, threshold=p.threshold
    ),
    Task.REGRESSION: lambda p, filename, k: VisionRegressionPrediction(filename=filename, values=p.values),
    Task.POINTS: lambda p, filename, k: VisionPointsPrediction(filename=filename, points=p.points),
    Task.SEGMENTATION: lambda p, filename, k: VisionSegmentationPrediction(
        filename=filename,
        classes=p.classes,
        size=p.size,
        class_fractions=p.class_fractions,
        mask_png=base64.b64encode(mask_png(p.mask, len(p.classes))).decode(),
        warnings=p.warnings,
    ),
}

# Tasks whose one-image answer can be an image itself (`Accept: image/png`): prediction -> PNG bytes.
VISION_IMAGES: dict[Task, Callable[[Any], bytes]] = {
    Task.SEGMENTATION: lambda p: mask_png(p.mask, len(p.classes)),
}


COLLAB_ITEMS: dict[Task, Callable[[Any], CollabPrediction]] = {
    Task.RATING: lambda p: CollabPrediction(
        user=p.user, item=p.item, rating=p.rating, title=p.title, warnings=p.warnings
    ),
}

# (prediction, top_k) -> item
TEXT_ITEMS: dict[Task, Callable[[Any, int], TextItem]] = {
    Task.CLASSIFICATION: lambda p, k: TextPrediction(
        label=p.label,
        probabilities=p.probabilities,
        top_k=[TopK(label=label, probability=prob) for label, prob in p.top_k(k)],
        warnings=p.warnings,
    ),
    Task.MULTI_LABEL: lambda p, k: TextMultiLabelPrediction(
        labels=p.labels, probabilities=p.probabilities, threshold=p.threshold, warnings=p.warnings
    ),
}


def identified(items: list[ItemT]) -> list[ItemT]:
    """The items with the request's next ids (`telemetry.item_ids`: what the payload log gives them too)."""
    ids = item_ids(len(items))
    if ids is not None:
        for item, item_id in zip(items, ids, strict=True):
            item.id = item_id
    return items


def tabular_items(predictions: list[AnyPrediction]) -> list[TabularItem]:
    """Each row's prediction as its task's item."""
    return identified([TABULAR_ITEMS[p.task](p) for p in predictions])


def vision_items(predictions: list[AnyPrediction], filenames: list[str], *, top_k: int) -> list[VisionItem]:
    """Each image's prediction as its task's item."""
    return identified(
        [VISION_ITEMS[p.task](p, f, top_k) for p, f in zip(predictions, filenames, strict=True)]
    )


def collab_items(predictions: list[AnyPrediction]) -> list[CollabPrediction]:
    """Each pair's prediction as its task's item."""
    return identified([COLLAB_ITEMS[p.task](p) for p in predictions])


def text_items(predictions: list[AnyPrediction], *, top_k: int) -> list[TextItem]:
    """Each text's prediction as its task's item."""
    return identified([TEXT_ITEMS[p.task](p, top_k) for p in predictions])


# The v1 codecs of each kind's routes, for the check that every served task has one.
V1_ITEMS: dict[ModelKind, dict[Task, Any]] = {
    ModelKind.TABULAR: TABULAR_ITEMS,
    ModelKind.VISION: VISION_ITEMS,
    ModelKind.COLLAB: COLLAB_ITEMS,
    ModelKind.TEXT: TEXT_ITEMS,
}
