"""What every predictor shares: the result types and the `Predictor` protocol."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One input's outcome: the winning label and a probability per class."""

    label: str
    probabilities: dict[str, float]
    warnings: list[str] = field(default_factory=list)

    def top_k(self, k: int) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:k]


class Predictor(Protocol):
    kind: str
    classes: list[str]

    def input_schema(self) -> dict[str, Any]: ...


def predictions_from_probs(
    probs: np.ndarray, classes: list[str], warnings: list[list[str]] | None = None
) -> list[Prediction]:
    """Turn an (n, classes) probability matrix into `Prediction`s, in input order."""
    winners = probs.argmax(axis=1)
    out = []
    for i, row in enumerate(probs.tolist()):
        out.append(
            Prediction(
                label=classes[int(winners[i])],
                probabilities=dict(zip(classes, row, strict=True)),
                warnings=warnings[i] if warnings else [],
            )
        )
    return out


class LearnerRunner:
    """Runs `get_preds` on one learner; fastai learners are not safe to call from two threads."""

    def __init__(self, learn: Any) -> None:
        self.learn = learn
        self._lock = threading.Lock()

    def probabilities(self, items: Any) -> np.ndarray:
        with self._lock:
            dl = self.learn.dls.test_dl(items, num_workers=0)
            probs, _ = self.learn.get_preds(dl=dl)
        return probs.float().cpu().numpy()
