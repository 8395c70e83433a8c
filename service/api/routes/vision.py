"""Vision models: classify uploaded images as one batch, and evaluate on labelled images or a zip."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any

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
from service.api.explaining import ExplainersDep, MethodQuery, TargetQuery, answer, b64, explain, explaining
from service.api.limits import MAX_TOP_K, MIN_TOP_K, Threshold, check_files, served
from service.api.outputs import VISION_IMAGES, vision_items
from service.api.uploads import read_images
from service.errors import (
    MSG_EVAL_ARCHIVE_TASK,
    MSG_EVAL_BOTH,
    MSG_EVAL_LABEL_COUNT,
    MSG_EVAL_MASK_COUNT,
    MSG_EVAL_MASKS_TASK,
    MSG_EVAL_NEEDS_MASKS,
    MSG_EVAL_NOTHING,
    MSG_EXPLAIN_PNG_ONE_FILE,
    MSG_MASK_PNG_ONE_FILE,
    InvalidInput,
)
from service.inference.batching import ModelPool
from service.inference.images import UploadedImage
from service.inference.labelled import EVAL_CHUNK, LABEL_TARGETS, MASK_TASKS, LabelledMask, read_class_archive
from service.inference.tasks import Task
from service.inference.vision import VisionPredictor
from service.registry import ModelRegistry
from service.reports.scores import score
from service.schemas.explain import ImageExplanationItem, VisionExplainResponse
from service.schemas.predict import VisionPredictResponse
from service.schemas.problem import Problem
from service.schemas.reports import AnyEvaluation
from service.settings import Settings

router = APIRouter(prefix="/api/v1/vision", tags=["vision"])
ERRORS = Problem.responses(400, 404, 413, 415, 422, 503)
PNG = "image/png"
# A segmentation model's answer for one image can be its mask itself (`Accept: image/png`).
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {PNG: {"schema": {"type": "string", "format": "binary"}}}},
}


def wants_png(request: Request) -> bool:
    """Whether the client asks for image/png (a media range of the Accept header, parameters ignored)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == PNG for part in accept.split(","))


@router.post("/{name}/predict", response_model=VisionPredictResponse, responses=PREDICT_RESPONSES)
async def predict_images(
    name: str,
    request: Request,
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
    threshold: Threshold = None,
) -> VisionPredictResponse | Response:
    """Predict each uploaded image as the model's task does (class, labels, values, points or a mask);
    predictions come back in upload order. A segmentation model answers one image with `Accept: image/png`
    by its mask PNG."""
    return await _predict(
        name,
        files,
        top_k,
        threshold,
        registry=registry,
        settings=settings,
        batchers=batchers,
        png=wants_png(request),
    )


async def predict_images_hot(request: Request, body: bytes) -> Response | None:
    """`predict_images` for a plain request (image files only; `top_k` and `threshold` absent or in range),
    or None."""
    query = hot.plain_query(request, {"top_k": (MIN_TOP_K, MAX_TOP_K)}, fractions=frozenset({"threshold"}))
    if query is None or wants_png(request):  # a mask PNG is the declared route's answer
        return None
    settings = await get_app_settings(request)
    parts = await hot.file_parts(request, body, field="files", max_files=settings.max_files)
    if parts is None:
        return None
    files, form = parts
    registry, batchers = await get_registry(request), await get_batchers(request)
    try:
        name = request.path_params["name"]
        top_k = query.get("top_k")
        answer = await _predict(
            name,
            files,
            None if top_k is None else int(top_k),
            query.get("threshold"),
            registry=registry,
            settings=settings,
            batchers=batchers,
        )
    finally:
        await form.close()
    assert isinstance(answer, VisionPredictResponse)  # JSON: `png` was not asked for
    return hot.json_response(answer)


# Served by `hot.HotRoute` first when the request is plain (api/hot.py).
HOT_ROUTES: dict[str, hot.Hot] = {
    f"{router.prefix}/{{name}}/predict": hot.Hot(
        predict_images_hot,
        query=frozenset({"top_k", "threshold"}),
        body=frozenset({"files"}),
        dependencies=frozenset({"get_registry", "get_app_settings", "get_batchers"}),
    )
}


async def _predict(
    name: str,
    files: Sequence[StarletteUploadFile],
    top_k: int | None,
    threshold: float | None,
    *,
    registry: ModelRegistry,
    settings: Settings,
    batchers: ModelPool,
    png: bool = False,
) -> VisionPredictResponse | Response:
    entry, predictor = served(registry, name, VisionPredictor, threshold=threshold)
    check_files(len(files), settings.max_files)
    image_of = VISION_IMAGES.get(predictor.head.task) if png else None
    if image_of is not None and len(files) != 1:
        raise InvalidInput(
            MSG_MASK_PNG_ONE_FILE.format(count=len(files)),
            [{"loc": ["files"], "msg": "one file with Accept: image/png", "type": "one_file"}],
        )
    uploads = await read_images(files)
    prepared = predictor.prepare_inline(uploads)
    if prepared is None:
        prepared = await run_in_threadpool(predictor.prepare, uploads)
    outputs = await batchers.run(entry, predictor, prepared)
    predictions = predictor.finish(prepared, outputs, threshold=threshold)
    if image_of is not None:
        content = await run_in_threadpool(image_of, predictions[0])
        return Response(content, media_type=PNG)
    return VisionPredictResponse(
        model=name,
        version=entry.version,
        predictions=vision_items(
            predictions, [u.filename for u in uploads], top_k=top_k or settings.default_top_k
        ),
    )


