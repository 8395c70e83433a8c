"""The metric maths of every task, in one place: classification (accuracy, per-class and macro precision,
recall and F1, the confusion matrix), multi_label (`accuracy_multi`, per-class, micro and macro P/R/F1 at
the threshold), regression (RMSE, MAE, R² per target), points (mean pixel error), rating (RMSE and MAE over
the pairs the learner knows, the others counted apart) and segmentation (pixel accuracy, IoU and Dice per
class).

Used for the training report's test set and by the evaluate endpoints, always on outputs made by the
serving predictors themselves; `SCORERS` is this front door's codec per task. Macro averages run over the
classes present in the labels or the predictions, as scikit-learn's default does; an undefined ratio
(nothing predicted as a class) counts as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from service.inference.tasks import Task
from service.schemas.reports import (
    AnyEvaluation,
    ConfusionMatrix,
    Evaluation,
    MultiLabelEvaluation,
    PointsEvaluation,
    RatingEvaluation,
    RegressionEvaluation,
    SegmentationEvaluation,
    TargetScores,
)

MACRO, MICRO = "macro", "micro"


def confusion(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """counts[i, j] = how many items of class i were predicted as class j."""
    position = {c: i for i, c in enumerate(classes)}
    return confusion_of_codes(
        np.array([position[a] for a in actual], dtype=np.int64),
        np.array([position[p] for p in predicted], dtype=np.int64),
        len(classes),
    )


def confusion_of_codes(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """`confusion` of class indices: one bincount, whatever the number of items."""
    flat = np.bincount(actual * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def evaluate_labels(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> Evaluation:
    """Metrics of `predicted` against `actual`; every label must be one of `classes`."""
    return evaluate_counts(confusion(actual, predicted, classes), classes)


def evaluate_codes(actual: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> Evaluation:
    """`evaluate_labels` of class indices (a CSV's target column, the argmax of its probabilities)."""
    return evaluate_counts(confusion_of_codes(actual, predicted, len(classes)), classes)


def evaluate_counts(counts: np.ndarray, classes: Sequence[str]) -> Evaluation:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix, from the matrix."""
    n = int(counts.sum())
    hits = np.diag(counts).astype(np.float64)
    true_per_class, predicted_per_class = counts.sum(axis=1), counts.sum(axis=0)
    precision = _ratio(hits, predicted_per_class.astype(np.float64))
    recall = _ratio(hits, true_per_class.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = [i for i in range(len(classes)) if true_per_class[i] or predicted_per_class[i]]

    def per_class(values: np.ndarray) -> dict[str, float]:
        out = {classes[i]: float(values[i]) for i in present}
        out[MACRO] = float(values[present].mean()) if present else 0.0
        return out

    off_diagonal = [
        (classes[i], classes[j], int(counts[i, j]))
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and counts[i, j]
    ]
    return Evaluation(
        n=n,
        accuracy=float(hits.sum() / n) if n else 0.0,
        precision=per_class(precision),
        recall=per_class(recall),
        f1=per_class(f1),
        confusion_matrix=ConfusionMatrix(labels=list(classes), matrix=counts.tolist()),
        most_confused=sorted(off_diagonal, key=lambda pair: -pair[2]),
    )


def evaluate_multi_label(
    actual: np.ndarray, predicted: np.ndarray, classes: Sequence[str], *, threshold: float
) -> MultiLabelEvaluation:
    """`actual` and `predicted`: (n, classes) booleans. Per-class, micro and macro (over every class)
    precision, recall and F1, and the share of (item, class) decisions that are right."""
    actual, predicted = actual.astype(bool), predicted.astype(bool)
    hits = (actual & predicted).sum(axis=0).astype(np.float64)
    said, true = predicted.sum(axis=0).astype(np.float64), actual.sum(axis=0).astype(np.float64)
    precision, recall = _ratio(hits, said), _ratio(hits, true)
    f1 = _ratio(2 * precision * recall, precision + recall)
    micro_p = float(_ratio(hits.sum(keepdims=True), said.sum(keepdims=True))[0])
    micro_r = float(_ratio(hits.sum(keepdims=True), true.sum(keepdims=True))[0])
    micro_f1 = float(_ratio(np.array([2 * micro_p * micro_r]), np.array([micro_p + micro_r]))[0])

    def per_class(values: np.ndarray, micro: float) -> dict[str, float]:
        out = {c: float(v) for c, v in zip(classes, values, strict=True)}
        out[MICRO] = micro
        out[MACRO] = float(values.mean()) if len(values) else 0.0
        return out

    return MultiLabelEvaluation(
        n=len(actual),
        threshold=threshold,
        accuracy_multi=float((actual == predicted).mean()) if actual.size else 0.0,
        precision=per_class(precision, micro_p),
        recall=per_class(recall, micro_r),
        f1=per_class(f1, micro_f1),
    )


def evaluate_regression(
    actual: np.ndarray, predicted: np.ndarray, targets: Sequence[str]
) -> RegressionEvaluation:
    """`actual` and `predicted`: (n, targets) in the targets' units."""
    error = predicted.astype(np.float64) - actual.astype(np.float64)
    spread = ((actual - actual.mean(axis=0)) ** 2).sum(axis=0)
    scores = {}
    for i, target in enumerate(targets):
        residual = float((error[:, i] ** 2).sum())
        scores[target] = TargetScores(
            rmse=float(np.sqrt((error[:, i] ** 2).mean())),
            mae=float(np.abs(error[:, i]).mean()),
            r2=1.0 - residual / float(spread[i]) if spread[i] > 0 else None,
        )
    return RegressionEvaluation(n=len(actual), targets=scores)


def evaluate_points(actual: np.ndarray, predicted: np.ndarray) -> PointsEvaluation:
    """`actual` and `predicted`: (n, points, 2) in pixels; the mean Euclidean distance over every point."""
    distance = np.sqrt(((predicted.astype(np.float64) - actual.astype(np.float64)) ** 2).sum(axis=-1))
    return PointsEvaluation(n=len(actual), mean_pixel_error=float(distance.mean()) if distance.size else 0.0)


def evaluate_masks(
    actual: Sequence[np.ndarray], predicted: Sequence[np.ndarray], classes: Sequence[str]
) -> SegmentationEvaluation:
    """`actual` and `predicted`: per image, (height, width) class indices of the same size. Pixel accuracy,
    and per class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN) over all pixels."""
    count = len(classes)
    counts = np.zeros((count, count), dtype=np.int64)
    for truth, guess in zip(actual, predicted, strict=True):
        counts += confusion_of_codes(truth.astype(np.int64).ravel(), guess.astype(np.int64).ravel(), count)
    hits = np.diag(counts).astype(np.float64)
    union = counts.sum(axis=0) + counts.sum(axis=1) - np.diag(counts)
    present = [i for i in range(count) if union[i] > 0]
    total = int(counts.sum())

    def per_class(values: np.ndarray) -> dict[str, float]:
        out = {classes[i]: float(values[i]) for i in present}
        out["mean"] = float(values[present].mean()) if present else 0.0
        return out

    return SegmentationEvaluation(
        n=len(actual),
        pixel_accuracy=float(hits.sum() / total) if total else 0.0,
        iou=per_class(_ratio(hits, union.astype(np.float64))),
        dice=per_class(_ratio(2 * hits, (union + np.diag(counts)).astype(np.float64))),
    )


def _score_classification(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    return evaluate_codes(actual, outputs.argmax(axis=1), head.classes)


def _score_multi_label(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    used = head.threshold if threshold is None else threshold
    return evaluate_multi_label(actual, head.predicted(outputs, used), head.classes, threshold=used)


def _score_regression(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    return evaluate_regression(actual, outputs, head.targets)


def _score_points(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    return evaluate_points(actual, outputs)


def evaluate_ratings(actual: np.ndarray, predicted: np.ndarray) -> RatingEvaluation:
    """`actual` and `predicted`: (n, 1) ratings; a NaN prediction (unknown user or item) is not scored."""
    known = np.isfinite(predicted[:, 0])
    error = predicted[known, 0].astype(np.float64) - actual[known, 0].astype(np.float64)
    scored = int(known.sum())
    return RatingEvaluation(
        n=scored,
        rmse=float(np.sqrt((error**2).mean())) if scored else None,
        mae=float(np.abs(error).mean()) if scored else None,
        unknown=len(known) - scored,
    )


def _score_rating(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    return evaluate_ratings(actual, outputs)


def _score_segmentation(
    head: Any, actual: np.ndarray, outputs: np.ndarray, threshold: float | None
) -> AnyEvaluation:
    return evaluate_masks(list(actual), list(outputs), head.classes)


# Per task: (head, actual, outputs, threshold) -> its Evaluation. Actual: class indices (classification),
# (n, classes) booleans (multi_label), (n, targets) values (regression), (n, points, 2) pixels (points);
# points' outputs are the decoded pixels too; segmentation: object arrays of (height, width) masks, actual and
# predicted, each in its image's pixels.
SCORERS: dict[Task, Callable[[Any, np.ndarray, np.ndarray, float | None], AnyEvaluation]] = {
    Task.CLASSIFICATION: _score_classification,
    Task.MULTI_LABEL: _score_multi_label,
    Task.REGRESSION: _score_regression,
    Task.POINTS: _score_points,
    Task.RATING: _score_rating,
    Task.SEGMENTATION: _score_segmentation,
}


def score(
    head: Any, actual: np.ndarray, outputs: np.ndarray, *, threshold: float | None = None
) -> AnyEvaluation:
    """The evaluation of `outputs` against `actual`, as `head`'s task scores it."""
    return SCORERS[head.task](head, actual, outputs, threshold)
