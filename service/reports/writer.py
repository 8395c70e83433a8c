"""The training report next to a model: history, callbacks' outcome, data summary, test metrics, plots.

Test metrics come from the exported file loaded the way the server loads it and scored by the serving
predictors, so the report describes exactly what will be served. Plots use matplotlib's object API (no pyplot
state), so they render headless and from any thread.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from service.inference.predictor import ModelKind
from service.inference.tabular_spec import finite_or_none
from service.inference.tasks import AnyHead, Task
from service.reports.scores import evaluate_multi_label
from service.reports.store import REPORT_DIR, REPORT_FILE
from service.schemas.reports import AnyEvaluation, Evaluation, MultiLabelEvaluation, RegressionEvaluation

TOP_LOSSES = 9
# Metrics where lower is better beside fastai's own rule (a name with "loss" or "error" in it): the
# callbacks, and the report's best epoch, must compare them that way.
LOWER_IS_BETTER = frozenset({"rmse", "_rmse", "mae", "mse", "msle", "_exp_rmspe"})
# The F1-vs-threshold curve's thresholds, and the most points a scatter draws (a sample beyond that).
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)
SCATTER_POINTS = 5000
TEXT_WRAP = 110  # characters a line in the text top losses


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
    """The serving predictor's outputs on the held-out test items, and what they should have been."""

    source: str
    head: AnyHead
    actual: np.ndarray  # as `scores.SCORERS` takes it: class indices, label flags, values or points
    outputs: np.ndarray  # the predictor's (n, width) outputs (points: their pixels)
    evaluation: AnyEvaluation
    items: list[Any] = field(default_factory=list)  # image bytes, or row dicts, in the same order

    @property
    def classes(self) -> list[str]:
        return self.head.classes

    @property
    def losses(self) -> np.ndarray:
        """Each item's loss, the learner's loss function's kind: what fastai's top losses rank by."""
        return ITEM_LOSSES[self.head.task](self.actual, self.outputs)


def lower_is_better(monitor: str) -> bool:
    """fastai's TrackerCallback rule, plus the error metrics whose names do not say so."""
    return "loss" in monitor or "error" in monitor or monitor in LOWER_IS_BETTER


# -- per task: each item's loss, and an item in words -------------------------------------------------------
def _cross_entropy(actual: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    picked = outputs[np.arange(len(actual)), actual.astype(np.int64)]
    return np.asarray(-np.log(np.clip(picked, 1e-12, None)))


def _binary_cross_entropy(actual: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    p = np.clip(outputs.astype(np.float64), 1e-12, 1 - 1e-12)
    y = actual.astype(np.float64)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1))


