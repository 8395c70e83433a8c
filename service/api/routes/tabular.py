"""Tabular models: predict JSON rows or a CSV upload, and evaluate on a labelled CSV.

Concurrent requests for one model share forward passes (the batcher); each request is validated alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api import hot, tables
from service.api.content import require_json
from service.api.deps import (
    BatchersDep,
    RegistryDep,
    SettingsDep,
    get_app_settings,
    get_batchers,
    get_registry,
)
from service.api.explaining import ExplainersDep, MethodQuery, TargetQuery, attributed, explain, explaining
from service.api.limits import ANSWER_ROWS, INLINE_ROWS, Threshold, check_rows, served
from service.api.outputs import tabular_items
from service.errors import MSG_INVALID_ROWS, InvalidInput
from service.inference.batching import ModelPool
from service.inference.csvio import CsvTable
from service.inference.labelled import TABLE_TARGETS
from service.inference.tabular import PreparedRows, TabularPredictor
from service.inference.tasks import AnyPrediction
from service.registry import ModelEntry, ModelRegistry
from service.reports.scores import score
from service.schemas.explain import RowExplanationItem, TabularExplainResponse
from service.schemas.predict import TabularItem, TabularPredictRequest, TabularPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import AnyEvaluation
from service.settings import Settings

router = APIRouter(prefix="/api/v1/tabular", tags=["tabular"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)


def _response(entry: ModelEntry, predictions: list[AnyPrediction]) -> TabularPredictResponse:
    return TabularPredictResponse(
        model=entry.name, version=entry.version, predictions=tabular_items(predictions)
    )


@router.post(
    "/{name}/predict",
    response_model=TabularPredictResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def predict_rows(
    name: str,
    body: TabularPredictRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    threshold: Threshold = None,
) -> TabularPredictResponse:
    """Predict JSON rows; one prediction per row, in order, with per-row warnings."""
    return await _predict_rows(name, body, threshold, registry=registry, settings=settings, batchers=batchers)


async def predict_rows_hot(request: Request, body: bytes) -> Response | None:
    """`predict_rows` for a plain request (a JSON body that validates as `TabularPredictRequest`, and at
    most a plain `threshold` in the query), or None."""
    query = hot.plain_query(request, {}, fractions=frozenset({"threshold"}))
    if query is None or not hot.is_json(request):
        return None
    try:
        rows = TabularPredictRequest.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # not JSON, or not the schema (a ValidationError is a ValueError)
        return None
    registry, settings = await get_registry(request), await get_app_settings(request)
    batchers = await get_batchers(request)
    name = request.path_params["name"]
    answer = await _predict_rows(
        name, rows, query.get("threshold"), registry=registry, settings=settings, batchers=batchers
    )
    return hot.json_response(answer)


# Served by `hot.HotRoute` first when the request is plain (api/hot.py).
HOT_ROUTES: dict[str, hot.Hot] = {
    f"{router.prefix}/{{name}}/predict": hot.Hot(
        predict_rows_hot,
        query=frozenset({"threshold"}),
        body=frozenset({"body"}),
        dependencies=frozenset({"require_json", "get_registry", "get_app_settings", "get_batchers"}),
    )
}


async def _predict_rows(
    name: str,
    body: TabularPredictRequest,
    threshold: float | None,
    *,
    registry: ModelRegistry,
    settings: Settings,
    batchers: ModelPool,
) -> TabularPredictResponse:
    entry, predictor = served(registry, name, TabularPredictor, threshold=threshold)
    check_rows(len(body.rows), settings.max_rows)
    prepare = partial(predictor.prepare, body.rows)
    prepared = prepare() if len(body.rows) <= INLINE_ROWS else await run_in_threadpool(prepare)
    outputs = await batchers.run(entry, predictor, prepared)
    return _response(entry, predictor.finish(prepared, outputs, threshold=threshold))


@router.post(
    "/{name}/predict/csv", response_model=TabularPredictResponse, responses={**ERRORS, **tables.CSV_OR_JSON}
)
async def predict_csv(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with a header row")],
    threshold: Threshold = None,
) -> Response | TabularPredictResponse:
    """Predict every row of a CSV upload; `Accept: text/csv` returns the CSV with prediction columns."""
    entry, predictor = served(registry, name, TabularPredictor, threshold=threshold)
    table = await tables.read_table(file)
    as_csv = tables.wants_csv(request)
    outputs, notes = await _score_table(entry, predictor, batchers, table, warnings=not as_csv)
    if as_csv:
        return tables.csv_answer(table, outputs, predictor.head, threshold=threshold)
    parts = _answer_parts(predictor, outputs, notes, threshold)
    return tables.streamed_predictions(TabularPredictResponse, entry, parts)


def _answer_parts(
    predictor: TabularPredictor, probs: np.ndarray, notes: dict[int, list[str]], threshold: float | None
) -> Iterator[list[TabularItem]]:
    """A CSV's prediction items a few thousand rows at a time (`tables.streamed_predictions` splices them)."""
    for start in range(0, len(probs), ANSWER_ROWS):
        part = probs[start : start + ANSWER_ROWS]
        ahead = {i - start: notes[i] for i in range(start, start + len(part)) if i in notes}
        prepared = PreparedRows(columns={}, n=len(part), notes=ahead)
        yield tabular_items(predictor.finish(prepared, part, threshold=threshold))


