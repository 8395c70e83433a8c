"""Which kind a loaded learner is, and the predictor that serves it: the one table a new kind joins."""

from __future__ import annotations

from typing import Any

from service.errors import MSG_UNKNOWN_KIND, LoadError
from service.inference.images import DEFAULT_MAX_PIXELS
from service.inference.predictor import AnyPredictor, ModelKind


def detect_kind(learn: Any) -> ModelKind:
    """Tabular learners carry procs and column names; vision ones resize images per item."""
    dls = learn.dls
    if hasattr(dls, "cont_names") and hasattr(dls, "cat_names"):
        return ModelKind.TABULAR
    after_item = getattr(dls, "after_item", None)
    names = {type(t).__name__ for t in getattr(after_item, "fs", [])}
    if names & {"Resize", "RandomResizedCrop", "ToTensor"}:
        return ModelKind.VISION
    raise LoadError(MSG_UNKNOWN_KIND.format(dls=type(dls).__name__))


def build_predictor(kind: ModelKind, learn: Any, *, max_image_pixels: int | None = None) -> AnyPredictor:
    """The predictor for a learner already prepared for serving (device, eval mode)."""
    if kind is ModelKind.TABULAR:
        from service.inference.tabular import TabularPredictor

        return TabularPredictor(learn)
    from service.inference.vision import VisionPredictor

    return VisionPredictor(learn, max_pixels=max_image_pixels or DEFAULT_MAX_PIXELS)
