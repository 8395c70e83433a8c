"""Tabular recipe: `tabular_learner` on a CSV (the demo is UCI Adult), held-out test evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.training.common import TrainResult, export_model, held_out_accuracy, seed_everything


@dataclass
class TabularRecipe:
    csv: Path
    target: str
    cat_names: list[str]
    cont_names: list[str]
    out_dir: Path
    layers: list[int] = field(default_factory=lambda: [200, 100])
    epochs: int = 4
    lr: float = 1e-2
    wd: float | None = None
    ps: float | None = None
    bs: int = 256
    seed: int = 42
    valid_pct: float = 0.2
    test_pct: float = 0.2
    max_rows: int | None = None
    description: str = ""


def read_table(path: Path) -> pd.DataFrame:
    # UCI Adult style files separate values with ", " and mark unknowns with "?".
    return pd.read_csv(path, skipinitialspace=True, na_values=["?"])


def split_indices(n: int, *, pct: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * pct))
    return np.sort(order[cut:]), np.sort(order[:cut])


def train_tabular(recipe: TabularRecipe) -> TrainResult:
    from fastai.metrics import Precision, Recall, accuracy
    from fastai.tabular.all import (
        Categorify,
        FillMissing,
        Normalize,
        TabularDataLoaders,
        tabular_config,
        tabular_learner,
    )

    df = read_table(recipe.csv)
    if recipe.max_rows:
        df = df.iloc[: recipe.max_rows]
    df = df.reset_index(drop=True)
    keep, test_idx = split_indices(len(df), pct=recipe.test_pct, seed=recipe.seed)
    train_df, test_df = df.iloc[keep].reset_index(drop=True), df.iloc[test_idx].reset_index(drop=True)
    _, valid_idx = split_indices(len(train_df), pct=recipe.valid_pct, seed=recipe.seed + 1)

    seed_everything(recipe.seed)
    dls = TabularDataLoaders.from_df(
        train_df,
        path=recipe.out_dir,
        procs=[Categorify, FillMissing, Normalize],
        # Copies: FillMissing appends its `_na` flags to the list it is given.
        cat_names=list(recipe.cat_names),
        cont_names=list(recipe.cont_names),
        y_names=recipe.target,
        valid_idx=list(valid_idx),
        bs=recipe.bs,
    )
    multiclass = len(dls.vocab) > 2
    average = "macro" if multiclass else "binary"
    learn = tabular_learner(
        dls,
        layers=recipe.layers,
        config=tabular_config(ps=recipe.ps) if recipe.ps else None,
        wd=recipe.wd,
        metrics=[accuracy, Precision(average=average), Recall(average=average)],
    )
    started = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(recipe.epochs, recipe.lr)
    seconds = time.perf_counter() - started
    metrics = evaluate_tabular(learn, test_df)
    path = export_model(
        learn,
        out_dir=recipe.out_dir,
        kind="tabular",
        description=recipe.description or f"tabular_learner on {recipe.csv.name} predicting {recipe.target}",
        metrics=metrics,
        extra={"train_seconds": round(seconds, 2), "seed": recipe.seed},
    )
    return TrainResult(
        name=recipe.out_dir.name, kind="tabular", learner_path=path, metrics=metrics, train_seconds=seconds
    )


def evaluate_tabular(learn: Any, test_df: pd.DataFrame) -> dict[str, float]:
    """Accuracy on rows the learner never saw (not the validation set it was tuned on)."""
    return {"test_accuracy": held_out_accuracy(learn, test_df), "test_rows": float(len(test_df))}
