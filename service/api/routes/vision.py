"""Vision models: classify uploaded images as one batch, and evaluate on labelled images or a zip."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.responses import Response

from service.api import hot
from service.api.deps import (
    BatchersDep,
    RegistryDep,
    SettingsDep,
    get_app_settings,
    get_batchers,
    get_registry,
)
from service.api.limits import check_files
from service.api.uploads import read_images
from service.errors import MSG_EVAL_BOTH, MSG_EVAL_LABEL_COUNT, MSG_EVAL_NOTHING, InvalidInput
from service.inference.batching import ModelPool
from service.inference.images import UploadedImage
from service.inference.labelled import EVAL_CHUNK, read_class_archive, resolve_labels
from service.inference.predictor import labels_of
from service.inference.vision import VisionPredictor
from service.registry import ModelRegistry
from service.reports.scores import evaluate_labels
from service.schemas.predict import TopK, VisionPrediction, VisionPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import Evaluation
from service.settings import Settings

router = APIRouter(prefix="/api/v1/vision", tags=["vision"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
MIN_TOP_K, MAX_TOP_K = 1, 1000


@router.post("/{name}/predict", response_model=VisionPredictResponse, responses=ERRORS)
async def predict_images(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    files: Annotated[
        list[UploadFile], File(description="One or more images (JPEG, PNG, GIF, BMP, WEBP, TIFF).")
    ],
    top_k: Annotated[
        int | None,
        Query(
            ge=MIN_TOP_K, le=MAX_TOP_K, description="How many likely classes to list per image (default 3)."
        ),
    ] = None,
) -> VisionPredictResponse:
    """Classify each uploaded image; predictions come back in upload order."""
    return await _classify(name, files, top_k, registry=registry, settings=settings, batchers=batchers)


async def predict_images_hot(request: Request, body: bytes) -> Response | None:
    """`predict_images` for a plain request (image files only; `top_k` absent or in range), or None."""
    query = hot.plain_ints(request, {"top_k": (MIN_TOP_K, MAX_TOP_K)})
    if query is None:
        return None
    settings = await get_app_settings(request)
    parts = await hot.file_parts(request, body, field="files", max_files=settings.max_files)
    if parts is None:
        return None
    files, form = parts
    registry, batchers = await get_registry(request), await get_batchers(request)
    try:
        name = request.path_params["name"]
        answer = await _classify(
            name, files, query.get("top_k"), registry=registry, settings=settings, batchers=batchers
        )
    finally:
        await form.close()
    return hot.json_response(answer)


# Served by `hot.HotRoute` first when the request is plain (api/hot.py).
HOT_ROUTES: dict[str, hot.HotHandler] = {f"{router.prefix}/{{name}}/predict": predict_images_hot}


async def _classify(
    name: str,
    files: Sequence[StarletteUploadFile],
    top_k: int | None,
    *,
    registry: ModelRegistry,
    settings: Settings,
    batchers: ModelPool,
) -> VisionPredictResponse:
    entry, predictor = registry.predictor(name, VisionPredictor)
    k = top_k or settings.default_top_k
    check_files(len(files), settings.max_files)
    uploads = await read_images(files)
    prepared = await run_in_threadpool(predictor.prepare, uploads)
    probs = await batchers.run(entry, predictor, prepared)
    return VisionPredictResponse(
        model=name,
        version=entry.version,
        predictions=[
            VisionPrediction(
                filename=upload.filename,
                label=p.label,
                probabilities=p.probabilities,
                top_k=[TopK(label=label, probability=prob) for label, prob in p.top_k(k)],
            )
            for upload, p in zip(uploads, predictor.finish(prepared, probs), strict=True)
        ],
    )


async def _labelled_uploads(
    files: list[UploadFile] | None, labels: list[str] | None, archive: UploadFile | None, settings: Settings
) -> tuple[list[UploadedImage], list[str]]:
    """Images and their labels: from `files` with one `labels` field each, or from one class-folder zip."""
    if archive is not None and files:
        raise InvalidInput(MSG_EVAL_BOTH)
    if archive is not None:
        read = partial(
            read_class_archive,
            await archive.read(),
            filename=archive.filename or "archive.zip",
            max_files=settings.max_eval_files,
            max_bytes=settings.max_archive_bytes,
        )
        return await run_in_threadpool(read)
    if not files:
        raise InvalidInput(MSG_EVAL_NOTHING)
    check_files(len(files), settings.max_files)
    if len(labels or []) != len(files):
        raise InvalidInput(MSG_EVAL_LABEL_COUNT.format(files=len(files), labels=len(labels or [])))
    return await read_images(files), list(labels or [])


@router.post("/{name}/evaluate", response_model=Evaluation, responses=ERRORS)
async def evaluate_vision(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    files: Annotated[
        list[UploadFile] | None, File(description="images, with one `labels` field each")
    ] = None,
    labels: Annotated[list[str] | None, Form(description="the class of each file, in the same order")] = None,
    archive: Annotated[UploadFile | None, File(description="a zip with one folder per class")] = None,
) -> Evaluation:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix on labelled images."""
    entry, predictor = registry.predictor(name, VisionPredictor)
    uploads, raw_labels = await _labelled_uploads(files, labels, archive, settings)
    classes = predictor.classes
    actual = resolve_labels(raw_labels, classes, where="labels")
    parts = []
    for start in range(0, len(uploads), EVAL_CHUNK):
        prepared = await run_in_threadpool(predictor.prepare, uploads[start : start + EVAL_CHUNK])
        parts.append(await batchers.run(entry, predictor, prepared))
    return evaluate_labels(actual, labels_of(np.concatenate(parts), classes), classes)
