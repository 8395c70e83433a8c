"""What every explainer shares: the methods, the targets each task explains, and the result types.

A target is one number of the model's output that an explanation attributes: a class's score
(classification, multi_label, segmentation), a target's value (regression), a point (points). `TARGETS`
holds, per task, the names a client may choose from and the default for one input; `score` turns the
model's output into that number, the same for every method and kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from service.errors import MSG_EXPLAIN_TARGET, InvalidInput
from service.inference.tasks import AnyHead, Task


class Method(StrEnum):
    """How an explanation is computed (`?method=`)."""

    GRADCAM = "gradcam"  # Selvaraju et al. 2017: gradients of the target at a convolutional layer's map
    INTEGRATED_GRADIENTS = "integrated_gradients"  # Sundararajan et al. 2017: completeness holds


@dataclass(frozen=True)
class TargetRule:
    """What a task explains: the names a client may choose (`what` names them in errors) and the default
    one for an input, from that input's own (activated) output."""

    what: str
    names: Callable[[AnyHead], list[str]]
    default: Callable[[np.ndarray], int]


def _segment_default(output: np.ndarray) -> int:
    """The class covering most pixels besides the first code (fastai's codes start with the background),
    or the first when nothing else was predicted."""
    counts = np.bincount(output.argmax(axis=0).ravel(), minlength=output.shape[0])
    return int(counts[1:].argmax()) + 1 if len(counts) > 1 and counts[1:].any() else 0


def _first(output: np.ndarray) -> int:
    return 0


TARGETS: dict[Task, TargetRule] = {
    Task.CLASSIFICATION: TargetRule("class", lambda head: head.classes, lambda out: int(out.argmax())),
    # The top class, whether or not it passes the threshold: there is always one to explain.
    Task.MULTI_LABEL: TargetRule("class", lambda head: head.classes, lambda out: int(out.argmax())),
    Task.REGRESSION: TargetRule("target", lambda head: head.targets, _first),
    Task.POINTS: TargetRule("point", lambda head: head.targets, _first),
    Task.SEGMENTATION: TargetRule("class", lambda head: head.classes, _segment_default),
}


def target_index(head: AnyHead, target: str | None, *, name: str) -> int | None:
    """The position of a named target among the head's (None: the default, decided per input); 422
    naming the choices for a name the model does not have."""
    if target is None:
        return None
    rule = TARGETS[head.task]
    names = rule.names(head)
    if target not in names:
        raise InvalidInput(
            MSG_EXPLAIN_TARGET.format(name=name, what=rule.what, target=target, choices=", ".join(names)),
            [{"loc": ["query", "target"], "msg": f"unknown {rule.what}", "type": "unknown_target"}],
        )
    return names.index(target)


def chosen(head: AnyHead, index: int | None, output: np.ndarray) -> tuple[int, str]:
    """The target explained for one input: the asked one, or its task's default; with its name."""
    rule = TARGETS[head.task]
    i = rule.default(output) if index is None else index
    return i, rule.names(head)[i]


def score(task: Task, out: Any, index: int, own: Any) -> Any:
    """The explained number per row of a batch of model outputs `out` (raw scores for Grad-CAM, activated
    outputs for integrated gradients); `own` = the explained input's own output (no gradient).

    classification, multi_label, regression: the class's or target's column. points: the point's
    projection on its own predicted position (from the centre of the model's input, where fastai's
    `PointScaler` puts 0): what moves it where the model put it. segmentation: the class's mean score over
    the pixels the model gives that class in this input (all pixels when it gives none)."""
    if task is Task.POINTS:
        part = slice(2 * index, 2 * index + 2)
        return (out[:, part] * own[:, part]).sum(dim=1)
    if task is Task.SEGMENTATION:
        mask = (own.argmax(dim=1) == index).to(out.dtype)
        if not bool(mask.any()):
            mask = mask + 1
        return (out[:, index] * mask).sum(dim=(1, 2)) / mask.sum()
    return out[:, index]


@dataclass(frozen=True)
class ImageExplanation:
    """One image's map of importance for its target, at the uploaded image's size."""

    target: str
    method: Method
    heatmap: np.ndarray  # (height, width) float32 in [0, 1]
    heatmap_png: bytes  # the same, 8-bit grey
    overlay_png: bytes  # coloured over the image
    layer: str | None  # Grad-CAM: the layer whose map it is


@dataclass(frozen=True)
class RowExplanation:
    """One row's attributions per input column; `base_value + sum(attributions) = output` (integrated
    gradients' completeness, `error` = how far the sum is from it)."""

    target: str
    method: Method
    output: float
    base_value: float
    attributions: dict[str, float]
    error: float


@dataclass(frozen=True)
class TextExplanation:
    """One text's attribution per fastai token (special tokens flagged)."""

    target: str
    method: Method
    tokens: list[str]
    special: list[bool]
    attributions: list[float]
    output: float
    base_value: float
    error: float


AnyExplanation = ImageExplanation | RowExplanation | TextExplanation


@dataclass(frozen=True)
class Explained:
    """A request's explanations, with the model's outputs for its inputs (what its predictions are decoded
    from, so that an explanation says which answer it explains)."""

    outputs: np.ndarray
    items: list[Any]
    reference: dict[str, Any] | None = None  # what the attributions start from, where it is an input
