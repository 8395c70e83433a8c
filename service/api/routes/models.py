"""Listing models, their detail and their input schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastai
import torch
from fastapi import APIRouter

from service.api.deps import BatchersDep, RegistryDep
from service.errors import MSG_NO_SCHEMA_FOR_VISION, ModelNotFound
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.registry import ModelEntry
from service.schemas.models import (
    CompatInfo,
    FrameworkVersions,
    ModelDetail,
    ModelList,
    ModelSummary,
    ReplicaStatus,
    TrainingProgress,
)
from service.schemas.problem import Problem

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def summary_of(entry: ModelEntry) -> ModelSummary:
    return ModelSummary(
        name=entry.name,
        kind=entry.kind,
        task=entry.task,
        version=entry.version,
        status=entry.status.value,
        device=entry.device,
        classes=entry.classes,
        targets=entry.targets,
        threshold=entry.threshold,
        error=entry.error,
    )


def training_summary(name: str, board: dict[str, Any]) -> ModelSummary:
    """A model still training into the store, from the trainer's progress board."""
    kind, task = board.get("kind"), board.get("task")
    return ModelSummary(
        name=name,
        kind=ModelKind(kind) if kind in set(ModelKind) else None,
        task=Task(task) if task in set(Task) else None,
        version=None,
        status="failed" if board.get("status") == "failed" else "training",
        device=None,
        classes=[],
        error=board.get("error"),
        progress=TrainingProgress.model_validate(board),
    )


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every model in the store with its kind, status, version and device, then those still training."""
    training = [training_summary(name, board) for name, board in registry.training().items()]
    return ModelList(models=[summary_of(entry) for entry in registry.entries()] + training)


@router.get("/{name}", response_model=ModelDetail, responses=Problem.responses(404))
async def model_detail(name: str, registry: RegistryDep, batchers: BatchersDep) -> ModelDetail:
    """One model: summary plus description, versions, sha256, metrics and input schema (and, on Ray, its
    replicas and what they run it on)."""
    entry = registry.get(name)
    predictor = entry.predictor
    detail = ModelDetail(
        **summary_of(entry).model_dump(),
        description=entry.description,
        created_at=entry.created_at,
        framework=FrameworkVersions(fastai=fastai.__version__, torch=torch.__version__),
        sha256=entry.sha256,
        metrics=entry.metrics,
        input_schema=predictor.input_schema() if predictor is not None else None,
        compat=CompatInfo(**entry.compat) if entry.compat else None,
        runtime=entry.runtime if entry.predictor is not None else None,
        runtime_note=entry.runtime_note if entry.predictor is not None else None,
        precision=entry.precision if entry.predictor is not None else None,
    )
    elsewhere = await batchers.replicas(name)
    if elsewhere is not None:
        served = {
            "runtime": elsewhere.runtime,
            "runtime_note": elsewhere.runtime_note,
            "device": elsewhere.device,
            "precision": elsewhere.precision,
        }
        detail = detail.model_copy(
            update={
                **{k: v for k, v in served.items() if v is not None},
                "replicas": ReplicaStatus(
                    running=elsewhere.running, target=elsewhere.target, errors=list(elsewhere.errors)
                ),
            }
        )
    return detail


# Per kind: the JSON Schema of one input (a tabular row); a kind without one (images) answers 404.
INPUT_SCHEMAS: dict[ModelKind, Callable[[Any], dict[str, Any]] | None] = {
    ModelKind.TABULAR: lambda predictor: predictor.row_json_schema(),
    ModelKind.VISION: None,
    ModelKind.COLLAB: lambda predictor: predictor.pair_json_schema(),
    ModelKind.TEXT: lambda predictor: predictor.text_json_schema(),
}


@router.get("/{name}/schema", responses=Problem.responses(404, 503))
async def model_schema(name: str, registry: RegistryDep) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one input of a model (a tabular row, a text); 404 for image models."""
    kind = registry.get(name).kind  # known from model.json before the learner loads
    if kind is not None and INPUT_SCHEMAS.get(kind) is None:
        raise ModelNotFound(MSG_NO_SCHEMA_FOR_VISION.format(name=name))
    _, predictor = registry.ready(name)
    schema = INPUT_SCHEMAS.get(predictor.kind)
    if schema is None:
        raise ModelNotFound(MSG_NO_SCHEMA_FOR_VISION.format(name=name))
    return schema(predictor)
