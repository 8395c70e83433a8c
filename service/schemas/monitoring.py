"""Request and response bodies of the monitoring endpoints (contract: "Monitoring")."""

from __future__ import annotations

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