def _squared_error(actual: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    error = outputs.astype(np.float64).reshape(len(actual), -1) - actual.astype(np.float64).reshape(
        len(actual), -1
    )
    return np.asarray((error**2).mean(axis=1))


# Per task: (actual, outputs) -> each item's loss (cross-entropy, BCE, MSE as the learner's loss computes).
ITEM_LOSSES: dict[Task, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    Task.CLASSIFICATION: _cross_entropy,
    Task.MULTI_LABEL: _binary_cross_entropy,
    Task.REGRESSION: _squared_error,
    Task.POINTS: _squared_error,
}


@dataclass(frozen=True)
class Described:
    """One test item's actual and predicted outcome, as the report shows them."""

    actual: Any
    predicted: Any
    probability: float | None = None  # a classifier's confidence in its prediction


def _class_item(head: Any, actual: Any, output: np.ndarray) -> Described:
    classes = head.classes
    return Described(classes[int(actual)], classes[int(output.argmax())], float(output.max()))


def _joined(classes: Sequence[str], flags: np.ndarray) -> str:
    return ";".join(c for c, on in zip(classes, flags.tolist(), strict=True) if on)


def _labels_item(head: Any, actual: Any, output: np.ndarray) -> Described:
    predicted = head.predicted(output[None, :])[0]
    return Described(_joined(head.classes, actual), _joined(head.classes, predicted))


def _values(targets: Sequence[str], values: np.ndarray) -> Any:
    flat = [float(v) for v in np.asarray(values).ravel().tolist()]
    if len(flat) == 1:
        return flat[0]
    return "; ".join(f"{t}={v:.4g}" for t, v in zip(targets, flat, strict=True))


def _values_item(head: Any, actual: Any, output: np.ndarray) -> Described:
    return Described(_values(head.targets, actual), _values(head.targets, output))


def _points_item(head: Any, actual: Any, output: np.ndarray) -> Described:
    def text(points: np.ndarray) -> str:
        return " ".join(f"({x:.0f},{y:.0f})" for x, y in np.asarray(points).reshape(-1, 2).tolist())

    return Described(text(actual), text(output))


# Per task: (head, actual of one item, its outputs) -> how the top losses show it.
DESCRIBE: dict[Task, Callable[[Any, Any, np.ndarray], Described]] = {
    Task.CLASSIFICATION: _class_item,
    Task.MULTI_LABEL: _labels_item,
    Task.REGRESSION: _values_item,
    Task.POINTS: _points_item,
}


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
    lower = lower_is_better(monitor)
    best, best_value = None, math.inf if lower else -math.inf
    for i, row in enumerate(history):
        value = row.get(monitor)
        if value is None:
            continue
        if (value + min_delta < best_value) if lower else (value - min_delta > best_value):
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


def plot_confusion_matrix(scores: TestScores, path: Path) -> None:
    evaluation = scores.evaluation
    assert isinstance(evaluation, Evaluation)
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


def plot_class_scores(scores: TestScores, path: Path) -> None:
    """multi_label: precision, recall and F1 of each class, and their micro and macro averages."""
    evaluation = scores.evaluation
    assert isinstance(evaluation, MultiLabelEvaluation)
    names = list(evaluation.f1)  # the classes, then micro and macro
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 2), 4.5))
    ax = fig.subplots()
    for offset, (label, values) in zip(
        (-0.27, 0.0, 0.27),
        (("precision", evaluation.precision), ("recall", evaluation.recall), ("F1", evaluation.f1)),
        strict=True,
    ):
        ax.bar(x + offset, [values[n] for n in names], width=0.27, label=label)
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.axvline(len(names) - 2.5, color="grey", linestyle=":", linewidth=1)  # classes | averages
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(
        f"per class at threshold {evaluation.threshold:g} (n={evaluation.n}, "
        f"accuracy_multi {evaluation.accuracy_multi:.3f})"
    )
    _save(fig, path)


def f1_by_threshold(scores: TestScores) -> list[MultiLabelEvaluation]:
    """The multi-label evaluation at each of `THRESHOLDS`, from the same probabilities."""
    classes = scores.head.classes
    return [
        evaluate_multi_label(scores.actual, scores.outputs > t, classes, threshold=float(t))
        for t in THRESHOLDS
    ]


def plot_f1_threshold(scores: TestScores, path: Path) -> None:
    """multi_label: micro and macro F1 as the threshold moves, the learner's threshold marked."""
    evaluations = f1_by_threshold(scores)
    micro = [e.f1["micro"] for e in evaluations]
    best = int(np.argmax(micro))
    used = scores.evaluation
    assert isinstance(used, MultiLabelEvaluation)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(THRESHOLDS, micro, marker="o", label="micro F1")
    ax.plot(THRESHOLDS, [e.f1["macro"] for e in evaluations], marker="s", label="macro F1")
    ax.axvline(used.threshold, color="grey", linestyle="--", label=f"learner's threshold {used.threshold:g}")
    ax.annotate(
        f"best micro F1 {micro[best]:.3f} at {THRESHOLDS[best]:g}",
        (THRESHOLDS[best], micro[best]),
        textcoords="offset points",
        xytext=(0, 8),
        ha="center",
        fontsize=8,
    )
    ax.set_xlabel("threshold")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("F1 against the threshold (test set)")
    _save(fig, path)


def _target_axes(count: int, *, width: float = 4.5) -> tuple[Figure, list[Any]]:
    """One square-ish panel per target, three to a row."""
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, width * rows * 0.9))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel().tolist()
    for ax in axes[count:]:
        ax.axis("off")
    return fig, axes[:count]


def _sample(n: int) -> np.ndarray:
    """Which items a scatter draws: all, or an even sample of `SCATTER_POINTS` (same picture, less ink)."""
    return np.arange(n) if n <= SCATTER_POINTS else np.linspace(0, n - 1, SCATTER_POINTS).astype(np.int64)


