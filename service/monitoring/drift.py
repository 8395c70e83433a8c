"""Whether recent inputs still look like the training data, and how the model does on the feedback so far.

Both sides are profiled the same way, from columns in the payload log's form (`columns.py`): a reference
(from training, `reference.json` in the model's folder, or an admin upload, beside the log) against a window
of the log. Per feature (`DRIFT_FEATURES[kind]`: a tabular model's columns; an image's width, height and
brightness; a text's length in tokens and share of unknown tokens; a pair's user and item) and for the
predicted distribution (`PREDICTED[task]`): categories as shares (the `TOP` most frequent, the rest as
`(other)`), numbers as shares of `BINS` bins cut at the reference's quantiles. The statistic is the
population stability index, PSI = Σ (a − e) · ln(a / e) over the bins (shares floored at `FLOOR`), with
the usual thresholds: below `WARN` (0.1) ok, below `ALERT` (0.25) warn, else alert; with fewer than
`MIN_ITEMS` items in the window the value is given but the status stays ok. Categories under `MIN_SHARE`
(1%) of the reference share the `(other)` bin: a rare category's count is mostly sampling noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from service.inference.predictor import ModelKind
from service.inference.tasks import Task

BINS = 10
TOP = 50
MIN_SHARE = 0.01
FLOOR = 1e-4
WARN, ALERT = 0.1, 0.25
MIN_ITEMS = 30
OTHER = "(other)"
REFERENCE_FILE = "reference.json"


@dataclass
class Profile:
    """A feature's distribution: `shares` per category, or per bin between `edges` (numbers)."""

    type: str  # "categorical" | "numeric"
    shares: dict[str, float] | list[float]
    edges: list[float] = field(default_factory=list)
    n: int = 0


def profile(values: Any, *, reference: Profile | None = None) -> Profile:
    """`values` profiled: as the reference was (its categories or its bins), or, for a reference itself,
    numbers in `BINS` quantile bins and anything else as its `TOP` categories."""
    array = (
        values.to_numpy(zero_copy_only=False) if isinstance(values, pa.Array | pa.ChunkedArray) else values
    )
    array = np.asarray(array)
    numeric = np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.bool_)
    if reference is not None:
        numeric = reference.type == "numeric"
    if numeric:
        numbers = array.astype(np.float64)
        numbers = numbers[np.isfinite(numbers)]
        edges = reference.edges if reference is not None else _edges(numbers)
        counts = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1)
        total = max(int(counts.sum()), 1)
        return Profile(
            "numeric", [float(c) / total for c in counts], list(map(float, edges)), int(len(numbers))
        )
    labels = ["" if v is None else str(v) for v in array.tolist()]
    counts_by: dict[str, int] = {}
    for label in labels:
        counts_by[label] = counts_by.get(label, 0) + 1
    total = max(len(labels), 1)
    if reference is not None:
        known = {str(k) for k in reference.shares}
        shares: dict[str, float] = dict.fromkeys(known, 0.0)
        for label, count in counts_by.items():
            key = label if label in known else OTHER
            shares[key] = shares.get(key, 0.0) + count / total
        return Profile("categorical", shares, n=len(labels))
    # Rare categories share one bin: a category seen a few times swings PSI by sampling alone.
    top = [
        k for k in sorted(counts_by, key=lambda k: -counts_by[k])[:TOP] if counts_by[k] / total >= MIN_SHARE
    ]
    shares = {str(k): counts_by[k] / total for k in top}
    rest = 1.0 - sum(shares.values())
    shares[OTHER] = max(rest, 0.0)
    return Profile("categorical", shares, n=len(labels))


def _edges(numbers: np.ndarray) -> list[float]:
    if not len(numbers):
        return []
    inner = np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1])
    return sorted({float(e) for e in inner})


def psi(reference: Profile, window: Profile) -> float:
    """The population stability index of `window` against `reference` (same bins or categories)."""
    if isinstance(reference.shares, list) and isinstance(window.shares, list):
        expected, actual = np.asarray(reference.shares), np.asarray(window.shares)
    else:
        ref: dict[str, float] = dict(reference.shares)  # type: ignore[arg-type]
        win: dict[str, float] = dict(window.shares)  # type: ignore[arg-type]
        keys = sorted(set(ref) | set(win))
        expected = np.asarray([ref.get(k, 0.0) for k in keys])
        actual = np.asarray([win.get(k, 0.0) for k in keys])
    expected, actual = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(((actual - expected) * np.log(actual / expected)).sum())


def status(value: float, n: int) -> str:
    if n < MIN_ITEMS or not math.isfinite(value):
        return "ok"
    return "alert" if value >= ALERT else "warn" if value >= WARN else "ok"


# -- features per kind, predictions per task -----------------------------------------------------------
def _tabular_features(predictor: Any, table: pa.Table) -> dict[str, Any]:
    return {c: table.column(c) for c in predictor.spec.column_names if c in table.column_names}


def _image_features(predictor: Any, table: pa.Table) -> dict[str, Any]:
    return {c: table.column(c) for c in ("width", "height", "brightness") if c in table.column_names}


