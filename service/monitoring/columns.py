"""The payload log's columns: a request's inputs per kind (`LOG_INPUTS`) and its outputs per task
(`LOG_OUTPUTS`), as raw columns: a numpy array (numbers) or a list (text, None for null), which the writer
concatenates over many requests before making one typed Arrow array of each (`arrow_column`).

`LOG_INPUTS[kind](predictor, prepared)` runs on the request path and only keeps references (the values a
request already holds); the thunk it returns builds the columns later, on the log's writer thread, as do
the output codecs. Keyed like every front door's codecs (`tests/unit/test_task_table.py` checks them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from service.inference.csvio import CSV_COLUMNS
from service.inference.predictor import ModelKind
from service.inference.tabular_spec import NA_CATEGORY
from service.inference.tasks import Task

Columns = dict[str, Any]  # name -> np.ndarray (numbers) | list (text or None)
# What the request path keeps: a thunk the writer thread calls for the columns (None: not logged).
InputsThunk = Callable[[], Columns] | None


def _strings(values: Any) -> list[str | None]:
    return [None if v is None else str(v) for v in values]


def arrow_column(parts: list[Any]) -> pa.Array:
    """Raw columns of several requests as one Arrow array: numbers (NaN: null) or text."""
    if all(isinstance(part, np.ndarray) for part in parts):
        return pa.array(np.concatenate(parts), from_pandas=True)
    return pa.array([v for part in parts for v in part], type=pa.string())


def take(values: Any, rows: np.ndarray) -> Any:
    """The sampled rows of a raw column."""
    return values[rows] if isinstance(values, np.ndarray) else [values[int(i)] for i in rows]


def _tabular(predictor: Any, prepared: Any) -> InputsThunk:
    """One column per schema column: categories as text (`#na#`-coded values null), numbers as float64."""
    spec, columns, codes = predictor.spec, dict(prepared.columns), dict(prepared.codes)

    def build() -> Columns:
        out: Columns = {}
        for cont in spec.continuous:
            out[cont.name] = np.asarray(columns[cont.name], dtype=np.float64)
        for cat in spec.categorical:
            if cat.name in columns:
                out[cat.name] = _strings(columns[cat.name])
            else:  # a CSV chunk resolved to codes only: back to the categories (#na#, code 0: null)
                names: list[Any] = [None] * (max(cat.codes.values(), default=0) + 1)
                for category, code in cat.codes.items():
                    names[code] = None if category == NA_CATEGORY else category
                out[cat.name] = _strings(
                    names[int(c)] if 0 <= int(c) < len(names) else None for c in codes[cat.name]
                )
        return out

    return build


def _images(predictor: Any, prepared: Any) -> InputsThunk:
    """The uploaded file's sha256 (of its decoded pixels when it came as pixels), width, height and mean
    brightness (0-1, of its grey version: what drift compares besides the size)."""
    images, sources = list(prepared.images), prepared.sources

    def build() -> Columns:
        digests = [
            hashlib.sha256(source if source is not None else image.tobytes()).hexdigest()
            for source, image in zip(sources or [None] * len(images), images, strict=True)
        ]
        sizes = [image.size for image in images]
        grey = [np.asarray(image.convert("L"), dtype=np.float32) for image in images]
        brightness = [float(pixels.mean() / 255) for pixels in grey]
        return {
            "sha256": digests,
            "width": np.asarray([w for w, _ in sizes], dtype=np.int32),
            "height": np.asarray([h for _, h in sizes], dtype=np.int32),
            "brightness": np.asarray(brightness, dtype=np.float32),
        }

    return build


def _texts(predictor: Any, prepared: Any) -> InputsThunk:
    texts = prepared.texts
    if texts is None:
        return None
    return lambda: {"text": _strings(texts)}


def _pairs(predictor: Any, prepared: Any) -> InputsThunk:
    """`user`, `item` as sent (as text: ids may be numbers or names); a ranking is not a prediction."""
    users, items = getattr(prepared, "users", None), getattr(prepared, "items", None)
    if users is None or items is None:
        return None
    return lambda: {"user": _strings(_values(users)), "item": _strings(_values(items))}


def _values(values: Any) -> list[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else list(values)


LOG_INPUTS: dict[ModelKind, Callable[[Any, Any], InputsThunk]] = {
    ModelKind.TABULAR: _tabular,
    ModelKind.VISION: _images,
    ModelKind.TEXT: _texts,
    ModelKind.COLLAB: _pairs,
}


def _csv(predictor: Any, prepared: Any, outputs: np.ndarray) -> Columns:
    """The CSV door's prediction columns (`prediction`, `p_<class>`, `prediction_<target>`; NaN: null)."""
    head = predictor.head
    columns = CSV_COLUMNS[head.task](head, outputs, None)
    return {
        name: values if isinstance(values, list) else np.asarray(values) for name, values in columns.items()
    }


def _rated(predictor: Any, prepared: Any, outputs: np.ndarray) -> Columns:
    """`prediction`: the rating, null for a pair the learner does not know (the CSV door's empty cell)."""
    return _csv(predictor, prepared, predictor.ratings(prepared, outputs))


def _points(predictor: Any, prepared: Any, outputs: np.ndarray) -> Columns:
    """Each point's x and y in [-1, 1] of the model's input (fastai's `PointScaler` scale)."""
    out: Columns = {}
    for i in range(predictor.head.n_points):
        out[f"point_{i}_x"] = outputs[:, 2 * i].astype(np.float32)
        out[f"point_{i}_y"] = outputs[:, 2 * i + 1].astype(np.float32)
    return out


def _segments(predictor: Any, prepared: Any, outputs: np.ndarray) -> Columns:
    """Each class's share of the model's input pixels (`fraction_<code>`)."""
    head = predictor.head
    masks = head.masks(outputs)
    counts = np.stack([(masks == c).mean(axis=(1, 2)) for c in range(len(head.classes))], axis=1)
    return {f"fraction_{code}": counts[:, c].astype(np.float32) for c, code in enumerate(head.classes)}


LOG_OUTPUTS: dict[Task, Callable[[Any, Any, np.ndarray], Columns]] = {
    Task.CLASSIFICATION: _csv,
    Task.MULTI_LABEL: _csv,
    Task.REGRESSION: _csv,
    Task.RATING: _rated,
    Task.POINTS: _points,
    Task.SEGMENTATION: _segments,
}
