"""The model registry: discovers `model_store/<name>/`, loads learners off the event loop, and answers
"which ready predictor serves this name?" for every front door (it knows nothing about HTTP)."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import torch

from service.device import device_label, resolve_device
from service.errors import (
    MSG_BAD_MANIFEST,
    MSG_MODEL_FAILED,
    MSG_MODEL_LOADING,
    MSG_MODEL_NOT_FOUND,
    MSG_NO_LEARNER_FILE,
    MSG_RELOAD_FAILED,
    MSG_SELF_CHECK,
    MSG_SHA_MISMATCH,
    DeviceUnavailable,
    LoadError,
    ModelNotFound,
    ModelNotReady,
    ReloadFailed,
    WrongModelKind,
)
from service.inference.kinds import build_predictor, recognise
from service.inference.predictor import AnyPredictor, ModelKind
from service.inference.runtime import Precision, RuntimeName, RuntimeOptions, select_runtime
from service.inference.tasks import Task
from service.loading import (
    ensure_inside,
    find_learner_file,
    load_exported_learner,
    prepare_for_serving,
    sha256_of,
)
from service.training.progress import read_progress

logger = logging.getLogger(__name__)

MANIFEST_FILE = "model.json"
P = TypeVar("P", bound=AnyPredictor)


class ModelStatus(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModelEntry:
    """One folder of the store and what became of it."""

    name: str
    folder: Path
    status: ModelStatus = ModelStatus.LOADING
    error: str | None = None
    kind: ModelKind | None = None
    task: Task | None = None
    version: str | None = None
    description: str | None = None
    created_at: str | None = None
    sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    compat: dict[str, Any] | None = None
    runtime: RuntimeName | None = None  # what runs the forward
    runtime_note: str | None = None  # why that runtime, or why not ONNX Runtime
    precision: Precision | None = None  # fp32, or fp16 (FASTAI_SERVE_PRECISION, CUDA)
    predictor: AnyPredictor | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.head.classes) if self.predictor is not None else []

    @property
    def threshold(self) -> float | None:
        """A multi-label model's own threshold."""
        return getattr(self.predictor.head, "threshold", None) if self.predictor is not None else None

    @property
    def targets(self) -> list[str]:
        return list(self.predictor.head.targets) if self.predictor is not None else []

    def fail(self, reason: str) -> None:
        self.status, self.error, self.predictor = ModelStatus.FAILED, reason, None


