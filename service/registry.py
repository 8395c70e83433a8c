"""The model registry: discovers `model_store/<name>/`, loads learners off the event loop."""

from __future__ import annotations

import gc
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from service.device import DeviceUnavailable, device_label, resolve_device
from service.errors import (
    MSG_MODEL_FAILED,
    MSG_MODEL_LOADING,
    MSG_MODEL_NOT_FOUND,
    MSG_RELOAD_FAILED,
    MSG_WRONG_KIND,
    ModelNotFound,
    ModelNotReady,
    ReloadFailed,
)
from service.loading import LoadError, ensure_inside, load_exported_learner, prepare_for_serving, sha256_of

logger = logging.getLogger(__name__)

LEARNER_FILES = ("model.pkl", "export.pkl")
MANIFEST_FILE = "model.json"
KIND_PATHS = {"tabular": "/api/v1/tabular/{name}/predict", "vision": "/api/v1/vision/{name}/predict"}
MSG_NO_LEARNER_FILE = "no model.pkl or export.pkl in {folder}"
MSG_SHA_MISMATCH = "sha256 of {file} is {actual}, the manifest says {expected}; refusing to unpickle it"
MSG_BAD_MANIFEST = "model.json is not valid JSON: {reason}"
MSG_SELF_CHECK = (
    "the learner loaded but cannot predict one input built from its own schema ({reason}); it was "
    "probably exported by {made_by}: check it predicts there and re-export it with fastai 2.8"
)
MSG_UNKNOWN_KIND = (
    "cannot tell what kind of learner this is ({dls}); tabular and vision classifiers are supported"
)


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
    kind: str | None = None
    version: str | None = None
    description: str | None = None
    created_at: str | None = None
    sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    compat: dict[str, Any] | None = None
    predictor: Any = None

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes) if self.predictor is not None else []

    def fail(self, reason: str) -> None:
        self.status, self.error, self.predictor = ModelStatus.FAILED, reason, None


def detect_kind(learn: Any) -> str:
    """Tabular learners carry procs and column names; vision ones resize images per item."""
    dls = learn.dls
    if hasattr(dls, "cont_names") and hasattr(dls, "cat_names"):
        return "tabular"
    after_item = getattr(dls, "after_item", None)
    names = {type(t).__name__ for t in getattr(after_item, "fs", [])}
    if names & {"Resize", "RandomResizedCrop", "ToTensor"}:
        return "vision"
    raise LoadError(MSG_UNKNOWN_KIND.format(dls=type(dls).__name__))


def build_predictor(kind: str, learn: Any, *, max_image_pixels: int | None = None) -> Any:
    if kind == "tabular":
        from service.inference.tabular import TabularPredictor

        return TabularPredictor(learn)
    from service.inference.vision import VisionPredictor

    return (
        VisionPredictor(learn)
        if max_image_pixels is None
        else VisionPredictor(learn, max_pixels=max_image_pixels)
    )


class ModelRegistry:
    """Owns every model; safe to read from the event loop while a worker thread loads."""

    def __init__(self, *, store: Path, device: str, max_image_pixels: int | None = None) -> None:
        self.store = store
        self.max_image_pixels = max_image_pixels
        self.device_setting = device
        self._entries: dict[str, ModelEntry] = {}
        self._loaded = threading.Event()
        self._reload_lock = threading.Lock()  # one reload at a time; requests never wait on it

    # discovery and loading -------------------------------------------------------------------------
    def discover(self) -> list[ModelEntry]:
        """List the store's model folders; every one starts as `loading`."""
        self._entries = {p.name: ModelEntry(name=p.name, folder=p) for p in self._folders()}
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
        # Learners and libraries are long-lived: keep them out of every later garbage collection, which
        # otherwise rescans millions of objects and stalls big requests for hundreds of milliseconds.
        gc.collect()
        gc.freeze()
        self._loaded.set()

    def load_entry(self, entry: ModelEntry, device: torch.device) -> None:
        try:
            self._load(entry, device)
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this model only
            reason = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            logger.warning("model %s failed to load: %s", entry.name, reason)
            entry.fail(reason)

    def _load(self, entry: ModelEntry, device: torch.device) -> None:
        manifest = self._read_manifest(entry)
        learner_file = next((entry.folder / f for f in LEARNER_FILES if (entry.folder / f).is_file()), None)
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
        kind = detect_kind(learn)
        entry.kind = kind
        predictor = build_predictor(kind, learn, max_image_pixels=self.max_image_pixels)
        try:
            predictor.self_check()
        except Exception as exc:  # noqa: BLE001 - a learner that cannot predict is not servable
            made_by = loaded.made_by or "the fastai version that made it"
            raise LoadError(
                MSG_SELF_CHECK.format(reason=f"{type(exc).__name__}: {exc}", made_by=made_by)
            ) from None
        entry.predictor = predictor
        entry.device = device_label(device)
        entry.status, entry.error = ModelStatus.READY, None
        logger.info("model %s ready (%s on %s)", entry.name, kind, entry.device)

    @staticmethod
    def _read_manifest(entry: ModelEntry) -> dict[str, Any]:
        path = entry.folder / MANIFEST_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LoadError(MSG_BAD_MANIFEST.format(reason=exc)) from None
        if not isinstance(data, dict):
            raise LoadError(MSG_BAD_MANIFEST.format(reason="top level is not an object"))
        entry.kind = data.get("kind")
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
        learner_file = next((entry.folder / f for f in LEARNER_FILES if (entry.folder / f).is_file()), None)
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

    def predictor(self, name: str, kind: str) -> tuple[ModelEntry, Any]:
        """The ready predictor of `name`, which must be of `kind`."""
        entry = self.get(name)
        if entry.kind is not None and entry.kind != kind:
            path = KIND_PATHS[entry.kind].format(name=name)
            raise ModelNotFound(MSG_WRONG_KIND.format(name=name, kind=entry.kind, path=path))
        if entry.status is ModelStatus.LOADING:
            raise ModelNotReady(MSG_MODEL_LOADING.format(name=name))
        if entry.status is ModelStatus.FAILED or entry.predictor is None:
            raise ModelNotReady(MSG_MODEL_FAILED.format(name=name, reason=entry.error))
        return entry, entry.predictor
