"""Whether a heatmap points at what the model uses: occlude the pixels it ranks most important and see the
explained class's probability drop, against as many pixels chosen at random (a deletion test, after
Samek et al. 2017 and Petsiuk et al.'s RISE). `make bench` runs it on the demo image model; a test runs it
on a tiny learner whose class lives in a small part of each image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.explain.core import Method
from service.explain.images import ImageExplainer
from service.inference.vision import PreparedImages

# The share of the model's input pixels occluded (the 20%).
FRACTION = 0.2


@dataclass(frozen=True)
class Occlusion:
    """Mean drop of the explained (predicted) class's probability over `n` images, occluding the top
    `fraction` of pixels by the map, or a random `fraction`."""

    method: Method
    n: int
    fraction: float
    top_drop: float
    random_drop: float


def occlusion(
    explainer: ImageExplainer,
    prepared: PreparedImages,
    *,
    method: Method,
    fraction: float = FRACTION,
    seed: int = 0,
) -> Occlusion:
    """Occluded pixels are set to 0 in the model's input: the training mean colour after the learner's
    `Normalize` (black without one), the same reference integrated gradients start from."""
    import torch

    rng = np.random.default_rng(seed)
    top_drops, random_drops = [], []
    with explainer.lock:
        x = explainer.copy.tensor(explainer.predictor.encoded(prepared))
        raw, activated = explainer.outputs(x)
        height, width = x.shape[-2:]
        count = int(round(fraction * height * width))
        for i in range(len(x)):
            index = int(activated[i].argmax()) if activated.ndim == 2 else 0
            _, heat = explainer.heat(x, i, index=index, method=method, raw=raw, activated=activated)
            ranked = np.argsort(-heat.ravel(), kind="stable")[:count]
            chosen = rng.choice(height * width, size=count, replace=False)
            occluded = []
            for pixels in (ranked, chosen):
                mask = torch.zeros(height * width, dtype=torch.bool, device=x.device)
                mask[torch.as_tensor(pixels, device=x.device)] = True
                one = x[i : i + 1].clone()
                one[..., mask.reshape(height, width)] = 0
                occluded.append(one)
            _, after = explainer.outputs(torch.cat(occluded))
            before = float(activated[i, index])
            top_drops.append(before - float(after[0, index]))
            random_drops.append(before - float(after[1, index]))
    return Occlusion(
        method, len(top_drops), fraction, float(np.mean(top_drops)), float(np.mean(random_drops))
    )
