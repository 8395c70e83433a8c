"""The payload log's columns: many requests' inputs per kind (`LOG_INPUTS`) and their outputs per task
(`LOG_OUTPUTS`), each column built once for all of them: `log_columns`.

The request path only keeps references (the prepared inputs and the output matrix a request already holds);
the log's writer thread later gives every request of one model version to these codecs at once, so that a
column costs one vectorised call per flush, not Python work per request (at thousands of one-row requests
a second, per-request codecs cost the server a fifth of its throughput). Keyed like every front door's
codecs (`tests/unit/test_task_table.py` checks them).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from service.inference.csvio import CSV_COLUMNS
from service.inference.predictor import ModelKind
from service.inference.tabular_spec import NA_CATEGORY
from service.inference.tasks import Task

Columns = dict[str, Any]  # name -> np.ndarray (numbers, NaN: null) | pa.Array | list (text, None: null)


def _always(prepared: Any) -> bool:
    return True


@dataclass(frozen=True)
class ColumnOptions:
    """What the log's settings add to the columns: images' JPEG thumbnails (`LOG_THUMBNAIL_PX`, 0: none)."""

    thumbnail_px: int = 0


@dataclass(frozen=True)
class InputCodec:
    """A kind's input columns: `columns(predictor, prepared of many requests, options)`; `logs(prepared)`
    says on the request path whether a request is a prediction at all (a ranking is not)."""

    columns: Callable[[Any, Sequence[Any], ColumnOptions], Columns]
    logs: Callable[[Any], bool] = _always


def texts(values: Any) -> pa.Array:
    """Values as Arrow text, None as null: in one call when they are text already, else `str` of each
    (a category that is a number)."""
    values = values if isinstance(values, list) else list(values)
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _chained(parts: Iterable[Any]) -> list[Any]:
    return list(itertools.chain.from_iterable(parts))


def arrow_column(values: Any) -> pa.Array:
    """A built column as one Arrow array: numbers (NaN: null), Arrow as it is, or text."""
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray):
        return pa.array(values, from_pandas=True)
    return texts(values)


# -- inputs per kind -------------------------------------------------------------------------------------
def _tabular(predictor: Any, prepared: Sequence[Any], options: ColumnOptions) -> Columns:
    """One column per schema column: categories as text (`#na#`-coded values null), numbers as float64."""
    spec = predictor.spec
    columns = [p.columns for p in prepared]
    out: Columns = {}
    # JSON rows bring lists, CSV chunks arrays: one pass over the requests per column, whatever the mix.
    first = spec.continuous[0].name if spec.continuous else None
    arrays = first is not None and any(isinstance(c[first], np.ndarray) for c in columns)
    # Every column present (JSON rows always): no request brought a category as codes only.
    whole = all(len(c) == len(spec.column_names) for c in columns)
    for cont in spec.continuous:
        parts = [c[cont.name] for c in columns]
        if not arrays:
            out[cont.name] = pa.array(_chained(parts), type=pa.float64(), from_pandas=True)
        else:
            out[cont.name] = np.concatenate([np.asarray(part, dtype=np.float64) for part in parts])
    for cat in spec.categorical:
        if whole or all(cat.name in c for c in columns):
            out[cat.name] = texts(_chained([c[cat.name] for c in columns]))
            continue
        # A CSV chunk resolved to codes only: back to the categories (#na#, code 0: null).
        names: list[Any] = [None] * (max(cat.codes.values(), default=0) + 1)
        for category, code in cat.codes.items():
            names[code] = None if category == NA_CATEGORY else category
        vocabulary = texts(names)
        out[cat.name] = pa.concat_arrays(
            [
                texts(p.columns[cat.name])
                if cat.name in p.columns
                else vocabulary.take(_in_range(np.asarray(p.codes[cat.name]), len(names)))
                for p in prepared
            ]
        )
    return out


def _in_range(codes: np.ndarray, n: int) -> pa.Array:
    """Codes past the vocabulary as 0 (`#na#`: null)."""
    return pa.array(np.where((codes >= 0) & (codes < n), codes, 0))


def brightness(image: Any) -> float:
    """An image's mean brightness in [0, 1], of its grey version (what drift compares besides the size)."""
    return float(np.asarray(image.convert("L"), dtype=np.float32).mean() / 255)


