"""Collab models (recommenders): rate (user, item) pairs as JSON or a CSV, recommend items for a user, list
items like an item, and evaluate on a CSV of known ratings.

Pairs and recommendations go through the model's batcher like every other prediction; `similar` reads the
item embeddings copied at load (no model call).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api import tables
from service.api.content import require_json
from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.explaining import explaining
from service.api.limits import INLINE_ROWS, check_rows
from service.api.outputs import collab_items
from service.inference.batching import ModelPool
from service.inference.collab import CollabPredictor, PreparedPairs, RankedItem
from service.inference.csvio import CsvTable
from service.inference.labelled import TABLE_TARGETS
from service.registry import ModelEntry
from service.reports.scores import score
from service.schemas.collab import (
    CollabPredictRequest,
    CollabPredictResponse,
    RecommendedItem,
    RecommendResponse,
    SimilarItem,
    SimilarResponse,
)
from service.schemas.problem import Problem
from service.schemas.reports import AnyEvaluation

router = APIRouter(prefix="/api/v1/collab", tags=["collab"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
# How many items a recommendation or a similarity list may ask for (`n`; more is 422).
MIN_ITEMS, MAX_ITEMS, DEFAULT_ITEMS = 1, 1000, 10

Count = Annotated[
    int, Query(ge=MIN_ITEMS, le=MAX_ITEMS, description=f"how many items to list ({MIN_ITEMS}-{MAX_ITEMS})")
]


@router.post(
    "/{name}/predict",
    response_model=CollabPredictResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def predict_pairs(
    name: str, body: CollabPredictRequest, registry: RegistryDep, settings: SettingsDep, batchers: BatchersDep
) -> CollabPredictResponse:
    """Rate (user, item) pairs, one prediction per pair in order; an unknown user or item rates null."""
    entry, predictor = registry.predictor(name, CollabPredictor)
    check_rows(len(body.pairs), settings.max_rows)
    prepare = partial(predictor.prepare, [(pair.user, pair.item) for pair in body.pairs])
    prepared = prepare() if len(body.pairs) <= INLINE_ROWS else await run_in_threadpool(prepare)
    outputs = await batchers.run(entry, predictor, prepared)
    predictions = collab_items(predictor.finish(prepared, outputs))
    return CollabPredictResponse(model=entry.name, version=entry.version, predictions=predictions)


def _recommended(items: list[RankedItem]) -> list[RecommendedItem]:
    return [RecommendedItem(item=i.item, score=i.score, title=i.title) for i in items]


@router.get("/{name}/recommend", response_model=RecommendResponse, responses=Problem.responses(404, 422, 503))
async def recommend(
    name: str,
    registry: RegistryDep,
    batchers: BatchersDep,
    user: Annotated[str, Query(min_length=1, description="a user id the learner knows")],
    n: Count = DEFAULT_ITEMS,
    exclude: Annotated[
        list[str] | None, Query(description="item ids to leave out (e.g. those the user rated already)")
    ] = None,
) -> RecommendResponse:
    """The n items with the highest predicted rating for a user the learner knows (404 for any other)."""
    entry, predictor = registry.predictor(name, CollabPredictor)
    prepared = predictor.prepare_recommend(user, count=n, exclude=exclude or [])
    scores = await batchers.run(entry, predictor, prepared)
    ranked = await run_in_threadpool(predictor.recommended, prepared, scores)
    return RecommendResponse(
        model=entry.name,
        version=entry.version,
        user=prepared.user_id,
        items=_recommended(ranked),
        warnings=prepared.notes,
    )


@router.get("/{name}/similar", response_model=SimilarResponse, responses=Problem.responses(404, 422, 503))
async def similar(
    name: str,
    registry: RegistryDep,
    item: Annotated[str, Query(min_length=1, description="an item id the learner knows")],
    n: Count = DEFAULT_ITEMS,
) -> SimilarResponse:
    """The n items most like an item: cosine similarity of the learner's item embeddings (404 for an
    item it does not know)."""
    entry, predictor = registry.predictor(name, CollabPredictor)
    found, ranked = await run_in_threadpool(partial(predictor.similar, item, count=n))
    return SimilarResponse(
        model=entry.name,
        version=entry.version,
        item=found,
        title=predictor.title(found),
        items=[SimilarItem(item=i.item, similarity=i.score, title=i.title) for i in ranked],
    )


@router.post(
    "/{name}/predict/csv", response_model=CollabPredictResponse, responses={**ERRORS, **tables.CSV_OR_JSON}
)
async def predict_csv(
    name: str,
    request: Request,
    registry: RegistryDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with the model's user and item columns")],
) -> Response:
    """Rate the user and item of every row of a CSV upload; `Accept: text/csv` returns the CSV with a
    `prediction` column (empty where the learner does not know the user or the item)."""
    entry, predictor = registry.predictor(name, CollabPredictor)
    table = await tables.read_table(file)
    scored = await _score_table(entry, predictor, batchers, table)
    if tables.wants_csv(request):
        ratings = np.concatenate([predictor.ratings(p, o) for p, o in scored])
        return tables.csv_answer(table, ratings, predictor.head)
    parts = (collab_items(predictor.finish(p, o)) for p, o in scored)
    return tables.streamed_predictions(CollabPredictResponse, entry, parts)


@router.post("/{name}/evaluate", response_model=AnyEvaluation, responses=ERRORS)
async def evaluate_collab(
    name: str,
    registry: RegistryDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with the model's user, item and rating columns")],
) -> AnyEvaluation:
    """RMSE and MAE of the predicted ratings on a CSV of known ratings; pairs whose user or item the
    learner does not know are counted apart (`unknown`), never scored."""
    entry, predictor = registry.predictor(name, CollabPredictor)
    table = await tables.read_table(file)
    actual = await tables.read_targets(TABLE_TARGETS, table, predictor.head.targets, predictor.head)
    scored = await _score_table(entry, predictor, batchers, table)
    ratings = np.concatenate([predictor.ratings(p, o) for p, o in scored])
    return score(predictor.head, actual, ratings)


async def _score_table(
    entry: ModelEntry, predictor: CollabPredictor, batchers: ModelPool, table: CsvTable
) -> list[tuple[PreparedPairs, np.ndarray]]:
    """Every row of a CSV, a bounded chunk at a time through the model's batcher."""
    scored = []
    async for chunk in tables.table_chunks(table):
        prepare = partial(predictor.prepare_chunk, chunk, filename=table.filename)
        prepared = await run_in_threadpool(prepare)
        scored.append((prepared, await batchers.run(entry, predictor, prepared)))
    return scored


@router.post("/{name}/explain", responses=Problem.responses(404, 503))
async def explain_pairs(name: str, registry: RegistryDep, settings: SettingsDep) -> None:
    """Recommenders have no explanations (a rating is a product of two learned embeddings, not of inputs
    one could attribute it to): always a 404 problem naming the kinds that are explained."""
    limit = settings.max_explain_items
    explaining(registry, name, CollabPredictor, count=0, limit=limit, target=None, method=None)