def _text_features(predictor: Any, table: pa.Table) -> dict[str, Any]:
    """A text's length in the learner's tokens and its share of tokens the learner does not know."""
    if "text" not in table.column_names:
        return {}
    texts = [t or "" for t in table.column("text").to_pylist()]
    encoded = predictor.encode(texts) if texts else None
    ids = encoded.ids if encoded is not None else []
    lengths = np.asarray([len(x) for x in ids], dtype=np.float64)
    unknown = np.asarray(
        [float((x[~predictor.special(x)] == predictor.unk_idx).mean()) if len(x) else 0.0 for x in ids]
    )
    return {"text_length": lengths, "unknown_share": unknown}


def _pair_features(predictor: Any, table: pa.Table) -> dict[str, Any]:
    return {c: table.column(c) for c in ("user", "item") if c in table.column_names}


DRIFT_FEATURES: dict[ModelKind, Callable[[Any, pa.Table], dict[str, Any]]] = {
    ModelKind.TABULAR: _tabular_features,
    ModelKind.VISION: _image_features,
    ModelKind.TEXT: _text_features,
    ModelKind.COLLAB: _pair_features,
}


def _prediction_columns(prefixes: tuple[str, ...]) -> Callable[[Any, pa.Table], dict[str, Any]]:
    def columns(head: Any, table: pa.Table) -> dict[str, Any]:
        return {f"predicted:{c}": table.column(c) for c in table.column_names if c.startswith(prefixes)}

    return columns


# Per task, the predicted distribution's features: a classifier's label, a multi-label model's label set,
# each regression target's value, a rating, each point's coordinates, each class's share of a mask.
PREDICTED: dict[Task, Callable[[Any, pa.Table], dict[str, Any]]] = {
    Task.CLASSIFICATION: _prediction_columns(("prediction",)),
    Task.MULTI_LABEL: _prediction_columns(("prediction",)),
    Task.REGRESSION: _prediction_columns(("prediction",)),
    Task.RATING: _prediction_columns(("prediction",)),
    Task.POINTS: _prediction_columns(("point_",)),
    Task.SEGMENTATION: _prediction_columns(("fraction_",)),
}


def features(predictor: Any, table: pa.Table) -> dict[str, Any]:
    """Every feature drift is measured on, inputs then predictions, from log-form columns."""
    return {
        **DRIFT_FEATURES[predictor.kind](predictor, table),
        **PREDICTED[predictor.head.task](predictor.head, table),
    }


@dataclass
class Reference:
    source: str  # "training" | "upload"
    n: int
    profiles: dict[str, Profile]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "source": self.source,
            "n": self.n,
            "profiles": {k: asdict(p) for k, p in self.profiles.items()},
        }
        hidden = path.with_name(f".{path.name}.tmp")
        hidden.write_text(json.dumps(body))
        hidden.replace(path)

    @classmethod
    def load(cls, path: Path) -> Reference | None:
        if not path.is_file():
            return None
        body = json.loads(path.read_text())
        profiles = {k: Profile(**p) for k, p in body["profiles"].items()}
        return cls(source=str(body["source"]), n=int(body["n"]), profiles=profiles)


def reference_of(predictor: Any, table: pa.Table, *, source: str) -> Reference:
    """The reference profiles of log-form columns (training's validation items, or an upload)."""
    return Reference(source, table.num_rows, {k: profile(v) for k, v in features(predictor, table).items()})


def log_table(predictor: Any, parts: list[tuple[Any, np.ndarray]]) -> pa.Table:
    """Prepared inputs and their outputs as the payload log would write them (its column codecs)."""
    from service.monitoring.columns import log_columns

    if not parts:
        return pa.table({})
    prepared, outputs = zip(*parts, strict=True)
    return pa.table(log_columns(predictor, prepared, outputs))


def build_reference(predictor: Any, parts: list[tuple[Any, np.ndarray]], *, source: str) -> Reference:
    """The reference of these inputs (training's held-out items, or an upload) and the model's outputs."""
    return reference_of(predictor, log_table(predictor, parts), source=source)


def drift(predictor: Any, reference: Reference, table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per feature the reference has: PSI of the window against it, its status and the items counted."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in features(predictor, table).items():
        ref = reference.profiles.get(name)
        if ref is None:
            continue
        window = profile(values, reference=ref)
        value = psi(ref, window)
        out[name] = {
            "statistic": "psi",
            "value": round(value, 6),
            "status": status(value, window.n),
            "n": window.n,
        }
    return out


def predicted_summary(predictor: Any, table: pa.Table) -> dict[str, Any]:
    """The window's predicted distribution: shares of labels, or per numeric column its mean and spread."""
    summary: dict[str, Any] = {}
    for name, values in PREDICTED[predictor.head.task](predictor.head, table).items():
        column = name.removeprefix("predicted:")
        described = profile(values)
        if described.type == "categorical":
            summary[column] = {k: round(v, 6) for k, v in described.shares.items() if v}  # type: ignore[union-attr]
        else:
            numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
            numbers = numbers[np.isfinite(numbers)]
            summary[column] = {
                "mean": float(numbers.mean()) if len(numbers) else None,
                "std": float(numbers.std()) if len(numbers) else None,
                "n": int(len(numbers)),
            }
    return summary
