"""Request and response bodies of the prediction endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Identified(BaseModel):
    """Every prediction item's id: `<X-Request-ID>-<k>` for the request's k-th item (0-based, in the
    answer's order); the payload log keeps it, and feedback names the prediction by it."""

    id: str | None = Field(default=None, description="this prediction's id (`<X-Request-ID>-<index>`)")


class TabularPredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        description="One object per row: column name to value (see the model's /schema).",
        examples=[[{"age": 39, "workclass": "State-gov"}]],
    )


class TabularPrediction(Identified):
    """classification: the most likely class and every class's probability (they sum to 1)."""

    label: str
    probabilities: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


class MultiLabels(BaseModel):
    """multi_label: independent probabilities; `labels` are the classes over `threshold`."""

    labels: list[str]
    probabilities: dict[str, float]
    threshold: float


class Values(BaseModel):
    """regression: one value per target, in the target's units."""

    values: dict[str, float]


class TabularMultiLabelPrediction(Identified, MultiLabels):
    warnings: list[str] = Field(default_factory=list)


class TabularRegressionPrediction(Identified, Values):
    warnings: list[str] = Field(default_factory=list)


TabularItem = TabularPrediction | TabularMultiLabelPrediction | TabularRegressionPrediction


class TabularPredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[TabularItem]


class TopK(BaseModel):
    label: str
    probability: float


class VisionPrediction(Identified):
    """classification: the most likely class, every class's probability and the `top_k` most likely."""

    filename: str
    label: str
    probabilities: dict[str, float]
    top_k: list[TopK]


class VisionMultiLabelPrediction(Identified):
    filename: str
    labels: list[str] = Field(description="the classes whose probability is over `threshold`")
    probabilities: dict[str, float] = Field(description="independent, one per class")
    threshold: float


class VisionRegressionPrediction(Identified):
    filename: str
    values: dict[str, float] = Field(description="per target (`target_0`, … when the learner names none)")


class VisionPointsPrediction(Identified):
    """points: [x, y] in pixels of the uploaded image."""

    filename: str
    points: list[list[float]]


class VisionSegmentationPrediction(Identified):
    """segmentation: a class per pixel of the uploaded image, as a palette PNG of class indices."""

    filename: str
    classes: list[str] = Field(description="the learner's codes: a mask pixel's value indexes this list")
    size: list[int] = Field(description="[height, width] of the uploaded image, and of the mask")
    class_fractions: dict[str, float] = Field(description="per class, its share of the image's pixels")
    mask_png: str = Field(
        description="base64 PNG with a palette: one 8-bit class index per pixel, a distinct colour per class"
    )
    warnings: list[str] = Field(default_factory=list)


VisionItem = (
    VisionPrediction
    | VisionMultiLabelPrediction
    | VisionRegressionPrediction
    | VisionPointsPrediction
    | VisionSegmentationPrediction
)


class VisionPredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[VisionItem]


class TextPredictRequest(BaseModel):
    texts: list[str] = Field(
        min_length=1,
        description="The texts to classify, one prediction each, in order (see the model's /schema).",
        examples=[["a lovely, warm film"]],
    )


class TextPrediction(Identified):
    """classification: the most likely class, every class's probability and the `top_k` most likely."""

    label: str
    probabilities: dict[str, float]
    top_k: list[TopK]
    warnings: list[str] = Field(default_factory=list)


class TextMultiLabelPrediction(Identified, MultiLabels):
    warnings: list[str] = Field(default_factory=list)


TextItem = TextPrediction | TextMultiLabelPrediction


class TextPredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[TextItem]
