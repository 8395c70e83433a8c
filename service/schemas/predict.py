"""Request and response bodies of the prediction endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TabularPredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        description="One object per row: column name to value (see the model's /schema).",
        examples=[[{"age": 39, "workclass": "State-gov"}]],
    )


class TabularPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


class TabularPredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[TabularPrediction]


class TopK(BaseModel):
    label: str
    probability: float


class VisionPrediction(BaseModel):
    filename: str
    label: str
    probabilities: dict[str, float]
    top_k: list[TopK]


class VisionPredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[VisionPrediction]
