"""Training reports, their plots, and evaluation of a served model on labelled uploads."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.limits import check_files, check_rows
from service.api.running import run_model
from service.errors import (
    MSG_EVAL_BOTH,
    MSG_EVAL_LABEL_COUNT,
    MSG_EVAL_NOTHING,
    MSG_NO_ARTIFACT,
    MSG_NO_REPORT,
    InvalidInput,
    NotFound,
)
from service.evaluation import evaluate_labels
from service.inference.csvio import read_csv_upload
from service.inference.evaluate import read_class_archive, resolve_labels, target_labels
from service.inference.images import UploadedImage
from service.registry import ModelEntry
from service.reports import ARTIFACTS, REPORT_DIR, read_report
from service.schemas.problem import Problem
from service.schemas.reports import Evaluation, ModelComparison, TrainingReport

router = APIRouter(tags=["reports"])
# Images are decoded and scored this many at a time, so a large archive never holds every decoded image.
EVAL_CHUNK = 256


def _report(entry: ModelEntry) -> dict[str, object]:
    report = read_report(entry.folder)
    if report is None:
        raise NotFound(MSG_NO_REPORT.format(name=entry.name))
    return report


@router.get("/api/v1/models/{name}/report", response_model=TrainingReport, responses=Problem.responses(404))
def get_report(name: str, registry: RegistryDep) -> TrainingReport:
    """The model's training report: history, callbacks' outcome, test metrics, links to its plots."""
    entry = registry.get(name)
    report = _report(entry)
    files = dict(report.get("artifacts") or {})  # type: ignore[call-overload]
    report["artifacts"] = {
        key: f"/api/v1/models/{name}/report/{key}.png"
        for key in ARTIFACTS
        if key in files and (entry.folder / REPORT_DIR / f"{key}.png").is_file()
    }
    return TrainingReport.model_validate(report)


@router.get(
    "/api/v1/models/{name}/report/{artifact}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **Problem.responses(404)},
)
def get_report_artifact(name: str, artifact: str, registry: RegistryDep) -> FileResponse:
    """One plot of the report: `loss_curve`, `confusion_matrix` or `top_losses`."""
    entry = registry.get(name)
    path = entry.folder / REPORT_DIR / f"{artifact}.png"
    # Only the known names: the path never comes from the client beyond choosing one of them.
    if artifact not in ARTIFACTS or not path.is_file() or path.is_symlink():
        raise NotFound(MSG_NO_ARTIFACT.format(name=name, artifact=artifact))
    return FileResponse(path, media_type="image/png")


@router.get("/api/v1/reports/compare", response_model=ModelComparison, responses=Problem.responses(404, 422))
def compare_models(
    registry: RegistryDep,
    models: Annotated[list[str], Query(min_length=2, description="two or more model names")],
) -> ModelComparison:
    """Test metrics of several models side by side (e.g. trained with and without augmentation)."""
    tests = []
    for name in models:
        test = _report(registry.get(name)).get("test")
        tests.append(Evaluation.model_validate(test) if test else None)
    return ModelComparison(models=models, test=tests)


@router.post(
    "/api/v1/tabular/{name}/evaluate",
    response_model=Evaluation,
    tags=["tabular"],
    responses=Problem.responses(400, 404, 413, 415, 422, 503),
)
async def evaluate_tabular(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    file: Annotated[UploadFile, File(description="CSV with the model's columns and its target column")],
) -> Evaluation:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix on a labelled CSV."""
    entry, predictor = registry.predictor(name, "tabular")
    filename = file.filename or "upload.csv"
    frame = await run_in_threadpool(read_csv_upload, await file.read(), filename=filename)
    check_rows(len(frame), settings.max_rows)
    classes = list(predictor.classes)
    actual = target_labels(frame, target=predictor.spec.target, classes=classes, filename=filename)
    prepared = await run_in_threadpool(partial(predictor.prepare_frame, frame, filename=filename))
    probs = await run_model(entry, predictor, batchers, prepared, prepared.n)
    return evaluate_labels(actual, [classes[i] for i in probs.argmax(axis=1).tolist()], classes)


async def _labelled_uploads(
    files: list[UploadFile] | None,
    labels: list[str] | None,
    archive: UploadFile | None,
    *,
    max_files: int,
    max_eval_files: int,
    max_archive_bytes: int,
) -> tuple[list[UploadedImage], list[str]]:
    if archive is not None and files:
        raise InvalidInput(MSG_EVAL_BOTH)
    if archive is not None:
        data = await archive.read()
        read = partial(
            read_class_archive,
            data,
            filename=archive.filename or "archive.zip",
            max_files=max_eval_files,
            max_bytes=max_archive_bytes,
        )
        return await run_in_threadpool(read)
    if not files:
        raise InvalidInput(MSG_EVAL_NOTHING)
    check_files(len(files), max_files)
    if len(labels or []) != len(files):
        raise InvalidInput(MSG_EVAL_LABEL_COUNT.format(files=len(files), labels=len(labels or [])))
    uploads = [
        UploadedImage(filename=f.filename or f"file{i}", data=await f.read()) for i, f in enumerate(files)
    ]
    return uploads, list(labels or [])


@router.post(
    "/api/v1/vision/{name}/evaluate",
    response_model=Evaluation,
    tags=["vision"],
    responses=Problem.responses(400, 404, 413, 415, 422, 503),
)
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
    entry, predictor = registry.predictor(name, "vision")
    uploads, raw_labels = await _labelled_uploads(
        files,
        labels,
        archive,
        max_files=settings.max_files,
        max_eval_files=settings.max_eval_files,
        max_archive_bytes=settings.max_archive_bytes,
    )
    classes = list(predictor.classes)
    actual = resolve_labels(raw_labels, classes, where="labels")
    parts = []
    for start in range(0, len(uploads), EVAL_CHUNK):
        images = await run_in_threadpool(predictor.prepare, uploads[start : start + EVAL_CHUNK])
        parts.append(await run_model(entry, predictor, batchers, images, len(images)))
    probs = np.concatenate(parts)
    return evaluate_labels(actual, [classes[i] for i in probs.argmax(axis=1).tolist()], classes)
