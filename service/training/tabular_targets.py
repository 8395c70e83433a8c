"""A tabular recipe's targets per task: which task the --target columns make, how they become fastai's
`y_names` and `y_block`, the metrics that fit the task, and the metric the callbacks watch by default.

One entry per task in `TARGET_TASKS`; `train_tabular` looks it up, never branches on the task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.errors import (
    MSG_LABEL_IS_FEATURE,
    MSG_NO_LABELS,
    MSG_TARGET_IS_FEATURE,
    MSG_TASK_NOT_NUMERIC,
    MSG_TASK_ONE_TARGET,
    MSG_UNKNOWN_TEST_LABELS,
    TrainingInputError,
)
from service.inference.tasks import Task

logger = logging.getLogger(__name__)

# `--task auto` (the default): several targets are a regression; one target is a regression when it is a
# numeric column with more than this many distinct values (hours-per-week, age), else a classification
# (text labels, or codes such as 0/1 or education-num). multi_label is never guessed: ask for it.
AUTO_REGRESSION_DISTINCT = 20
# A multi-label target column holds each row's labels joined by this (blank: no label), as the evaluate
# endpoints and the page take them.
LABEL_SEPARATOR = ";"


@dataclass(frozen=True)
class TargetData:
    """The rows to train and test on and where they came from (the files' names go into messages)."""

    train: pd.DataFrame
    test: pd.DataFrame | None
    targets: list[str]
    features: list[str]
    data_path: Path
    test_path: Path | None


@dataclass(frozen=True)
class Targets:
    """What the --target columns became: fastai's `y_names`, and the frames with those columns."""

    y_names: list[str]
    train: pd.DataFrame
    test: pd.DataFrame | None
    y_range: tuple[float, float] | None = None  # a regression's output range (`tabular_learner(y_range=)`)


@dataclass(frozen=True)
class TargetTask:
    """One task of the tabular recipe."""

    task: Task
    shape: str  # what its --target columns hold, in words
    prepare: Callable[[TargetData], Targets]
    y_block: Callable[[list[str]], Any]
    metrics: Callable[[Any | None], list[Any]]  # from the DataLoaders (None: only the names count)
    monitor: str  # what the callbacks watch unless --monitor says otherwise


def numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


def choose_task(frame: pd.DataFrame, targets: Sequence[str], task: Task | None) -> Task:
    """The task asked for, or `--task auto`'s choice (see `AUTO_REGRESSION_DISTINCT`)."""
    if task is not None:
        return task
    if len(targets) > 1:
        return Task.REGRESSION
    column = frame[targets[0]]
    many = column.nunique(dropna=True) > AUTO_REGRESSION_DISTINCT
    return Task.REGRESSION if numeric(column) and many else Task.CLASSIFICATION


def check_targets(data: TargetData, entry: TargetTask) -> None:
    """Refusals every task shares: a target that is also a feature, a wrong number of targets."""
    leaked = [t for t in data.targets if t in data.features]
    if leaked:
        raise TrainingInputError(MSG_TARGET_IS_FEATURE.format(columns=", ".join(map(repr, leaked))))
    if entry.task is not Task.REGRESSION and len(data.targets) != 1:
        raise TrainingInputError(
            MSG_TASK_ONE_TARGET.format(
                task=entry.task.value,
                shape=entry.shape,
                count=len(data.targets),
                targets=", ".join(data.targets),
            )
        )


# -- classification ---------------------------------------------------------------------------------------
def _as_labels(data: TargetData) -> Targets:
    return Targets(y_names=list(data.targets), train=data.train, test=data.test)


def _category_block(y_names: list[str]) -> Any:
    from fastai.data.block import CategoryBlock

    # Explicit: fastai would make a numeric column (0/1, a code) a regression by itself.
    return CategoryBlock()


def _classification_metrics(dls: Any | None) -> list[Any]:
    from fastai.metrics import Precision, Recall, accuracy

    # Precision and Recall are factories (FASTAI_NOTES); several classes need an average.
    average = "macro" if dls is not None and len(dls.vocab) > 2 else "binary"
    return [accuracy, Precision(average=average), Recall(average=average)]


# -- regression -------------------------------------------------------------------------------------------
def _numbers(frame: pd.DataFrame, targets: list[str], *, what: str) -> pd.DataFrame:
    """The target columns as float32 (fastai's regression loss wants floats); rows without a target are
    dropped: they can be neither learned nor scored."""
    # The targets last and in --target order: fastai stacks them with `.values`, which for columns of one
    # block taken out of their block's order gives negative strides torch refuses.
    out = frame[[c for c in frame.columns if c not in targets] + targets].copy()
    for target in targets:
        values = pd.to_numeric(out[target], errors="coerce")
        bad = out[target].notna() & values.isna()
        if bad.any() or pd.api.types.is_bool_dtype(out[target]):
            value = out[target][bad].iloc[0] if bad.any() else out[target].iloc[0]
            raise TrainingInputError(MSG_TASK_NOT_NUMERIC.format(what=what, column=target, value=str(value)))
        out[target] = values.astype(np.float32)
    kept = out.dropna(subset=targets).reset_index(drop=True)
    if len(kept) < len(out):
        logger.info("%s: %d row(s) without a target value left out", what, len(out) - len(kept))
    return kept


def _as_numbers(data: TargetData) -> Targets:
    test = None
    if data.test is not None:
        test = _numbers(data.test, data.targets, what=f"--test {data.test_path}")
    train = _numbers(data.train, data.targets, what=f"--data {data.data_path}")
    return Targets(y_names=list(data.targets), train=train, test=test, y_range=_y_range(train[data.targets]))


def _y_range(values: pd.DataFrame) -> tuple[float, float] | None:
    """The book's regression recipe: a `SigmoidRange` over the targets' span, so the untrained model starts
    inside it (a plain linear output starts at 0, far from hours-per-week's 40), a little wider than the
    data since a sigmoid never reaches its ends. One range for every target (fastai's is one pair)."""
    if values.empty:
        return None
    low, high = float(values.min().min()), float(values.max().max())
    margin = 0.05 * (high - low) or 1.0
    return low - margin, high + margin


def _regression_block(y_names: list[str]) -> Any:
    from fastai.data.block import RegressionBlock

    return RegressionBlock()


def _regression_metrics(dls: Any | None) -> list[Any]:
    from fastai.metrics import AccumMetric, R2Score, mae, rmse

    # fastai's own `rmse` is recorded as "_rmse" (its function's name): the same metric, named as shown.
    return [AccumMetric(rmse.func, name="rmse"), mae, R2Score()]


# -- multi_label ------------------------------------------------------------------------------------------
def split_labels(cell: Any) -> list[str]:
    """One cell's labels: "a;b" -> ["a", "b"]; blank or missing -> none."""
    if not isinstance(cell, str) and pd.isna(cell):
        return []
    return [part for part in (p.strip() for p in str(cell).split(LABEL_SEPARATOR)) if part]


def _flags(frame: pd.DataFrame, target: str, labels: list[str]) -> pd.DataFrame:
    """The label column replaced by one boolean column per label (fastai's encoded multi-category)."""
    sets = [set(split_labels(cell)) for cell in frame[target].tolist()]
    flags = pd.DataFrame({label: [label in s for s in sets] for label in labels}, index=frame.index)
    rest = frame.drop(columns=[c for c in [target, *labels] if c in frame.columns])
    return pd.concat([rest, flags], axis=1)


def _as_flags(data: TargetData) -> Targets:
    [target] = data.targets
    labels = sorted({label for cell in data.train[target].tolist() for label in split_labels(cell)})
    if not labels:
        raise TrainingInputError(MSG_NO_LABELS.format(target=target, what=f"--data {data.data_path}"))
    clashes = [label for label in labels if label in data.features]
    if clashes:
        raise TrainingInputError(
            MSG_LABEL_IS_FEATURE.format(labels=", ".join(map(repr, clashes)), target=target)
        )
    test = None
    if data.test is not None:
        seen = {label for cell in data.test[target].tolist() for label in split_labels(cell)}
        if unknown := sorted(seen - set(labels)):
            raise TrainingInputError(
                MSG_UNKNOWN_TEST_LABELS.format(
                    what="--test", path=data.test_path, target=target, unknown=", ".join(unknown)
                )
            )
        test = _flags(data.test, target, labels)
    return Targets(y_names=labels, train=_flags(data.train, target, labels), test=test)


def _multi_label_block(y_names: list[str]) -> Any:
    from fastai.data.block import MultiCategoryBlock

    return MultiCategoryBlock(encoded=True, vocab=y_names)


def _multi_label_metrics(dls: Any | None) -> list[Any]:
    from fastai.metrics import ActivationType, accuracy_multi, skm_to_fastai
    from sklearn.metrics import f1_score

    # fastai's F1ScoreMulti, without sklearn's warning for a class never predicted in a small valid set.
    f1_macro = skm_to_fastai(
        f1_score,
        thresh=0.5,
        activation=ActivationType.Sigmoid,
        flatten=False,
        average="macro",
        zero_division=0,
        name="f1_macro",
    )
    return [accuracy_multi, f1_macro]


TARGET_TASKS: dict[Task, TargetTask] = {
    Task.CLASSIFICATION: TargetTask(
        Task.CLASSIFICATION,
        "a column of class labels",
        _as_labels,
        _category_block,
        _classification_metrics,
        "accuracy",
    ),
    Task.MULTI_LABEL: TargetTask(
        Task.MULTI_LABEL,
        f"one column holding each row's labels joined by {LABEL_SEPARATOR!r}",
        _as_flags,
        _multi_label_block,
        _multi_label_metrics,
        "accuracy_multi",
    ),
    Task.REGRESSION: TargetTask(
        Task.REGRESSION,
        "one or several numeric columns",
        _as_numbers,
        _regression_block,
        _regression_metrics,
        "valid_loss",
    ),
}
