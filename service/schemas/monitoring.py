"""Request and response bodies of the monitoring endpoints (contract: "Monitoring")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FeedbackEntry(BaseModel):
    """One prediction's true answer: its `id` (as the answer gave it) and, by the model's task, `label`
    (classification), `labels` (multi_label), `values` (regression: per target), `points` (points, in the
    image's pixels) or `rating` (collab)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)


class FeedbackRequest(BaseModel):
    feedback: list[FeedbackEntry] = Field(
        min_length=1,
        examples=[[{"id": "0f8c2d…-0", "label": ">50K"}]],
        description="at most MAX_ROWS entries",
    )


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="entries stored")
    unknown_ids: list[str] = Field(description="ids the payload log does not hold: not stored")


class DriftItem(BaseModel):
    statistic: str = Field(description="psi: the population stability index against the reference")
    value: float
    status: str = Field(description="ok (< 0.1), warn (< 0.25) or alert; ok below 30 items in the window")
    n: int = Field(description="items of the window it was measured on")


class ReferenceInfo(BaseModel):
    source: str = Field(description="training (written by fastai-serve train) or upload (admin)")
    n: int


class MonitorResponse(BaseModel):
    model: str
    since: str
    n_predictions: int
    n_feedback: int = Field(description="predictions of the window with feedback")
    live: dict[str, Any] | None = Field(description="the task's Evaluation on those, as /evaluate gives it")
    predictions: dict[str, Any] = Field(
        description="per prediction column: shares of labels, or mean, std and n of a number"
    )
    reference: ReferenceInfo | None
    drift: dict[str, DriftItem] = Field(
        description="per input feature (and `predicted:<column>`): its drift against the reference"
    )


class ReferenceSummary(BaseModel):
    source: str
    n: int
    features: list[str]
