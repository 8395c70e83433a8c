"""What every predictor shares: the result type, the model runner and the fastai fallback runner."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Prediction:
    """One input's outcome: the winning label and a probability per class."""

    label: str
    probabilities: dict[str, float]
    warnings: list[str] = field(default_factory=list)

    def top_k(self, k: int) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:k]


def predictions_from_probs(
    probs: np.ndarray, classes: list[str], warnings: list[list[str]] | None = None
) -> list[Prediction]:
    """Turn an (n, classes) probability matrix into `Prediction`s, in input order."""
    labels = [classes[i] for i in probs.argmax(axis=1).tolist()]
    rows = probs.tolist()
    notes = warnings if warnings else [[] for _ in rows]
    return [
        Prediction(label, dict(zip(classes, row, strict=True)), note)
        for label, row, note in zip(labels, rows, notes, strict=True)
    ]


def split_rows(probs: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Cut one batch's probabilities back into each request's rows, in order."""
    bounds = np.cumsum([0, *sizes])
    return [probs[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]


class ModelRunner:
    """The model's forward and the loss's activation, on tensors already encoded (the fast paths)."""

    def __init__(self, learn: Any, *, max_batch: int = 4096) -> None:
        import torch

        self._torch = torch
        self.max_batch = max_batch
        self.model = learn.model
        self.device = next(iter(learn.model.parameters())).device
        activation = getattr(learn.loss_func, "activation", None)
        self.activation = activation if callable(activation) else (lambda out: torch.softmax(out, dim=-1))
        self._lock = threading.Lock()

    def probabilities(self, *inputs: Any) -> np.ndarray:
        torch = self._torch
        n = len(inputs[0])
        chunks = []
        # Very large requests run in slices: past a few thousand rows a bigger matrix only costs cache misses.
        with self._lock, torch.inference_mode():
            for start in range(0, n, self.max_batch):
                # Plain tensors: fastai's TensorBase subclasses add a __torch_function__ hop to every layer.
                part = [
                    x[start : start + self.max_batch]
                    .as_subclass(torch.Tensor)
                    .to(self.device, non_blocking=True)
                    for x in inputs
                ]
                chunks.append(self.activation(self.model(*part)).float().cpu())
        return np.asarray(torch.cat(chunks).numpy() if len(chunks) > 1 else chunks[0].numpy())


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