@router.post("/{name}/evaluate", response_model=AnyEvaluation, responses=ERRORS)
async def evaluate_tabular(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with the model's columns and its target column(s)")],
    threshold: Threshold = None,
) -> AnyEvaluation:
    """Scores of the model's task on a labelled CSV: classification accuracy, P/R/F1 and the confusion
    matrix; multi_label `accuracy_multi` and P/R/F1 at the threshold; regression RMSE, MAE, R² per target."""
    entry, predictor = served(registry, name, TabularPredictor, threshold=threshold)
    table = await tables.read_table(file)
    actual = await tables.read_targets(TABLE_TARGETS, table, predictor.spec.targets, predictor.head)
    outputs, _ = await _score_table(entry, predictor, batchers, table, warnings=False)
    return score(predictor.head, actual, outputs, threshold=threshold)


async def _score_table(
    entry: ModelEntry,
    predictor: TabularPredictor,
    batchers: ModelPool,
    table: CsvTable,
    *,
    warnings: bool,
) -> tuple[np.ndarray, dict[int, list[str]]]:
    """Every row of a CSV, a bounded chunk at a time: the same errors (row numbers of the whole file) and
    warnings (by row of the whole file) as one batch, without ever holding a Python object per row."""
    parts: list[np.ndarray] = []
    notes: dict[int, list[str]] = {}
    errors: list[dict[str, Any]] = []
    async for chunk in tables.table_chunks(table):
        start = chunk.start
        try:
            prepare = partial(predictor.prepare_chunk, chunk, filename=table.filename)
            prepared = await run_in_threadpool(prepare)
        except InvalidInput as exc:
            if not exc.errors or exc.errors[0]["loc"][0] != "rows":
                raise  # about the file (a missing column): the same for every chunk
            errors += [{**e, "loc": ["rows", e["loc"][1] + start, *e["loc"][2:]]} for e in exc.errors]
            continue
        if not errors:  # once a row is bad, the rest are only checked, so the error lists every bad row
            parts.append(await batchers.run(entry, predictor, prepared))
            if warnings:
                notes.update((start + i, note) for i, note in prepared.notes.items())
    if errors:
        # One batch reports missing numbers only once every row's types are right; so do the chunks.
        typed = [e for e in errors if e["type"] != "null"]
        errors = typed or errors
        raise InvalidInput(MSG_INVALID_ROWS.format(count=len(errors)), errors)
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]), notes


@router.post(
    "/{name}/explain",
    response_model=TabularExplainResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def explain_rows(
    name: str,
    body: TabularPredictRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    explainers: ExplainersDep,
    target: TargetQuery = None,
    method: MethodQuery = None,
) -> TabularExplainResponse:
    """Why each row got its answer: integrated gradients per input column, from a reference row (training
    means, #na# categories) to the row; `base_value + sum(attributions) = output`. Runs beside predictions,
    at most MAX_EXPLAIN_ITEMS rows."""
    request = explaining(
        registry,
        name,
        TabularPredictor,
        count=len(body.rows),
        limit=settings.max_explain_items,
        target=target,
        method=method,
    )
    predictor: TabularPredictor = request.predictor
    _, explained, predictions = await explain(
        request, partial(predictor.prepare, body.rows), explainers=explainers
    )
    return TabularExplainResponse(
        model=name,
        version=request.entry.version,
        reference=explained.reference or {},
        explanations=[
            RowExplanationItem(**attributed(item, prediction), attributions=item.attributions)
            for item, prediction in zip(explained.items, predictions, strict=True)
        ],
    )