def thumbnail(image: Any, px: int) -> bytes:
    """The image as a JPEG whose longer side is at most `px` pixels (its aspect kept)."""
    small = image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    small.thumbnail((px, px))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _images(predictor: Any, prepared: Sequence[Any], options: ColumnOptions) -> Columns:
    """The uploaded file's sha256 (of its decoded pixels when it came as pixels), width, height and mean
    brightness, and with `LOG_THUMBNAIL_PX` a JPEG thumbnail. Per image by nature: the one codec whose cost
    grows with the items."""
    images = _chained(p.images for p in prepared)
    sources = _chained(p.sources if p.sources is not None else [None] * p.n for p in prepared)
    digests = [
        hashlib.sha256(source if source is not None else image.tobytes()).hexdigest()
        for source, image in zip(sources, images, strict=True)
    ]
    sizes = np.asarray([image.size for image in images], dtype=np.int32).reshape(-1, 2)
    out: Columns = {
        "sha256": pa.array(digests, type=pa.string()),
        "width": sizes[:, 0],
        "height": sizes[:, 1],
        "brightness": np.asarray([brightness(image) for image in images], dtype=np.float32),
    }
    if options.thumbnail_px:
        out["thumbnail"] = pa.array([thumbnail(i, options.thumbnail_px) for i in images], type=pa.binary())
    return out


def _texts(predictor: Any, prepared: Sequence[Any], options: ColumnOptions) -> Columns:
    return {"text": texts(_chained(p.texts for p in prepared))}


def _pairs(predictor: Any, prepared: Sequence[Any], options: ColumnOptions) -> Columns:
    """`user`, `item` as sent (as text: ids may be numbers or names); a ranking is not a prediction."""
    return {
        "user": texts(_chained(_values(p.users) for p in prepared)),
        "item": texts(_chained(_values(p.items) for p in prepared)),
    }


def _values(values: Any) -> list[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else list(values)


LOG_INPUTS: dict[ModelKind, InputCodec] = {
    ModelKind.TABULAR: InputCodec(_tabular),
    ModelKind.VISION: InputCodec(_images),
    ModelKind.TEXT: InputCodec(_texts, logs=lambda p: p.texts is not None),
    ModelKind.COLLAB: InputCodec(
        _pairs, logs=lambda p: getattr(p, "users", None) is not None and getattr(p, "items", None) is not None
    ),
}


# -- outputs per task: (predictor, prepared of many requests, their outputs) ------------------------------
def _csv(predictor: Any, prepared: Sequence[Any], outputs: Sequence[np.ndarray]) -> Columns:
    """The CSV door's prediction columns (`prediction`, `p_<class>`, `prediction_<target>`; NaN: null)."""
    head = predictor.head
    columns = CSV_COLUMNS[head.task](head, np.concatenate(outputs), None)
    return {
        name: values if isinstance(values, list) else np.asarray(values) for name, values in columns.items()
    }


def _rated(predictor: Any, prepared: Sequence[Any], outputs: Sequence[np.ndarray]) -> Columns:
    """`prediction`: the rating, null for a pair the learner does not know (the CSV door's empty cell)."""
    ratings = [predictor.ratings(p, o) for p, o in zip(prepared, outputs, strict=True)]
    return _csv(predictor, prepared, ratings)


def _points(predictor: Any, prepared: Sequence[Any], outputs: Sequence[np.ndarray]) -> Columns:
    """Each point's x and y in [-1, 1] of the model's input (fastai's `PointScaler` scale)."""
    matrix = np.concatenate(outputs)
    out: Columns = {}
    for i in range(predictor.head.n_points):
        out[f"point_{i}_x"] = matrix[:, 2 * i].astype(np.float32)
        out[f"point_{i}_y"] = matrix[:, 2 * i + 1].astype(np.float32)
    return out


def _segments(predictor: Any, prepared: Sequence[Any], outputs: Sequence[np.ndarray]) -> Columns:
    """Each class's share of the model's input pixels (`fraction_<code>`)."""
    head = predictor.head
    masks = head.masks(np.concatenate(outputs))
    counts = np.stack([(masks == c).mean(axis=(1, 2)) for c in range(len(head.classes))], axis=1)
    return {f"fraction_{code}": counts[:, c].astype(np.float32) for c, code in enumerate(head.classes)}


LOG_OUTPUTS: dict[Task, Callable[[Any, Sequence[Any], Sequence[np.ndarray]], Columns]] = {
    Task.CLASSIFICATION: _csv,
    Task.MULTI_LABEL: _csv,
    Task.REGRESSION: _csv,
    Task.RATING: _rated,
    Task.POINTS: _points,
    Task.SEGMENTATION: _segments,
}


def logs(predictor: Any, prepared: Any) -> bool:
    """Whether the log takes this request: a prediction of a task it has columns for."""
    return predictor.head.task in LOG_OUTPUTS and LOG_INPUTS[predictor.kind].logs(prepared)


def log_columns(
    predictor: Any,
    prepared: Sequence[Any],
    outputs: Sequence[np.ndarray],
    options: ColumnOptions = ColumnOptions(),
) -> dict[str, pa.Array]:
    """Many requests' inputs and outputs (one model version's) as the log writes them, one Arrow array
    per column."""
    columns = LOG_INPUTS[predictor.kind].columns(predictor, prepared, options)
    columns.update(LOG_OUTPUTS[predictor.head.task](predictor, prepared, outputs))
    return {name: arrow_column(values) for name, values in columns.items()}
