"""Ground truth that arrives after the answer: feedback per prediction id, validated against the model's
task and stored beside the payload log, and the export that joins it with the logged inputs into a CSV
`fastai-serve train` takes.

`LOG_DIR/feedback/model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<token>-<seq>.parquet`: `id`, `ts`, and the
task's truth columns (`FEEDBACK_TARGETS`): classification `label`, multi_label `labels` (text, `;`-joined),
regression `value_<target>` per target, points `points` (JSON text), rating `rating`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from service.errors import (
    MSG_FEEDBACK_INVALID,
    MSG_FEEDBACK_TASK,
    InvalidInput,
)
from service.inference.tasks import Task

FEEDBACK = "feedback"


def _label(head: Any, truth: dict[str, Any]) -> dict[str, Any]:
    label = truth.get("label")
    if not isinstance(label, str) or label not in head.classes:
        raise ValueError(f"`label` must be one of {head.classes}")
    return {"label": label}


def _labels(head: Any, truth: dict[str, Any]) -> dict[str, Any]:
    labels = truth.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) and x in head.classes for x in labels):
        raise ValueError(f"`labels` must be a list of classes among {head.classes}")
    return {"labels": ";".join(labels)}


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _values(head: Any, truth: dict[str, Any]) -> dict[str, Any]:
    values = truth.get("values")
    if not isinstance(values, dict) or set(values) != set(head.targets):
        raise ValueError(f"`values` must give a number for each of {head.targets}")
    numbers = {t: _number(values[t]) for t in head.targets}
    if any(v is None for v in numbers.values()):
        raise ValueError("`values` must be finite numbers")
    return {f"value_{t}": v for t, v in numbers.items()}


def _points(head: Any, truth: dict[str, Any]) -> dict[str, Any]:
    points = truth.get("points")
    good = (
        isinstance(points, list)
        and len(points) == head.n_points
        and all(
            isinstance(p, list) and len(p) == 2 and all(_number(c) is not None for c in p) for p in points
        )
    )
    if not good:
        raise ValueError(f"`points` must be {head.n_points} [x, y] pairs in the image's pixels")
    return {"points": json.dumps(points)}


def _rating(head: Any, truth: dict[str, Any]) -> dict[str, Any]:
    rating = _number(truth.get("rating"))
    if rating is None:
        raise ValueError("`rating` must be a finite number")
    return {"rating": rating}


# Per task: what a feedback entry carries (checked against the model's classes or targets) → its columns.
FEEDBACK_TARGETS: dict[Task, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    Task.CLASSIFICATION: _label,
    Task.MULTI_LABEL: _labels,
    Task.REGRESSION: _values,
    Task.POINTS: _points,
    Task.RATING: _rating,
}


def validated(name: str, head: Any, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry's id and truth columns; 422 naming every entry that does not fit the model's task."""
    codec = FEEDBACK_TARGETS.get(head.task)
    if codec is None:
        supported = ", ".join(t.value for t in FEEDBACK_TARGETS)
        raise InvalidInput(MSG_FEEDBACK_TASK.format(name=name, task=head.task.value, supported=supported))
    rows, errors = [], []
    for i, entry in enumerate(entries):
        try:
            rows.append({"id": str(entry["id"]), **codec(head, entry)})
        except ValueError as exc:
            errors.append({"loc": ["feedback", i], "msg": str(exc), "type": "feedback"})
    if errors:
        raise InvalidInput(MSG_FEEDBACK_INVALID.format(count=len(errors), name=name), errors)
    return rows


class FeedbackStore:
    """Writes accepted feedback as one Parquet file per call (feedback comes in small, rare batches)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._process = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = 0
        self._lock = threading.Lock()

    def write(self, model: str, rows: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        table = pa.Table.from_pylist([{**row, "ts": now} for row in rows])
        folder = self.folder / FEEDBACK / f"model={model}" / f"date={now.date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._seq += 1
            name = f"{self._process}-{self._seq:06d}.parquet"
        hidden = folder / f".{name}.tmp"
        pq.write_table(table, hidden)
        os.replace(hidden, folder / name)


def read_feedback(folder: Path, model: str) -> pd.DataFrame:
    """A model's feedback, the latest entry per id winning (a correction replaces an earlier truth)."""
    import pyarrow.dataset as ds

    root = folder / FEEDBACK / f"model={model}"
    if not root.is_dir():
        return pd.DataFrame(columns=["id"])
    frame = ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pandas()
    return frame.sort_values("ts").drop_duplicates("id", keep="last").reset_index(drop=True)
