"""Response bodies of the model endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.inference.predictor import ModelKind
from service.inference.runtime import Precision
from service.inference.tasks import Task


class ModelSummary(BaseModel):
    name: str
    kind: ModelKind | None = Field(description="what goes in: the path segment of its routes")
    task: Task | None = Field(default=None, description="what comes out (null until the learner is read)")
    version: str | None
    status: Literal["ready", "loading", "failed", "training"] = Field(
        description="training: a demo model still being trained into the store (see `progress`)"
    )
    device: str | None
    classes: list[str] = Field(description="class names (classification, multi_label); else empty")
    targets: list[str] = Field(default_factory=list, description="target names (regression); else empty")
    threshold: float | None = Field(
        default=None, description="multi_label: the learner's own threshold (its loss's `thresh`); else null"
    )
    error: str | None = None
    progress: TrainingProgress | None = Field(
        default=None, description="while `training` (or once its training failed): how far it got"
    )


class TrainingProgress(BaseModel):
    """A model being trained into the store (`fastai-serve train demo`, e.g. in `make run`'s background)."""

    epoch: int | None = Field(default=None, description="epochs done in the current fit")
    epochs: int | None = Field(default=None, description="epochs of the current fit (null before it starts)")
    started_at: str | None = None


class FrameworkVersions(BaseModel):
    fastai: str
    torch: str


class CompatInfo(BaseModel):
    loaded_with: str
    notes: list[str]


class ModelDetail(ModelSummary):
    description: str | None = None
    created_at: str | None = None
    framework: FrameworkVersions
    sha256: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    input_schema: dict[str, Any] | None = None
    compat: CompatInfo | None = Field(
        default=None, description="set when the learner needed the compat loader"
    )
    runtime: Literal["onnx", "torch"] | None = Field(
        default=None, description="what runs the model's forward (FASTAI_SERVE_RUNTIME); null until ready"
    )
    runtime_note: str | None = Field(default=None, description="why that runtime, or why not ONNX Runtime")
    precision: Precision | None = Field(
        default=None, description="the forward's float precision (FASTAI_SERVE_PRECISION); null until ready"
    )
    replicas: ReplicaStatus | None = Field(default=None, description="on Ray only: the model's replicas")


class ReplicaStatus(BaseModel):
    """On Ray: the model's own deployment."""

    running: int = Field(description="replicas serving now")
    target: int = Field(description="replicas Ray Serve is keeping (or scaling to)")
    errors: list[str] = Field(default_factory=list, description="why a replica could not load the model")


class ModelList(BaseModel):
    models: list[ModelSummary]


class LiveResponse(BaseModel):
    status: Literal["ok"] = "ok"


class WorkersReady(BaseModel):
    """With several worker processes: how many are running with their models loaded."""

    ready: int
    running: int
    expected: int


class PayloadLogState(BaseModel):
    """The payload log of this process (LOG_DIR): what it wrote, holds and had to drop, and why."""

    folder: str
    written: int
    queued: int
    dropped: int
    last_error: str | None


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    models: dict[str, Literal["ready", "loading", "failed"]]
    workers: WorkersReady | None = None
    payload_log: PayloadLogState | None = None