def _regression_panels(
    scores: TestScores,
) -> tuple[RegressionEvaluation, Any, list[tuple[Any, str, np.ndarray, np.ndarray]]]:
    """A regression's evaluation, a figure with an axis per target, and per target (axis, name, actual,
    predicted) for the sampled items."""
    evaluation = scores.evaluation
    assert isinstance(evaluation, RegressionEvaluation)
    targets = scores.head.targets
    fig, axes = _target_axes(len(targets))
    keep = _sample(len(scores.actual))
    panels = [
        (ax, target, scores.actual[keep, i], scores.outputs[keep, i])
        for i, (ax, target) in enumerate(zip(axes, targets, strict=True))
    ]
    return evaluation, fig, panels


def plot_predicted_vs_actual(scores: TestScores, path: Path) -> None:
    """regression: predicted against actual per target, with the line a perfect model would sit on."""
    evaluation, fig, panels = _regression_panels(scores)
    for ax, target, actual, predicted in panels:
        ax.scatter(actual, predicted, s=8, alpha=0.5)
        low = float(min(actual.min(), predicted.min())) if len(actual) else 0.0
        high = float(max(actual.max(), predicted.max())) if len(actual) else 1.0
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"actual {target}")
        ax.set_ylabel(f"predicted {target}")
        s = evaluation.targets[target]
        r2 = "-" if s.r2 is None else f"{s.r2:.3f}"
        ax.set_title(f"{target}: RMSE {s.rmse:.3g}, R² {r2}", fontsize=10)
    fig.suptitle(f"predicted vs actual (n={evaluation.n})")
    _save(fig, path)


def plot_residuals(scores: TestScores, path: Path) -> None:
    """regression: predicted minus actual against the prediction, per target (a pattern = a bias)."""
    evaluation, fig, panels = _regression_panels(scores)
    for ax, target, actual, predicted in panels:
        residual = predicted - actual
        ax.scatter(predicted, residual, s=8, alpha=0.5)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"predicted {target}")
        ax.set_ylabel("predicted - actual")
        ax.set_title(f"{target}: MAE {evaluation.targets[target].mae:.3g}", fontsize=10)
    fig.suptitle(f"residuals (n={evaluation.n})")
    _save(fig, path)


def _top(scores: TestScores) -> list[int]:
    return [int(i) for i in np.argsort(-scores.losses, kind="stable")[:TOP_LOSSES]]


def _describe(scores: TestScores, i: int) -> Described:
    return DESCRIBE[scores.head.task](scores.head, scores.actual[i], scores.outputs[i])


def _text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_top_losses_images(scores: TestScores, path: Path) -> list[dict[str, Any]] | None:
    """fastai's plot_top_losses: the 9 test images the model got most wrong, with prediction/actual/loss
    (and a classifier's probability)."""
    fig = Figure(figsize=(9, 10))
    axes = fig.subplots(3, 3).flatten()
    for ax in axes:
        ax.axis("off")
    losses = scores.losses
    for ax, i in zip(axes, _top(scores), strict=False):
        item = _describe(scores, i)
        with Image.open(io.BytesIO(scores.items[i])) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        tail = f" / {item.probability:.2f}" if item.probability is not None else ""
        ax.set_title(
            f"{_text(item.predicted)}/{_text(item.actual)}\n{float(losses[i]):.2f}{tail}", fontsize=9
        )
    fig.suptitle("prediction/actual  loss/probability")
    _save(fig, path)
    return None


def top_loss_rows(scores: TestScores) -> list[dict[str, Any]]:
    rows = []
    losses = scores.losses
    for i in _top(scores):
        item = _describe(scores, i)
        row: dict[str, Any] = {"row": i, "actual": item.actual, "predicted": item.predicted}
        row["loss"] = float(losses[i])
        if item.probability is not None:
            row["probability"] = item.probability
        rows.append(row | {k: v for k, v in scores.items[i].items() if k != "row"})
    return rows


def plot_top_losses_rows(scores: TestScores, path: Path) -> list[dict[str, Any]] | None:
    rows = top_loss_rows(scores)
    plot_top_losses_table(rows, path)
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


