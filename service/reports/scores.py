"""Classification scores (the metric maths) from labels: accuracy, per-class and macro precision, recall
and F1, and the confusion matrix.

Used for the training report's test set and by the evaluate endpoints, always on predictions made by the
serving predictors themselves. Macro averages run over the classes present in the labels or the predictions,
as scikit-learn's default does; an undefined ratio (nothing predicted as a class) counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.schemas.reports import ConfusionMatrix, Evaluation

MACRO = "macro"


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
