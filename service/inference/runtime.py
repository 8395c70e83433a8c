"""Runtimes under the predictors: what turns encoded inputs into probabilities.

`TorchModel` runs the learner's model on tensors the predictor already encoded (the fast paths);
`FastaiPipeline` runs fastai's own `test_dl` + `get_preds` for learners whose transforms we do not
reproduce. The learner's preprocessing always stays above this layer, in the predictor.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class TorchModel:
    """The model's forward and the loss's activation in torch eager, on tensors already encoded."""

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


class FastaiPipeline:
    """fastai's own `test_dl` + `get_preds` on one learner; learners are not safe to call from two threads."""

    def __init__(self, learn: Any) -> None:
        self.learn = learn
        self._lock = threading.Lock()

    def probabilities(self, items: Any) -> np.ndarray:
        with self._lock:
            dl = self.learn.dls.test_dl(items, num_workers=0)
            probs, _ = self.learn.get_preds(dl=dl)
        return np.asarray(probs.float().cpu().numpy())
