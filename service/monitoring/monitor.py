"""`GET /api/v1/models/{name}/monitor`: a window of the payload log against the model's reference (drift),
joined with its feedback (live scores), computed off the event loop and kept `MONITOR_CACHE_S` seconds;
every worker reads the whole dataset, so any of them answers for all. A background loop keeps the default
window of every model fresh and its Prometheus gauges (`fastai_serve_drift`, `fastai_serve_live_metric`).

Live scores: the logged outputs (the CSV door's columns: `p_<class>`, `prediction…`) joined by id with the
feedback's truths, through the evaluate door's scorer (`reports/scores.py`), `LIVE[task]` rebuilding its
`actual` and `outputs` arrays.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.inference.tasks import Task
from service.monitoring.drift import REFERENCE_FILE, Reference, drift, predicted_summary
from service.monitoring.feedback import read_feedback
from service.monitoring.payload import PayloadLog, log_dataset
from service.reports.scores import score
from service.telemetry import Metrics

logger = logging.getLogger(__name__)

REFERENCES = "references"
DEFAULT_WINDOW = dt.timedelta(hours=1)


def _classes(head: Any, joined: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    position = {c: i for i, c in enumerate(head.classes)}
    actual = np.asarray([position[label] for label in joined["label"]], dtype=np.int64)
    return actual, joined[[f"p_{c}" for c in head.classes]].to_numpy(np.float32)


def _labels(head: Any, joined: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    sets = joined["labels"].fillna("").str.split(";")
    actual = np.asarray([[c in found for c in head.classes] for found in sets], dtype=bool)
    return actual, joined[[f"p_{c}" for c in head.classes]].to_numpy(np.float32)


def _values(head: Any, joined: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    predicted = ["prediction"] if len(head.targets) == 1 else [f"prediction_{t}" for t in head.targets]
    actual = joined[[f"value_{t}" for t in head.targets]].to_numpy(np.float64)
    return actual, joined[predicted].to_numpy(np.float64)


def _ratings(head: Any, joined: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    actual = joined[["rating"]].to_numpy(np.float64)
    return actual, joined[["prediction"]].to_numpy(np.float64)


# Per task: the joined log and feedback as the scorer's (actual, outputs); points are logged in the model's
# scale and their truth in pixels, and masks take no feedback: no live scores for those two.
LIVE: dict[Task, Callable[[Any, pd.DataFrame], tuple[np.ndarray, np.ndarray] | None]] = {
    Task.CLASSIFICATION: _classes,
    Task.MULTI_LABEL: _labels,
    Task.REGRESSION: _values,
    Task.RATING: _ratings,
}


def window_of(folder: Path, model: str, since: dt.datetime) -> pa.Table:
    """The model's logged predictions since `since` (the date partitions before it are never read)."""
    dataset = log_dataset(folder, model=model)
    if dataset is None:
        return pa.table({})
    day = since.date().isoformat()
    expression = (pc.field("date").cast(pa.string()) >= day) & (
        pc.field("ts") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    )
    return dataset.to_table(filter=expression)


@dataclass(frozen=True)
class Snapshot:
    body: dict[str, Any]
    at: float


class Monitor:
    """Snapshots of each model's recent predictions, drift and live scores (cached), and the gauges."""

    def __init__(self, log: PayloadLog, *, cache_s: float, metrics: Metrics | None = None) -> None:
        self.log, self.cache_s, self._metrics = log, cache_s, metrics
        self._cache: dict[tuple[str, str, str], Snapshot] = {}
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self.log.options.folder

    def reference_path(self, name: str) -> Path:
        return self.folder / REFERENCES / f"{name}.json"

    def reference(self, name: str, model_folder: Path | None) -> Reference | None:
        """An admin upload (beside the log) over the training reference (in the model's folder)."""
        uploaded = Reference.load(self.reference_path(name))
        if uploaded is not None or model_folder is None:
            return uploaded
        return Reference.load(model_folder / REFERENCE_FILE)

    def snapshot(
        self, name: str, *, version: str | None, predictor: Any, model_folder: Path | None, since: dt.datetime
    ) -> dict[str, Any]:
        key = (name, version or "", since.replace(second=0, microsecond=0).isoformat())
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached.at < self.cache_s:
            return cached.body
        body = self._compute(name, predictor=predictor, model_folder=model_folder, since=since)
        with self._lock:
            self._cache[key] = Snapshot(body, time.monotonic())
            for stale in [k for k, s in self._cache.items() if time.monotonic() - s.at > 10 * self.cache_s]:
                del self._cache[stale]
        return body

    def _compute(
        self, name: str, *, predictor: Any, model_folder: Path | None, since: dt.datetime
    ) -> dict[str, Any]:
        self.log.flush()  # this process's newest predictions count too
        table = window_of(self.folder, name, since)
        feedback = read_feedback(self.folder, name)
        reference = self.reference(name, model_folder)
        n = table.num_rows
        live = None
        joined = pd.DataFrame()
        if n and len(feedback):
            logged = table.to_pandas()
            joined = logged.merge(feedback.drop(columns=["ts"], errors="ignore"), on="id", how="inner")
        rebuild = LIVE.get(predictor.head.task)
        if len(joined) and rebuild is not None:
            arrays = rebuild(predictor.head, joined)
            if arrays is not None:
                live = score(predictor.head, *arrays).model_dump()
        drifted = drift(predictor, reference, table) if reference is not None and n else {}
        body = {
            "model": name,
            "since": since.isoformat(),
            "n_predictions": n,
            "n_feedback": int(len(joined)),
            "live": live,
            "predictions": predicted_summary(predictor, table) if n else {},
            "reference": None if reference is None else {"source": reference.source, "n": reference.n},
            "drift": drifted,
        }
        self._gauges(name, body)
        return body

    def _gauges(self, name: str, body: dict[str, Any]) -> None:
        if self._metrics is None:
            return
        for feature, found in body["drift"].items():
            self._metrics.drift.labels(name, feature).set(found["value"])
        for metric, value in _numbers(body["live"] or {}):
            self._metrics.live_metric.labels(name, metric).set(value)


def _numbers(evaluation: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """An evaluation's headline numbers as gauge labels (accuracy, rmse, f1_macro, …; not matrices)."""
    out = []
    for key, value in evaluation.items():
        if key in {"confusion_matrix", "most_confused"}:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "n":
            out.append((f"{prefix}{key}", float(value)))
        elif isinstance(value, dict) and key in {"f1", "precision", "recall", "iou", "dice"}:
            out += [(f"{key}_{k}", float(v)) for k, v in value.items() if k in {"macro", "micro", "mean"}]
        elif isinstance(value, dict) and key == "targets":
            for target, scores in value.items():
                out += _numbers(scores, prefix=f"{target}_")
    return out


async def refresh_forever(monitor: Monitor, registry: Any, *, every_s: float) -> None:
    """Keep every ready model's default window computed (and so its gauges current)."""
    while True:
        await asyncio.sleep(every_s)
        since = dt.datetime.now(dt.UTC) - DEFAULT_WINDOW
        for entry in registry.entries():
            if entry.predictor is None:
                continue
            try:
                await asyncio.to_thread(
                    monitor.snapshot,
                    entry.name,
                    version=entry.version,
                    predictor=entry.predictor,
                    model_folder=getattr(entry, "folder", None),
                    since=since,
                )
            except Exception:  # one model's broken log must not stop the others' monitoring
                logger.exception("monitoring %s failed", entry.name)
