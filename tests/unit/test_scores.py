"""The metric maths against scikit-learn on fixed labels (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from service.reports.scores import MACRO, evaluate_codes, evaluate_labels

CLASSES = ["cat", "dog", "frog", "ship"]  # "ship" never occurs: it must not count in the macro average
CASES = {
    "mixed": (
        ["cat", "dog", "frog", "cat", "dog", "frog", "cat", "cat", "dog", "frog"],
        ["cat", "dog", "dog", "cat", "cat", "frog", "frog", "cat", "dog", "dog"],
    ),
    "a class never predicted": (["cat", "dog", "frog", "frog"], ["cat", "dog", "dog", "cat"]),
    "a class predicted but never actual": (["cat", "cat", "dog"], ["cat", "frog", "dog"]),
    "perfect": (["dog", "cat", "frog"], ["dog", "cat", "frog"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_scores_equal_sklearn(case: str) -> None:
    actual, predicted = CASES[case]
    ours = evaluate_labels(actual, predicted, CLASSES)
    assert ours.n == len(actual)
    assert ours.accuracy == pytest.approx(accuracy_score(actual, predicted))
    assert ours.confusion_matrix.labels == CLASSES
    assert ours.confusion_matrix.matrix == confusion_matrix(actual, predicted, labels=CLASSES).tolist()
    present = sorted(set(actual) | set(predicted))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, labels=present, zero_division=0)
    for i, label in enumerate(present):
        assert ours.precision[label] == pytest.approx(p[i])
        assert ours.recall[label] == pytest.approx(r[i])
        assert ours.f1[label] == pytest.approx(f[i])
    assert "ship" not in ours.precision
    mp, mr, mf, _ = precision_recall_fscore_support(actual, predicted, average="macro", zero_division=0)
    assert (ours.precision[MACRO], ours.recall[MACRO], ours.f1[MACRO]) == pytest.approx((mp, mr, mf))


def test_most_confused_pairs_are_ranked_by_count() -> None:
    actual, predicted = CASES["mixed"]
    pairs = evaluate_labels(actual, predicted, CLASSES).most_confused
    counts = [count for _, _, count in pairs]
    assert counts == sorted(counts, reverse=True)
    cm = confusion_matrix(actual, predicted, labels=CLASSES)
    off_diagonal = cm.sum() - np.trace(cm)
    assert sum(counts) == off_diagonal
    assert all(a != p for a, p, _ in pairs)


@pytest.mark.parametrize("case", list(CASES))
def test_scores_of_class_indices_equal_scores_of_labels(case: str) -> None:
    actual, predicted = CASES[case]
    codes = [np.array([CLASSES.index(x) for x in labels]) for labels in (actual, predicted)]
    assert evaluate_codes(*codes, CLASSES) == evaluate_labels(actual, predicted, CLASSES)
