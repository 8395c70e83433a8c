"""Tabular prediction: JSON rows or a CSV upload; concurrent requests share forward passes."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api.content import require_json
from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.limits import check_rows
from service.api.running import run_model
from service.inference.base import Prediction
from service.inference.csvio import read_csv_upload, scored_csv
from service.inference.tabular import PreparedRows, TabularPredictor
from service.registry import ModelEntry
from service.schemas.predict import TabularPrediction, TabularPredictRequest, TabularPredictResponse
from service.schemas.problem import Problem

router = APIRouter(prefix="/api/v1/tabular", tags=["tabular"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
# Validating a few rows costs less than a hop to a worker thread; more rows go off the event loop.
INLINE_ROWS = 32


async def _forward(
    entry: ModelEntry, predictor: TabularPredictor, batchers: BatchersDep, prepared: PreparedRows
) -> np.ndarray:
    return await run_model(entry, predictor, batchers, prepared, prepared.n)


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
    entry, predictor = registry.predictor(name, "tabular")
    check_rows(len(body.rows), settings.max_rows)
    prepare = partial(predictor.prepare, body.rows)
    prepared = prepare() if len(body.rows) <= INLINE_ROWS else await run_in_threadpool(prepare)
    probs = await _forward(entry, predictor, batchers, prepared)
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
    entry, predictor = registry.predictor(name, "tabular")
    filename = file.filename or "upload.csv"
    frame = await run_in_threadpool(read_csv_upload, await file.read(), filename=filename)
    check_rows(len(frame), settings.max_rows)
    prepared = await run_in_threadpool(partial(predictor.prepare_frame, frame, filename=filename))
    probs = await _forward(entry, predictor, batchers, prepared)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(scored_csv(frame, probs, predictor.classes), media_type="text/csv")
    return _response(entry, predictor.finish(prepared, probs))
