"""Response bodies of the explain endpoints (contract: "Explanations")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.explain.core import Method


class Answer(BaseModel):
    """Which answer is explained: the model's own, as its predict endpoint gives it (per task: `label`
    for a classifier, `labels` for multi-label, `values` for a regression; none for points and masks)."""

    label: str | None = Field(
        default=None, description="the predicted class (multi_label: the most likely class)"
    )
    labels: list[str] | None = Field(default=None, description="multi_label: the classes over the threshold")
    values: dict[str, float] | None = Field(default=None, description="regression: the predicted values")
    warnings: list[str] = Field(default_factory=list)


class Explanation(Answer):
    target: str = Field(description="what is explained: a class, a regression target or a point")
    method: Method


class ImageExplanationItem(Explanation):
    filename: str
    layer: str | None = Field(default=None, description="Grad-CAM: the layer whose map this is")
    heatmap_png: str = Field(description="base64 PNG, 8-bit grey, the uploaded image's size: importance")
    overlay_png: str = Field(description="base64 PNG: the importance as a colour map over the image")


class VisionExplainResponse(BaseModel):
    model: str
    version: str | None
    explanations: list[ImageExplanationItem]


class Attributed(Explanation):
    output: float = Field(description="the explained number: the target class's probability, or the value")
    base_value: float = Field(description="the same number at the reference input")
    completeness_error: float = Field(
        description="|base_value + sum(attributions) - output| (integrated gradients' completeness)"
    )


class RowExplanationItem(Attributed):
    attributions: dict[str, float] = Field(
        description="per input column (a categorical column's embedding dimensions summed)"
    )


class TabularExplainResponse(BaseModel):
    model: str
    version: str | None
    reference: dict[str, Any] = Field(
        description="the reference row the attributions start from: each continuous column's training mean, "
        "#na# for categories"
    )
    explanations: list[RowExplanationItem]


class TextExplanationItem(Attributed):
    tokens: list[str] = Field(description="fastai's tokens of the text (its rules' xx… tokens included)")
    special: list[bool] = Field(description="per token: one of fastai's special tokens (xxbos, xxmaj, …)")
    attributions: list[float] = Field(description="per token: its embedding's dimensions summed")


class TextExplainResponse(BaseModel):
    model: str
    version: str | None
    explanations: list[TextExplanationItem]
