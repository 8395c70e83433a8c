"""Text models: classify JSON texts or a CSV column, and evaluate on a labelled CSV.

Concurrent requests for one model share forward passes (the batcher); the predictor groups their texts so
that padding never changes an answer (`inference/text.py`). Each request is validated alone.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api import tables
from service.api.content import require_json
from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.explaining import ExplainersDep, MethodQuery, TargetQuery, attributed, explain, explaining
from service.api.limits import MAX_TOP_K, MIN_TOP_K, Threshold, check_texts, served
from service.api.outputs import text_items
from service.errors import MSG_CSV_MISSING_COLUMNS, InvalidInput
from service.inference.csvio import CsvTable
from service.inference.labelled import TEXT_TARGETS
from service.inference.text import PreparedTexts, TextPredictor
from service.registry import ModelEntry
from service.reports.scores import score
from service.schemas.explain import TextExplainResponse, TextExplanationItem
from service.schemas.predict import TextPredictRequest, TextPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import AnyEvaluation
from service.settings import Settings

router = APIRouter(prefix="/api/v1/text", tags=["text"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
TEXT_COLUMN = "text"

TopKQuery = Annotated[
    int | None,
    Query(ge=MIN_TOP_K, le=MAX_TOP_K, description="How many likely classes to list per text (default 3)."),
]
ColumnQuery = Annotated[str, Query(description="the CSV column holding the texts")]


def _response(
    entry: ModelEntry, predictor: TextPredictor, prepared: PreparedTexts, outputs: np.ndarray, **how: Any
) -> TextPredictResponse:
    predictions = predictor.finish(prepared, outputs, threshold=how["threshold"])
    return TextPredictResponse(
        model=entry.name, version=entry.version, predictions=text_items(predictions, top_k=how["top_k"])
    )


@router.post(
    "/{name}/predict",
    response_model=TextPredictResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def predict_texts(
    name: str,
    body: TextPredictRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    top_k: TopKQuery = None,
    threshold: Threshold = None,
) -> TextPredictResponse:
    """Classify JSON texts as the model's task does (a class, or labels); one prediction per text, in order,
    with warnings (e.g. the share of tokens the model does not know)."""
    entry, predictor = served(registry, name, TextPredictor, threshold=threshold)
    check_texts(body.texts, max_texts=settings.max_rows, max_chars=settings.max_text_chars)
    prepared = await run_in_threadpool(predictor.prepare, body.texts)
    outputs = await batchers.run(entry, predictor, prepared)
    return _response(
        entry, predictor, prepared, outputs, threshold=threshold, top_k=top_k or settings.default_top_k
    )


async def _texts_of(
    table: CsvTable, column: str, predictor: TextPredictor, settings: Settings
) -> PreparedTexts:
    """A CSV's text column, checked and tokenised (errors name its rows)."""
    if column not in table.columns:
        raise InvalidInput(
            MSG_CSV_MISSING_COLUMNS.format(filename=table.filename, columns=column),
            [{"loc": ["file", column], "msg": "column missing", "type": "missing"}],
        )
    texts = await run_in_threadpool(lambda: [t or "" for t in table.column(column).to_pylist()])
    check_texts(texts, max_texts=settings.max_rows, max_chars=settings.max_text_chars)
    return await run_in_threadpool(partial(predictor.prepare, texts, where=("rows",)))


@router.post(
    "/{name}/predict/csv", response_model=TextPredictResponse, responses={**ERRORS, **tables.CSV_OR_JSON}
)
async def predict_text_csv(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with a header row and a `text` column")],
    column: ColumnQuery = TEXT_COLUMN,
    top_k: TopKQuery = None,
    threshold: Threshold = None,
) -> Response | TextPredictResponse:
    """Classify every text of a CSV column; `Accept: text/csv` returns the CSV with prediction columns."""
    entry, predictor = served(registry, name, TextPredictor, threshold=threshold)
    table = await tables.read_table(file)
    prepared = await _texts_of(table, column, predictor, settings)
    outputs = await batchers.run(entry, predictor, prepared)
    if tables.wants_csv(request):
        return tables.csv_answer(table, outputs, predictor.head, threshold=threshold)
    return _response(
        entry, predictor, prepared, outputs, threshold=threshold, top_k=top_k or settings.default_top_k
    )


@router.post("/{name}/evaluate", response_model=AnyEvaluation, responses=ERRORS)
async def evaluate_text(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with a `text` column and the target column")],
    column: ColumnQuery = TEXT_COLUMN,
    target: Annotated[
        str | None,
        Query(
            description="the target column: a class (classification) or labels joined by ';' "
            "(multi_label); default: the column the learner was trained on, else `label`"
        ),
    ] = None,
    threshold: Threshold = None,
) -> AnyEvaluation:
    """Scores of the model's task on a labelled CSV: classification accuracy, P/R/F1 and the confusion
    matrix; multi_label `accuracy_multi` and P/R/F1 at the threshold."""
    entry, predictor = served(registry, name, TextPredictor, threshold=threshold)
    table = await tables.read_table(file)
    actual = await tables.read_targets(TEXT_TARGETS, table, target or predictor.target_column, predictor.head)
    prepared = await _texts_of(table, column, predictor, settings)
    outputs = await batchers.run(entry, predictor, prepared)
    return score(predictor.head, actual, outputs, threshold=threshold)


@router.post(
    "/{name}/explain",
    response_model=TextExplainResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def explain_texts(
    name: str,
    body: TextPredictRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    explainers: ExplainersDep,
    target: TargetQuery = None,
    method: MethodQuery = None,
) -> TextExplainResponse:
    """Why each text got its answer: integrated gradients per fastai token, over the token embeddings,
    from the all-padding text to the text. Runs beside predictions, at most MAX_EXPLAIN_ITEMS texts."""
    request = explaining(
        registry,
        name,
        TextPredictor,
        count=len(body.texts),
        limit=settings.max_explain_items,
        target=target,
        method=method,
    )
    check_texts(body.texts, max_texts=settings.max_rows, max_chars=settings.max_text_chars)
    predictor: TextPredictor = request.predictor
    _, explained, predictions = await explain(
        request, partial(predictor.prepare, body.texts), explainers=explainers
    )
    return TextExplainResponse(
        model=name,
        version=request.entry.version,
        explanations=[
            TextExplanationItem(
                **attributed(item, prediction),
                tokens=item.tokens,
                special=item.special,
                attributions=item.attributions,
            )
            for item, prediction in zip(explained.items, predictions, strict=True)
        ],
    )
