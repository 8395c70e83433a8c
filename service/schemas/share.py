"""Response body of the share endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ShareResponse(BaseModel):
    public_url: str | None = Field(description="public https URL of the ngrok tunnel to this service")
    source: Literal["ngrok"] | None = Field(description="what found the URL; null when none was found")
    reason: str | None = Field(default=None, description="why public_url is null")
    protected: Literal["oauth", "basic"] | None = Field(
        default=None,
        description="how the tunnel itself asks visitors to sign in (its traffic policy); null: it does not",
    )
    api_key_required: bool = Field(
        default=False, description="whether the model routes need an API key (FASTAI_SERVE_PREDICT_API_KEYS)"
    )
