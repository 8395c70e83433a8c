"""`fastai-serve feedback export NAME`: the logged inputs of every prediction that got feedback, with its
true answer under the model's own target column, as a CSV `fastai-serve train` takes: the loop from
serving back to training.

Per kind, the input columns (`EXPORT_INPUTS`: tabular its schema's columns, text `text`, collab `user`
and `item`); per task, the truth columns (`EXPORT_TRUTH`: the learner's target name for a class, a value
or a rating; one true/false column per class for a tabular multi-label learner, whose targets are those
columns; `a;b` labels for a text one). Images are not exported: the log keeps their sha256, not pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from service.errors import MSG_EXPORT_EMPTY, MSG_EXPORT_KIND, MSG_EXPORT_NO_MODEL, CliInputError
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.monitoring.feedback import read_feedback
from service.monitoring.payload import read_log


def _tabular_inputs(predictor: Any) -> list[str]:
    return list(predictor.spec.column_names)


EXPORT_INPUTS: dict[ModelKind, Callable[[Any], list[str]]] = {
    ModelKind.TABULAR: _tabular_inputs,
    ModelKind.TEXT: lambda predictor: ["text"],
    ModelKind.COLLAB: lambda predictor: ["user", "item"],
}


def _target(predictor: Any) -> str:
    """The learner's own name for its one target: tabular `y_names`, text its label column, collab its
    rating column."""
    spec = getattr(predictor, "spec", None)
    if spec is not None:
        return str(spec.target)
    return str(getattr(predictor, "target_column", None) or predictor.head.targets[0])


def _classes(predictor: Any, joined: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({_target(predictor): joined["label"]})


def _labels(predictor: Any, joined: pd.DataFrame) -> pd.DataFrame:
    labels = joined["labels"].fillna("").str.split(";")
    if getattr(predictor, "spec", None) is not None:  # a tabular learner's targets are its classes' columns
        return pd.DataFrame({c: labels.map(lambda found, c=c: c in found) for c in predictor.head.classes})
    return pd.DataFrame({_target(predictor): joined["labels"]})


def _values(predictor: Any, joined: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({t: joined[f"value_{t}"] for t in predictor.head.targets})


def _ratings(predictor: Any, joined: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({_target(predictor): joined["rating"]})


EXPORT_TRUTH: dict[Task, Callable[[Any, pd.DataFrame], pd.DataFrame]] = {
    Task.CLASSIFICATION: _classes,
    Task.MULTI_LABEL: _labels,
    Task.REGRESSION: _values,
    Task.RATING: _ratings,
}


@dataclass(frozen=True)
class Exported:
    path: Path
    rows: int
    columns: list[str]


def export_feedback(*, name: str, store: Path, log_dir: Path, out: Path) -> Exported:
    """Join `name`'s payload log with its feedback by id and write the training CSV to `out`."""
    from service.inference.kinds import BuildOptions, recognise
    from service.loading import find_learner_file, load_exported_learner

    path = find_learner_file(store / name)
    if path is None:
        raise CliInputError(MSG_EXPORT_NO_MODEL.format(name=name, store=store))
    learn = load_exported_learner(path).learn
    predictor = recognise(learn).build(learn, BuildOptions(folder=store / name))  # type: ignore[misc]
    inputs, truth = EXPORT_INPUTS.get(predictor.kind), EXPORT_TRUTH.get(predictor.head.task)
    if inputs is None or truth is None:
        raise CliInputError(
            MSG_EXPORT_KIND.format(name=name, kind=predictor.kind.value, task=predictor.head.task.value)
        )
    logged = read_log(log_dir, model=name).to_pandas()
    feedback = read_feedback(log_dir, name).drop(columns=["ts"], errors="ignore")
    joined = logged.merge(feedback, on="id", how="inner") if len(logged) else logged
    if not len(joined):
        raise CliInputError(MSG_EXPORT_EMPTY.format(name=name, folder=log_dir))
    frame = pd.concat([joined[inputs(predictor)], truth(predictor, joined)], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return Exported(out, len(frame), [str(c) for c in frame.columns])
