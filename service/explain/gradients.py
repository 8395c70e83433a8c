"""The model copy explanations differentiate, and integrated gradients with a completeness check."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.inference.runtime import TorchModel, _plain

# Integrated gradients' first step count (Gauss-Legendre points, captum's default rule), doubled while the
# completeness error is above its tolerance, up to the most.
IG_STEPS = 32
IG_MAX_STEPS = 512


def tolerance(output: float) -> float:
    """How far `base_value + sum(attributions)` may be from `output` (the contract's 1e-2 × max(1, |out|))."""
    return 1e-2 * max(1.0, abs(output))


class ModelCopy:
    """The served learner's model and its loss's activation, copied for explanations: they register hooks
    and need gradients, which must never touch the model that serves predictions in another thread."""

    def __init__(self, torch_model: TorchModel) -> None:
        self.model = copy.deepcopy(torch_model.forward.model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.activation: Callable[[Any], Any] = torch_model.forward.activation
        self.device = torch_model.device

    def tensor(self, x: Any) -> Any:
        """A plain tensor on the model's device (fastai's subclasses add a hop to every layer)."""
        return _plain(x).to(self.device)


@dataclass(frozen=True)
class Integrated:
    """Integrated gradients of one input: per input tensor its attributions, the explained number at the
    input and at the reference, and how far their difference is from the attributions' sum."""

    attributions: tuple[Any, ...]
    output: float
    base_value: float
    error: float
    steps: int


def integrated_gradients(
    forward: Callable[..., Any],
    inputs: tuple[Any, ...],
    baselines: tuple[Any, ...],
    *,
    steps: int = IG_STEPS,
    max_steps: int = IG_MAX_STEPS,
    batch: int | None = None,
) -> Integrated:
    """captum's `IntegratedGradients` of `forward` (one number per row) from `baselines` to `inputs` (one
    row each), with twice the steps while the completeness error is above `tolerance`."""
    import torch
    from captum.attr import IntegratedGradients

    with torch.no_grad():
        output = float(forward(*inputs).reshape(-1)[0])
        base_value = float(forward(*baselines).reshape(-1)[0])
    explainer = IntegratedGradients(forward)
    n = steps
    while True:
        attributions = explainer.attribute(
            inputs, baselines=baselines, n_steps=n, internal_batch_size=batch or n
        )
        error = abs(base_value + float(sum(a.sum() for a in attributions)) - output)
        if error <= tolerance(output) or n >= max_steps:
            return Integrated(tuple(attributions), output, base_value, error, n)
        n *= 2
