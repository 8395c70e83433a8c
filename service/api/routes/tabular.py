"""Tabular models: predict JSON rows or a CSV upload, and evaluate on a labelled CSV.

Concurrent requests for one model share forward passes (the batcher); each request is validated alone.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api.content import require_json
from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.limits import check_rows
from service.inference.csvio import read_csv_upload, scored_csv
from service.inference.labelled import target_labels
from service.inference.predictor import Prediction, labels_of
from service.inference.tabular import TabularPredictor
from service.registry import ModelEntry
from service.reports.scores import evaluate_labels
from service.schemas.predict import TabularPrediction, TabularPredictRequest, TabularPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import Evaluation

router = APIRouter(prefix="/api/v1/tabular", tags=["tabular"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
# Validating a few rows costs less than a hop to a worker thread; more rows go off the event loop.
INLINE_ROWS = 32


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
    frame = await run_in_threadpool(read_csv_upload, await file.read(), filename=filename)
    check_rows(len(frame), settings.max_rows)
    prepared = await run_in_threadpool(partial(predictor.prepare_frame, frame, filename=filename))
    probs = await batchers.run(entry, predictor, prepared)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(scored_csv(frame, probs, predictor.classes), media_type="text/csv")
    return _response(entry, predictor.finish(prepared, probs))


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
    frame = await run_in_threadpool(read_csv_upload, await file.read(), filename=filename)
    check_rows(len(frame), settings.max_rows)
    classes = predictor.classes
    actual = target_labels(frame, target=predictor.spec.target, classes=classes, filename=filename)
    prepared = await run_in_threadpool(partial(predictor.prepare_frame, frame, filename=filename))
    probs = await batchers.run(entry, predictor, prepared)
    return evaluate_labels(actual, labels_of(probs, classes), classes)
