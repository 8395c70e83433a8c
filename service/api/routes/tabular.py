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
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from service.api import hot
from service.api.content import require_json
from service.api.deps import (
    BatchersDep,
    RegistryDep,
    SettingsDep,
    get_app_settings,
    get_batchers,
    get_registry,
)
from service.api.limits import check_rows
from service.errors import MSG_INVALID_ROWS, InvalidInput
from service.inference.batching import ModelPool
from service.inference.csvio import CsvTable, read_csv_table, scored_csv_parts
from service.inference.labelled import table_target_codes
from service.inference.predictor import Prediction
from service.inference.tabular import PreparedRows, TabularPredictor
from service.registry import ModelEntry, ModelRegistry
from service.reports.scores import evaluate_codes
from service.schemas.predict import TabularPrediction, TabularPredictRequest, TabularPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import Evaluation
from service.settings import Settings

router = APIRouter(prefix="/api/v1/tabular", tags=["tabular"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
# Validating a few rows costs less than a hop to a worker thread; more rows go off the event loop.
INLINE_ROWS = 32
# Predictions per part of a CSV's streamed JSON answer: memory stays bounded whatever the file's size.
ANSWER_ROWS = 4096


def _response(entry: ModelEntry, predictions: list[Prediction]) -> TabularPredictResponse:
    return TabularPredictResponse(
        model=entry.name,
        version=entry.version,
        predictions=[
            TabularPrediction(label=p.label, probabilities=p.probabilities, warnings=p.warnings)
            for p in predictions
        ],
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
) -> TabularPredictResponse:
    """Predict JSON rows; one prediction per row, in order, with per-row warnings."""
    return await _predict_rows(name, body, registry=registry, settings=settings, batchers=batchers)


async def predict_rows_hot(request: Request, body: bytes) -> Response | None:
    """`predict_rows` for a plain request (a JSON body that validates as `TabularPredictRequest`), or None."""
    if not hot.is_json(request):
        return None
    try:
        rows = TabularPredictRequest.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # not JSON, or not the schema (a ValidationError is a ValueError)
        return None
    registry, settings = await get_registry(request), await get_app_settings(request)
    batchers = await get_batchers(request)
    name = request.path_params["name"]
    return hot.json_response(
        await _predict_rows(name, rows, registry=registry, settings=settings, batchers=batchers)
    )


# Served by `hot.HotRoute` first when the request is plain (api/hot.py).
HOT_ROUTES: dict[str, hot.HotHandler] = {f"{router.prefix}/{{name}}/predict": predict_rows_hot}


async def _predict_rows(
    name: str,
    body: TabularPredictRequest,
    *,
    registry: ModelRegistry,
    settings: Settings,
    batchers: ModelPool,
) -> TabularPredictResponse:
    entry, predictor = registry.predictor(name, TabularPredictor)
    check_rows(len(body.rows), settings.max_rows)
    prepare = partial(predictor.prepare, body.rows)
    prepared = prepare() if len(body.rows) <= INLINE_ROWS else await run_in_threadpool(prepare)
    probs = await batchers.run(entry, predictor, prepared)
    return _response(entry, predictor.finish(prepared, probs))


@router.post(
    "/{name}/predict/csv",
    response_model=TabularPredictResponse,
    responses={**ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def predict_csv(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with a header row")],
) -> Response | TabularPredictResponse:
    """Predict every row of a CSV upload; `Accept: text/csv` returns the CSV with prediction columns."""
    entry, predictor = registry.predictor(name, TabularPredictor)
    filename = file.filename or "upload.csv"
    table = await run_in_threadpool(read_csv_table, file.file, filename=filename)
    as_csv = "text/csv" in request.headers.get("accept", "")
    probs, notes = await _score_table(entry, predictor, batchers, table, filename, warnings=not as_csv)
    if as_csv:
        parts = iterate_in_threadpool(scored_csv_parts(table, probs, predictor.classes))
        return StreamingResponse(parts, media_type="text/csv")
    answer = iterate_in_threadpool(_answer_parts(entry, predictor, probs, notes))
    return StreamingResponse(answer, media_type="application/json")


def _answer_parts(
    entry: ModelEntry, predictor: TabularPredictor, probs: np.ndarray, notes: dict[int, list[str]]
) -> Iterator[bytes]:
    """A CSV's `TabularPredictResponse`, serialised a few thousand rows at a time: the bytes FastAPI writes
    for the whole model, without ever holding an object per row of a large file."""
    empty = hot.json_bytes(_response(entry, []))  # {"model":..,"version":..,"predictions":[]}
    yield empty[:-2]
    for start in range(0, len(probs), ANSWER_ROWS):
        part = probs[start : start + ANSWER_ROWS]
        ahead = {i - start: notes[i] for i in range(start, start + len(part)) if i in notes}
        prepared = PreparedRows(columns={}, n=len(part), notes=ahead)
        body = hot.json_bytes(_response(entry, predictor.finish(prepared, part)))
        yield (b"," if start else b"") + body[len(empty) - 2 : -2]
    yield empty[-2:]


@router.post("/{name}/evaluate", response_model=Evaluation, responses=ERRORS)
async def evaluate_tabular(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with the model's columns and its target column")],
) -> Evaluation:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix on a labelled CSV."""
    entry, predictor = registry.predictor(name, TabularPredictor)
    filename = file.filename or "upload.csv"
    table = await run_in_threadpool(read_csv_table, file.file, filename=filename)
    classes = predictor.classes
    actual = await run_in_threadpool(
        partial(table_target_codes, table, target=predictor.spec.target, classes=classes)
    )
    probs, _ = await _score_table(entry, predictor, batchers, table, filename, warnings=False)
    return evaluate_codes(actual, probs.argmax(axis=1), classes)


async def _score_table(
    entry: ModelEntry,
    predictor: TabularPredictor,
    batchers: ModelPool,
    table: CsvTable,
    filename: str,
    *,
    warnings: bool,
) -> tuple[np.ndarray, dict[int, list[str]]]:
    """Every row of a CSV, a bounded chunk at a time: the same errors (row numbers of the whole file) and
    warnings (by row of the whole file) as one batch, without ever holding a Python object per row."""
    parts: list[np.ndarray] = []
    notes: dict[int, list[str]] = {}
    errors: list[dict[str, Any]] = []
    chunks = table.chunks()  # a large file is parsed as its chunks are taken: off the event loop
    while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
        start = chunk.start
        try:
            prepared = await run_in_threadpool(partial(predictor.prepare_chunk, chunk, filename=filename))
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
