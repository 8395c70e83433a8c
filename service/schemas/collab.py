"""Request and response bodies of the collab (recommender) endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from service.schemas.predict import Identified

# A user or item id as JSON: text, or a whole number (both name the same id: 7 and "7").
CollabId = StrictStr | StrictInt


def _title() -> Any:
    # Left out when the model folder has no items.csv (or it does not name the item).
    return Field(
        default=None,
        description="the item's title, from the model folder's items.csv",
        exclude_if=lambda title: title is None,
    )


class CollabPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: CollabId = Field(description="a user id (see the model's /schema)")
    item: CollabId = Field(description="an item id")


class CollabPredictRequest(BaseModel):
    pairs: list[CollabPair] = Field(
        min_length=1,
        description="(user, item) pairs to rate; an id the learner does not know gives a null rating",
        examples=[[{"user": 1, "item": 50}]],
    )


class CollabPrediction(Identified):
    """rating: the predicted rating of the pair, null when the learner does not know its user or item (a
    warning says which)."""

    user: CollabId | None = None
    item: CollabId | None = None
    rating: float | None
    title: str | None = _title()
    warnings: list[str] = Field(default_factory=list)


class ModelAnswer(BaseModel):
    """What every collab answer starts with: the model that answered and its version (pydantic puts a base
    class's fields first, so each answer's field order is as before)."""

    model: str
    version: str | None


class CollabPredictResponse(ModelAnswer):
    predictions: list[CollabPrediction]


class ListedItem(BaseModel):
    """An item of a recommendation or a similarity list (its own score field follows `item`, then `title`)."""

    item: CollabId


class RecommendedItem(ListedItem):
    score: float = Field(description="the predicted rating of this item by the user")
    title: str | None = _title()


class RecommendResponse(ModelAnswer):
    user: CollabId
    items: list[RecommendedItem] = Field(description="best first; never an item in `exclude`")
    warnings: list[str] = Field(default_factory=list)


class SimilarItem(ListedItem):
    similarity: float = Field(description="cosine similarity of the two items' embeddings, in [-1, 1]")
    title: str | None = _title()


class SimilarResponse(ModelAnswer):
    item: CollabId
    title: str | None = _title()
    items: list[SimilarItem] = Field(description="most similar first; the item itself left out")