class ModelRegistry:
    """Owns every model; safe to read from the event loop while a worker thread loads."""

    def __init__(
        self,
        *,
        store: Path,
        device: str,
        max_image_pixels: int | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime or RuntimeOptions()
        self.max_image_pixels = max_image_pixels
        self.device_setting = device
        self._entries: dict[str, ModelEntry] = {}
        # `store_signature()` as it was just before the last discover or rescan listed the store: what the
        # loaded models are a picture of, so a change made any time after is seen (`startup.watch_store`).
        self.scanned_signature: tuple[tuple[str, str, int, int], ...] = ()
        self._loaded = threading.Event()
        self._reload_lock = threading.Lock()  # one reload at a time; requests never wait on it

    # discovery and loading -------------------------------------------------------------------------
    def discover(self, only: str | None = None) -> list[ModelEntry]:
        """List the store's model folders (or just `only`, for a process that serves one model); every one
        starts as `loading`."""
        self.scanned_signature = self.store_signature()
        folders = [p for p in self._folders() if only is None or p.name == only]
        self._entries = {p.name: ModelEntry(name=p.name, folder=p) for p in folders}
        self._loaded.clear()
        return list(self._entries.values())

    def load_all(self) -> None:
        """Load every discovered model in turn; one failure never stops the others."""
        try:
            device = resolve_device(self.device_setting)
        except DeviceUnavailable as exc:
            for entry in self._entries.values():
                entry.fail(str(exc))
            self._loaded.set()
            return
        for entry in list(self._entries.values()):
            self.load_entry(entry, device)
        self._loaded.set()

    def load_entry(self, entry: ModelEntry, device: torch.device) -> None:
        try:
            self._load(entry, device)
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this model only
            reason = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            logger.warning("model %s failed to load: %s", entry.name, reason)
            entry.fail(reason)

    def _load(self, entry: ModelEntry, device: torch.device) -> None:
        manifest = self.read_manifest(entry)
        learner_file = find_learner_file(entry.folder)
        if learner_file is None:
            raise LoadError(MSG_NO_LEARNER_FILE.format(folder=entry.folder))
        learner_file = ensure_inside(learner_file, self.store)
        entry.sha256 = sha256_of(learner_file)
        expected = manifest.get("sha256")
        if expected and expected.lower() != entry.sha256:
            raise LoadError(
                MSG_SHA_MISMATCH.format(file=learner_file.name, actual=entry.sha256, expected=expected)
            )
        entry.version = str(manifest.get("version") or entry.sha256[:12])
        entry.description = manifest.get("description")
        entry.metrics = dict(manifest.get("metrics") or {})
        mtime = datetime.fromtimestamp(learner_file.stat().st_mtime, tz=UTC)
        entry.created_at = manifest.get("created_at") or mtime.isoformat()
        loaded = load_exported_learner(learner_file)
        entry.compat = loaded.compat
        learn = prepare_for_serving(loaded.learn, device)
        learner_type = recognise(learn)
        kind = entry.kind = learner_type.kind
        entry.task = learner_type.task
        predictor = build_predictor(
            learner_type, learn, max_image_pixels=self.max_image_pixels, folder=entry.folder
        )
        try:
            predictor.self_check()
        except Exception as exc:  # noqa: BLE001 - a learner that cannot predict is not servable
            made_by = loaded.made_by or "the fastai version that made it"
            raise LoadError(
                MSG_SELF_CHECK.format(reason=f"{type(exc).__name__}: {exc}", made_by=made_by)
            ) from None
        # Only the forward moves: checked against torch on the self-check input before it serves.
        choice = select_runtime(predictor, self.runtime, sha256=entry.sha256)
        entry.runtime, entry.runtime_note, entry.precision = choice.name, choice.note, choice.precision
        entry.predictor = predictor
        entry.device = device_label(device)
        entry.status, entry.error = ModelStatus.READY, None
        logger.info(
            "model %s ready (%s %s on %s, %s: %s)",
            entry.name,
            kind,
            entry.task,
            entry.device,
            choice.name,
            choice.note,
        )

    @staticmethod
    def read_manifest(entry: ModelEntry) -> dict[str, Any]:
        """The folder's model.json (empty when absent); LoadError when it is not a JSON object."""
        path = entry.folder / MANIFEST_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LoadError(MSG_BAD_MANIFEST.format(reason=exc)) from None
        if not isinstance(data, dict):
            raise LoadError(MSG_BAD_MANIFEST.format(reason="top level is not an object"))
        kind = data.get("kind")
        entry.kind = ModelKind(kind) if isinstance(kind, str) and kind in set(ModelKind) else None
        return data

    # reloading ------------------------------------------------------------------------------------
    def reload(self, name: str) -> ModelEntry:
        """Load `name` again beside the serving version, warm it, then swap it in with one assignment.

        Requests that already hold the old entry finish on it; new ones get the new one. When the new
        file cannot be served, the old version keeps serving and ReloadFailed says why.
        """
        with self._reload_lock:
            old = self.get(name)
            fresh = self._load_fresh(name, old.folder)
            if fresh.status is not ModelStatus.READY:
                if old.status is ModelStatus.READY:
                    raise ReloadFailed(MSG_RELOAD_FAILED.format(name=name, reason=fresh.error))
                # Nothing good was serving: the failure itself is the new state (readiness shows it).
            self._entries = {**self._entries, name: fresh}
            return fresh

    def rescan(self) -> list[ModelEntry]:
        """Pick up the store's changes: load new folders, reload changed files (sha256) or failed models,
        unload removed ones. Every swap is atomic as in `reload`."""
        with self._reload_lock:
            self.scanned_signature = self.store_signature()
            folders = {p.name: p for p in self._folders()}
            entries = dict(self._entries)
            for name in list(entries):
                if name not in folders:
                    logger.info("model %s removed from the store: unloaded", name)
                    del entries[name]
            for name, folder in folders.items():
                old = entries.get(name)
                if old is not None and old.status is ModelStatus.READY and not self._changed(old):
                    continue
                fresh = self._load_fresh(name, folder)
                if (
                    old is not None
                    and old.status is ModelStatus.READY
                    and fresh.status is not ModelStatus.READY
                ):
                    old.error = MSG_RELOAD_FAILED.format(name=name, reason=fresh.error)
                    continue  # keep serving the version that works
                entries[name] = fresh
            self._entries = entries
            return list(entries.values())

    def store_signature(self) -> tuple[tuple[str, str, int, int], ...]:
        """What a rescan would act on, cheaply: each model folder's learner file, its size and mtime (a
        new folder moved in, one removed, a file replaced), without hashing anything."""
        signature = []
        for folder in self._folders():
            learner = find_learner_file(folder)
            stat = learner.stat() if learner is not None else None
            signature.append(
                (
                    folder.name,
                    learner.name if learner else "",
                    stat.st_mtime_ns if stat else 0,
                    stat.st_size if stat else 0,
                )
            )
        return tuple(signature)

    def training(self) -> dict[str, dict[str, Any]]:
        """Models being trained into the store and not in it yet (`<store>/.training.json`, written by
        `fastai-serve train demo`): name -> status (`training` or `failed`), kind, task, epochs, error."""
        return {name: e for name, e in read_progress(self.store).items() if name not in self._entries}

    def _load_fresh(self, name: str, folder: Path) -> ModelEntry:
        fresh = ModelEntry(name=name, folder=folder)
        try:
            device = resolve_device(self.device_setting)
        except DeviceUnavailable as exc:
            fresh.fail(str(exc))
            return fresh
        self.load_entry(fresh, device)
        return fresh

    @staticmethod
    def _changed(entry: ModelEntry) -> bool:
        learner_file = find_learner_file(entry.folder)
        return learner_file is None or sha256_of(learner_file) != entry.sha256

    def _folders(self) -> list[Path]:
        if not self.store.is_dir():
            return []
        return sorted(p for p in self.store.iterdir() if p.is_dir() and not p.name.startswith("."))

    # lookups ------------------------------------------------------------------------------------
    @property
    def loading_done(self) -> bool:
        return self._loaded.is_set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._loaded.wait(timeout)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(MSG_MODEL_NOT_FOUND.format(name=name))
        return entry

    def ready(self, name: str) -> tuple[ModelEntry, AnyPredictor]:
        """The ready predictor of `name`, whatever its kind (a front door that serves every kind then
        looks the kind up in its own table): 404 when there is none, 503 while it loads or once it failed."""
        entry = self.get(name)
        return entry, self._ready(entry)

    @staticmethod
    def _ready(entry: ModelEntry) -> AnyPredictor:
        """The entry's predictor; 503 while it loads or once it failed."""
        if entry.status is ModelStatus.LOADING:
            raise ModelNotReady(MSG_MODEL_LOADING.format(name=entry.name))
        if entry.status is ModelStatus.FAILED or entry.predictor is None:
            raise ModelNotReady(MSG_MODEL_FAILED.format(name=entry.name, reason=entry.error))
        return entry.predictor

    def predictor(self, name: str, predictor_type: type[P]) -> tuple[ModelEntry, P]:
        """The ready predictor of `name`, which must be a `predictor_type` (so of that type's kind).

        404 when there is no such model, or when it is of another kind (`WrongModelKind` says which);
        503 while it loads or once it failed.
        """
        entry = self.get(name)
        wanted = predictor_type.kind
        if entry.kind is not None and entry.kind != wanted:
            raise WrongModelKind(name=name, kind=entry.kind, wanted=wanted)
        predictor = self._ready(entry)
        if not isinstance(predictor, predictor_type):
            raise WrongModelKind(name=name, kind=predictor.kind, wanted=wanted)
        return entry, predictor