def plot_top_losses_texts(scores: TestScores, path: Path) -> list[dict[str, Any]] | None:
    """Text top losses: the worst test texts in full (wrapped), each with actual, prediction, probability
    and loss — what fastai's `plot_top_losses` shows for text, as a picture."""
    rows = top_loss_rows(scores)
    blocks = [
        (
            f"{i + 1}. actual {row['actual']}, predicted {row['predicted']} "
            f"(probability {_cell(row.get('probability'))}, loss {_cell(row['loss'])})",
            textwrap.wrap(str(row.get("text", "")), width=TEXT_WRAP) or [""],
        )
        for i, row in enumerate(rows)
    ]
    lines = sum(1 + len(wrapped) for _, wrapped in blocks) + len(blocks)
    fig = Figure(figsize=(10, 0.22 * lines + 0.8))
    ax = fig.subplots()
    ax.axis("off")
    y, step = 1.0, 1.0 / max(lines, 1)
    for title, wrapped in blocks:
        ax.text(0, y, title, fontsize=9, fontweight="bold", va="top", transform=ax.transAxes)
        y -= step
        for line in wrapped:
            ax.text(0.02, y, line, fontsize=9, va="top", transform=ax.transAxes)
            y -= step
        y -= step
    fig.suptitle("test texts with the highest loss")
    _save(fig, path)
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


# Per task: the report's pictures of its test scores beside the loss curve and the top losses (artifact
# name -> plot). Names are the report route's whitelist (`store.ARTIFACTS`).
TASK_PLOTS: dict[Task, dict[str, Callable[[TestScores, Path], None]]] = {
    Task.CLASSIFICATION: {"confusion_matrix": plot_confusion_matrix},
    Task.MULTI_LABEL: {"per_class_scores": plot_class_scores, "f1_vs_threshold": plot_f1_threshold},
    Task.REGRESSION: {"predicted_vs_actual": plot_predicted_vs_actual, "residuals": plot_residuals},
    Task.POINTS: {},
}
# Per kind: the top losses' picture (images, or a table of rows); returns the rows when it has them.
TOP_LOSSES_PLOTS: dict[ModelKind, Callable[[TestScores, Path], list[dict[str, Any]] | None]] = {
    ModelKind.VISION: plot_top_losses_images,
    ModelKind.TABULAR: plot_top_losses_rows,
    ModelKind.TEXT: plot_top_losses_texts,
}


def write_report(
    out_dir: Path,
    *,
    learn: Any,
    outcome: FitOutcome,
    scores: TestScores | None,
    kind: ModelKind,
    task: Task,
    seed: int,
    augmented: bool,
    train_seconds: float,
    datablock_summary: str | None,
    recipe: dict[str, Any],
) -> Path:
    """Write `report/report.json` and the PNGs; returns the report folder."""
    folder, artifacts = start_report(out_dir, learn)
    rows = None
    if scores is not None:
        for name, plot in TASK_PLOTS[task].items():
            plot(scores, folder / f"{name}.png")
            artifacts[name] = f"{name}.png"
        rows = TOP_LOSSES_PLOTS[kind](scores, folder / "top_losses.png")
        artifacts["top_losses"] = "top_losses.png"
    save_report_json(
        folder,
        outcome=outcome,
        task=task,
        seed=seed,
        augmented=augmented,
        train_seconds=train_seconds,
        test=scores.evaluation.model_dump(mode="json") if scores is not None else None,
        test_source=scores.source if scores is not None else None,
        datablock_summary=datablock_summary,
        top_losses_rows=rows,
        recipe=recipe,
        artifacts=artifacts,
    )
    return folder


def start_report(out_dir: Path, learn: Any) -> tuple[Path, dict[str, str]]:
    """The report folder, made, with the loss curve every report has; and the artifacts written so far."""
    folder = out_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plot_loss_curve(learn, folder / "loss_curve.png")
    return folder, {"loss_curve": "loss_curve.png"}


def save_report_json(
    folder: Path,
    *,
    outcome: FitOutcome,
    task: Task,
    seed: int,
    augmented: bool,
    train_seconds: float,
    test: dict[str, Any] | None,
    test_source: str | None,
    datablock_summary: str | None,
    top_losses_rows: list[dict[str, Any]] | None,
    recipe: dict[str, Any],
    artifacts: dict[str, str],
) -> None:
    """`report.json` in `folder`, in the one layout every recipe's report has (`store.py` reads it); written
    beside and renamed, so a reader never sees half of one."""
    report = {
        "task": task.value,
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "monitor": outcome.monitor,
        "stopped_early": outcome.stopped_early,
        "stopped_at_epoch": outcome.stopped_at_epoch,
        "epochs_planned": outcome.epochs_planned,
        "seed": seed,
        "augmented": augmented,
        "train_seconds": round(train_seconds, 2),
        "test": test,
        "test_source": test_source,
        "datablock_summary": datablock_summary,
        "top_losses_rows": top_losses_rows,
        "recipe": recipe,
        "artifacts": artifacts,
    }
    tmp = folder / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    tmp.replace(folder / REPORT_FILE)