async def _masked_uploads(
    files: list[UploadFile] | None,
    masks: list[UploadFile] | None,
    *,
    labelled: bool,
    settings: Settings,
    name: str,
    task: Task,
) -> tuple[list[UploadedImage], list[Any]]:
    """Images and their masks (a segmentation model's labels): one `masks` part per `files` part."""
    if task not in MASK_TASKS:
        expected = LABEL_TARGETS[task][1]
        raise InvalidInput(MSG_EVAL_MASKS_TASK.format(name=name, task=task.value, expected=expected))
    if labelled or not files or not masks:
        raise InvalidInput(MSG_EVAL_NEEDS_MASKS.format(name=name))
    check_files(len(files), settings.max_files)
    if len(masks) != len(files):
        raise InvalidInput(MSG_EVAL_MASK_COUNT.format(files=len(files), masks=len(masks)))
    images, mask_files = await read_images(files), await read_images(masks)
    return images, [LabelledMask(image, mask) for image, mask in zip(images, mask_files, strict=True)]


async def _labelled_uploads(
    files: list[UploadFile] | None,
    labels: list[str] | None,
    archive: UploadFile | None,
    masks: list[UploadFile] | None = None,
    *,
    settings: Settings,
    name: str,
    task: Task,
) -> tuple[list[UploadedImage], list[Any]]:
    """Images and their labels: from `files` with one `labels` field each, or (a classifier's) from one
    class-folder zip, or (a segmentation model's) `files` with one `masks` image each."""
    if masks or task in MASK_TASKS:
        labelled = bool(labels) or archive is not None
        return await _masked_uploads(files, masks, labelled=labelled, settings=settings, name=name, task=task)
    if archive is not None and files:
        raise InvalidInput(MSG_EVAL_BOTH)
    if archive is not None and task is not Task.CLASSIFICATION:
        expected = LABEL_TARGETS[task][1]
        raise InvalidInput(MSG_EVAL_ARCHIVE_TASK.format(name=name, task=task.value, expected=expected))
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


@router.post("/{name}/evaluate", response_model=AnyEvaluation, responses=ERRORS)
async def evaluate_vision(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    files: Annotated[
        list[UploadFile] | None, File(description="images, with one `labels` field each")
    ] = None,
    labels: Annotated[
        list[str] | None,
        Form(
            description="per file, in the same order: its class (classification), classes joined by ';' "
            "(multi_label), its values as a number or JSON list (regression), or JSON [[x, y], ...] "
            "in its pixels (points)"
        ),
    ] = None,
    archive: Annotated[
        UploadFile | None, File(description="classifiers: a zip with one folder per class")
    ] = None,
    masks: Annotated[
        list[UploadFile] | None,
        File(
            description="segmentation: per file, in the same order, its mask (PNG, one 8-bit class index "
            "per pixel, the image's size)"
        ),
    ] = None,
    threshold: Threshold = None,
) -> AnyEvaluation:
    """Scores of the model's task on labelled images: classification accuracy, P/R/F1 and the confusion
    matrix; multi_label `accuracy_multi` and P/R/F1; regression RMSE, MAE, R²; points mean pixel error;
    segmentation pixel accuracy, IoU and Dice per class."""
    entry, predictor = served(registry, name, VisionPredictor, threshold=threshold)
    head = predictor.head
    uploads, raw_labels = await _labelled_uploads(
        files, labels, archive, masks, settings=settings, name=name, task=head.task
    )
    # Masks are decoded here: off the event loop.
    actual = await run_in_threadpool(LABEL_TARGETS[head.task][0], raw_labels, head)
    parts = []
    for start in range(0, len(uploads), EVAL_CHUNK):
        prepared = await run_in_threadpool(predictor.prepare, uploads[start : start + EVAL_CHUNK])
        outputs = await batchers.run(entry, predictor, prepared)
        parts.append(predictor.scored_outputs(prepared, outputs))
    return score(head, actual, np.concatenate(parts), threshold=threshold)


@router.post("/{name}/explain", response_model=VisionExplainResponse, responses=PREDICT_RESPONSES)
async def explain_images(
    name: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    explainers: ExplainersDep,
    files: Annotated[list[UploadFile], File(description="One or more images to explain.")],
    target: TargetQuery = None,
    method: MethodQuery = None,
) -> VisionExplainResponse | Response:
    """Why each image got its answer: a heatmap of importance at the uploaded image's size (Grad-CAM at
    the learner's deepest spatial layer, or integrated gradients on the pixels), as grey and as a colour
    overlay; with `Accept: image/png` and one file, the overlay PNG itself. Runs beside predictions, at
    most MAX_EXPLAIN_ITEMS images."""
    asked = explaining(
        registry,
        name,
        VisionPredictor,
        count=len(files),
        limit=min(settings.max_explain_items, settings.max_files),
        target=target,
        method=method,
    )
    png = wants_png(request)
    if png and len(files) != 1:
        raise InvalidInput(
            MSG_EXPLAIN_PNG_ONE_FILE.format(count=len(files)),
            [{"loc": ["files"], "msg": "one file with Accept: image/png", "type": "one_file"}],
        )
    predictor: VisionPredictor = asked.predictor
    uploads = await read_images(files)
    _, explained, predictions = await explain(
        asked, partial(predictor.prepare, uploads), explainers=explainers
    )
    if png:
        return Response(explained.items[0].overlay_png, media_type=PNG)
    return VisionExplainResponse(
        model=name,
        version=asked.entry.version,
        explanations=[
            ImageExplanationItem(
                **answer(prediction),
                filename=upload.filename,
                target=item.target,
                method=item.method,
                layer=item.layer,
                heatmap_png=b64(item.heatmap_png),
                overlay_png=b64(item.overlay_png),
            )
            for item, prediction, upload in zip(explained.items, predictions, uploads, strict=True)
        ],
    )
