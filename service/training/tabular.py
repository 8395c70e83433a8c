"""Tabular recipe: `tabular_learner` on a CSV (the demo is UCI Adult), held-out test evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.errors import MSG_UNREADABLE_CSV, MSG_UNTRAINED_TASK, TrainingInputError
from service.inference.tabular import TabularPredictor
from service.inference.tasks import Task
from service.training.common import (
    FitOptions,
    TrainResult,
    check_monitor,
    fit,
    publish,
    recipe_dict,
    reseed_loaders,
    score_table,
    seed_everything,
)
from service.training.data import check_columns, check_one_batch, existing_file, first_line
from service.training.tabular_targets import TARGET_TASKS, TargetData, check_targets, choose_task


@dataclass
class TabularRecipe:
    csv: Path
    target: str | list[str]  # one column, or several (a regression of several targets)
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
    test_csv: Path | None = None  # a labelled test file; otherwise `test_pct` of the rows are held out
    max_rows: int | None = None
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)
    task: Task | None = None  # None: --task auto (`tabular_targets.choose_task`)

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)


def read_table(path: Path) -> pd.DataFrame:
    # UCI Adult style files separate values with ", " and mark unknowns with "?".
    return pd.read_csv(path, skipinitialspace=True, na_values=["?"])


def check_inputs(recipe: TabularRecipe) -> None:
    """The CSV(s) exist, parse, and have the target and every named column: before any training."""
    needed = {"--target": recipe.targets, "--cat": recipe.cat_names, "--cont": recipe.cont_names}
    files = [("--data", recipe.csv)] + ([("--test", recipe.test_csv)] if recipe.test_csv else [])
    for what, path in files:
        existing_file(path, what=what)
        try:
            columns = list(pd.read_csv(path, nrows=0, skipinitialspace=True).columns)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            reason = first_line(exc)
            raise TrainingInputError(MSG_UNREADABLE_CSV.format(what=what, path=path, reason=reason)) from exc
        check_columns(path, columns, what=what, needed=needed)


def split_indices(n: int, *, pct: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * pct))
    return np.sort(order[cut:]), np.sort(order[:cut])


def _train_and_test(recipe: TabularRecipe) -> tuple[pd.DataFrame, pd.DataFrame | None, str | None]:
    df = read_table(recipe.csv)
    if recipe.max_rows:
        df = df.iloc[: recipe.max_rows]
    df = df.reset_index(drop=True)
    if recipe.test_csv is not None:
        return df, read_table(recipe.test_csv), recipe.test_csv.name
    if recipe.test_pct <= 0:
        return df, None, None
    # The test rows are cut off before fastai sees the data: never used for training or for choosing epochs.
    keep, test_idx = split_indices(len(df), pct=recipe.test_pct, seed=recipe.seed)
    source = f"{len(test_idx)} rows held out of {recipe.csv.name} (seed {recipe.seed})"
    return df.iloc[keep].reset_index(drop=True), df.iloc[test_idx].reset_index(drop=True), source


def tabular_summary(dls: Any, task: Task) -> str:
    """fastai has no DataBlock for tabular data; this is the same information as text."""
    procs = ", ".join(type(p).__name__ for p in dls.procs)
    categorify = getattr(dls.procs, "categorify", None)
    normalize = getattr(dls.procs, "normalize", None)
    lines = [
        f"TabularPandas: {len(dls.train_ds)} training rows, {len(dls.valid_ds)} validation rows",
        f"procs: {procs}",
        f"target ({task.value}): {', '.join(map(str, dls.y_names))}{_outcomes(dls)}",
        "categorical columns (categories incl. #na#):",
        *(f"  {c}: {len(categorify.classes[c]) if categorify else '?'}" for c in dls.cat_names),
        "continuous columns (mean, std after FillMissing):",
        *(
            f"  {c}: {float(normalize.means[c]):.4g}, {float(normalize.stds[c]):.4g}"
            if normalize
            else f"  {c}"
            for c in dls.cont_names
        ),
    ]
    x_cat, x_cont, _ = dls.one_batch()
    lines.append(f"batch size {dls.bs}; one batch: x_cat {tuple(x_cat.shape)}, x_cont {tuple(x_cont.shape)}")
    return "\n".join(lines)


def _outcomes(dls: Any) -> str:
    """A classifier's classes (multi_label: its labels); a regression has none."""
    vocab = getattr(dls, "vocab", None)
    return f" -> classes {list(map(str, vocab))}" if vocab is not None else ""


