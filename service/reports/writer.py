"""The training report next to a model: history, callbacks' outcome, data summary, test metrics, plots.

Test metrics come from the exported file loaded the way the server loads it and scored by the serving
predictors, so the report describes exactly what will be served. Plots use matplotlib's object API (no pyplot
state), so they render headless and from any thread.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from service.inference.predictor import ModelKind, labels_of
from service.inference.tabular_spec import finite_or_none
from service.reports.store import REPORT_DIR, REPORT_FILE
from service.schemas.reports import Evaluation

TOP_LOSSES = 9


@dataclass
class FitOutcome:
    """What the fit loop did, read off the learner's Recorder once training ends."""

    history: list[dict[str, Any]]
    monitor: str
    best_epoch: int | None
    epochs_planned: int
    stopped_early: bool
    stopped_at_epoch: int | None


@dataclass
class TestScores:
    """The serving predictor's output on the held-out test items."""

    source: str
    classes: list[str]
    actual: list[str]
    probs: np.ndarray
    evaluation: Evaluation
    items: list[Any] = field(default_factory=list)  # image bytes, or row dicts, in the same order

    @property
    def losses(self) -> np.ndarray:
        """Cross-entropy of each item: what fastai's top losses rank by."""
        index = {c: i for i, c in enumerate(self.classes)}
        picked = self.probs[np.arange(len(self.actual)), [index[a] for a in self.actual]]
        return np.asarray(-np.log(np.clip(picked, 1e-12, None)))


def fit_outcome(learn: Any, *, epochs: int, monitor: str, min_delta: float) -> FitOutcome:
    recorder = learn.recorder
    names = list(recorder.metric_names[1:])  # without 'epoch'
    if names and names[-1] == "time":
        names = names[:-1]
    history = [
        {"epoch": i, **{name: finite_or_none(v) for name, v in zip(names, values, strict=False)}}
        for i, values in enumerate(recorder.values)
    ]
    # The rule of fastai's TrackerCallback (what SaveModelCallback restores): an epoch is the new best
    # only when it beats the best so far by more than min_delta.
    lower_is_better = "loss" in monitor or "error" in monitor
    best, best_value = None, math.inf if lower_is_better else -math.inf
    for i, row in enumerate(history):
        value = row.get(monitor)
        if value is None:
            continue
        if (value + min_delta < best_value) if lower_is_better else (value - min_delta > best_value):
            best, best_value = i, value
    stopped = len(history) < epochs
    return FitOutcome(
        history=history,
        monitor=monitor,
        best_epoch=best,
        epochs_planned=epochs,
        stopped_early=stopped,
        stopped_at_epoch=len(history) - 1 if stopped else None,
    )


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def plot_loss_curve(learn: Any, path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    recorder = learn.recorder
    skip = 5 if len(recorder.losses) > 20 else 0
    learn.recorder.plot_loss(skip_start=skip, ax=ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training and validation loss")
    _save(fig, path)


def plot_confusion_matrix(evaluation: Evaluation, path: Path) -> None:
    labels, matrix = evaluation.confusion_matrix.labels, np.array(evaluation.confusion_matrix.matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"confusion matrix (n={evaluation.n}, accuracy {evaluation.accuracy:.3f})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    _save(fig, path)


def _top(scores: TestScores) -> list[int]:
    return [int(i) for i in np.argsort(-scores.losses, kind="stable")[:TOP_LOSSES]]


def _caption(scores: TestScores, i: int) -> tuple[str, float, float]:
    probs = scores.probs[i : i + 1]
    [predicted] = labels_of(probs, scores.classes)
    return predicted, float(scores.losses[i]), float(probs.max())


def plot_top_losses_images(scores: TestScores, path: Path) -> None:
    """fastai's plot_top_losses: the 9 test images the model got most wrong, with prediction/actual/loss/p."""
    fig = Figure(figsize=(9, 10))
    axes = fig.subplots(3, 3).flatten()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, _top(scores), strict=False):
        predicted, loss, prob = _caption(scores, i)
        with Image.open(io.BytesIO(scores.items[i])) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_title(f"{predicted}/{scores.actual[i]}\n{loss:.2f} / {prob:.2f}", fontsize=9)
    fig.suptitle("prediction/actual  loss/probability")
    _save(fig, path)


def top_loss_rows(scores: TestScores) -> list[dict[str, Any]]:
    rows = []
    for i in _top(scores):
        predicted, loss, prob = _caption(scores, i)
        rows.append(
            {"row": i, "actual": scores.actual[i], "predicted": predicted, "loss": loss, "probability": prob}
            | {k: v for k, v in scores.items[i].items() if k != "row"}
        )
    return rows


def plot_top_losses_table(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Tabular top losses: the worst test rows as a table (inputs, actual, prediction, loss)."""
    columns = list(rows[0]) if rows else ["row"]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    fig = Figure(figsize=(max(8.0, 1.1 * len(columns)), 0.4 * len(rows) + 1.2))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=cells or [["" for _ in columns]], colLabels=columns, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(columns))))
    ax.set_title("test rows with the highest loss")
    _save(fig, path)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def write_report(
    out_dir: Path,
    *,
    learn: Any,
    outcome: FitOutcome,
    scores: TestScores | None,
    kind: ModelKind,
    seed: int,
    augmented: bool,
    train_seconds: float,
    datablock_summary: str | None,
    recipe: dict[str, Any],
) -> Path:
    """Write `report/report.json` and the PNGs; returns the report folder."""
    folder = out_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    plot_loss_curve(learn, folder / "loss_curve.png")
    artifacts["loss_curve"] = "loss_curve.png"
    rows = None
    if scores is not None:
        plot_confusion_matrix(scores.evaluation, folder / "confusion_matrix.png")
        artifacts["confusion_matrix"] = "confusion_matrix.png"
        if kind is ModelKind.VISION:
            plot_top_losses_images(scores, folder / "top_losses.png")
        else:
            rows = top_loss_rows(scores)
            plot_top_losses_table(rows, folder / "top_losses.png")
        artifacts["top_losses"] = "top_losses.png"
    report = {
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "monitor": outcome.monitor,
        "stopped_early": outcome.stopped_early,
        "stopped_at_epoch": outcome.stopped_at_epoch,
        "epochs_planned": outcome.epochs_planned,
        "seed": seed,
        "augmented": augmented,
        "train_seconds": round(train_seconds, 2),
        "test": scores.evaluation.model_dump(mode="json") if scores is not None else None,
        "test_source": scores.source if scores is not None else None,
        "datablock_summary": datablock_summary,
        "top_losses_rows": rows,
        "recipe": recipe,
        "artifacts": artifacts,
    }
    tmp = folder / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    tmp.replace(folder / REPORT_FILE)
    return folder