def _with_task(recipe: TabularRecipe, task: Task) -> TabularRecipe:
    """The recipe for `task`, watching the task's own metric unless --monitor names one it records."""
    if task not in TARGET_TASKS:
        raise TrainingInputError(MSG_UNTRAINED_TASK.format(task=task, tasks=", ".join(TARGET_TASKS)))
    entry = TARGET_TASKS[task]
    recipe = replace(recipe, task=task, fit=recipe.fit.resolved(entry.monitor))
    check_monitor(recipe.fit.watched, entry.metrics(None))  # the names do not depend on the data
    return recipe


# Training rows the drift reference is profiled on (a sample: quantiles and shares settle long before).
REFERENCE_ROWS = 5000


def table_reference(predictor: TabularPredictor, frame: pd.DataFrame) -> list[tuple[Any, np.ndarray]]:
    """A sample of the training rows through the exported model, for the drift reference."""
    sample = frame.sample(n=min(REFERENCE_ROWS, len(frame)), random_state=0)[predictor.spec.column_names]
    prepared = predictor.prepare_frame(sample, filename="training rows")
    return [(prepared, predictor.forward_many([prepared])[0])]


def train_tabular(recipe: TabularRecipe) -> TrainResult:
    from fastai.tabular.all import (
        Categorify,
        FillMissing,
        Normalize,
        TabularDataLoaders,
        tabular_config,
        tabular_learner,
    )

    if recipe.task is not None:  # asked for: an unknown --monitor is refused before any data is read
        _with_task(recipe, recipe.task)
    check_inputs(recipe)
    train_df, test_df, test_source = _train_and_test(recipe)
    task = choose_task(train_df, recipe.targets, recipe.task)
    recipe, entry = _with_task(recipe, task), TARGET_TASKS[task]
    given = TargetData(
        train=train_df,
        test=test_df,
        targets=recipe.targets,
        features=[*recipe.cat_names, *recipe.cont_names],
        data_path=recipe.csv,
        test_path=recipe.test_csv,
    )
    check_targets(given, entry)
    targets = entry.prepare(given)
    train_df, test_df = targets.train, targets.test
    _, valid_idx = split_indices(len(train_df), pct=recipe.valid_pct, seed=recipe.seed + 1)

    seed_everything(recipe.seed)
    dls = TabularDataLoaders.from_df(
        train_df,
        path=recipe.out_dir,
        procs=[Categorify, FillMissing, Normalize],
        # Copies: FillMissing appends its `_na` flags to the list it is given.
        cat_names=list(recipe.cat_names),
        cont_names=list(recipe.cont_names),
        y_names=targets.y_names,
        y_block=entry.y_block(targets.y_names),
        valid_idx=list(valid_idx),
        bs=recipe.bs,
        num_workers=0,
    )
    reseed_loaders(dls, recipe.seed)
    check_one_batch(dls, items="rows", bs=recipe.bs)
    learn = tabular_learner(
        dls,
        layers=recipe.layers,
        config=tabular_config(ps=recipe.ps) if recipe.ps else None,
        wd=recipe.wd,
        metrics=entry.metrics(dls),
        y_range=targets.y_range,
    )
    seconds, outcome = fit(learn, epochs=recipe.epochs, lr=recipe.lr, options=recipe.fit)
    target_text = ", ".join(recipe.targets)
    return publish(
        learn,
        predictor_type=TabularPredictor,
        out_dir=recipe.out_dir,
        outcome=outcome,
        seconds=seconds,
        seed=recipe.seed,
        score_test=lambda predictor: (
            score_table(predictor, test_df, source=test_source)
            if test_df is not None and test_source is not None
            else None
        ),
        description=recipe.description
        or f"tabular_learner on {recipe.csv.name} predicting {target_text} ({entry.task.value})",
        augmented=False,
        datablock_summary=tabular_summary(dls, entry.task),
        recipe=recipe_dict(recipe),
        reference=lambda predictor: table_reference(predictor, train_df),
    )
