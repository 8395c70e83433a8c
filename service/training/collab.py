"""Collab recipe: `collab_learner` on a ratings CSV (the demo is MovieLens ml-latest-small), scored on
held-out ratings of users and items the learner knows; ratings of unknown ones are counted apart (a served
recommender answers `null` for them, never the untrained `#na#` embedding's number)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from service.errors import MSG_UNREADABLE_CSV, TrainingInputError
from service.inference.collab import CollabPredictor
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.loading import load_exported_learner, prepare_for_serving
from service.training.common import (
    FitOptions,
    TrainResult,
    check_monitor,
    export_learner,
    fit,
    recipe_dict,
    reference_parts,
    reseed_loaders,
    sampled,
    seed_everything,
    write_manifest,
    write_reference,
)
from service.training.data import DATA_DIR, check_columns, check_one_batch, existing_file, first_line
from service.training.reporting import write_scored_report

MOVIELENS = DATA_DIR / "movielens_small"
DEMO_RATINGS = MOVIELENS / "ratings.csv.gz"
DEMO_ITEMS = MOVIELENS / "movies.csv.gz"
ITEMS_FILE = "items.csv"  # id -> title and other columns, beside the export: what the serving side shows
SCATTER_POINTS = 4000


@dataclass
class CollabRecipe:
    ratings: Path  # a CSV (or .csv.gz) with a user, an item and a rating column
    out_dir: Path
    items: Path | None = None  # a CSV of item titles (its --item column, a title, others): items.csv
    user: str = "userId"
    item: str = "movieId"
    rating: str = "rating"
    use_nn: bool = False  # EmbeddingNN instead of the dot product (EmbeddingDotBias)
    factors: int = 50  # the dot product's embedding width
    layers: list[int] = field(default_factory=lambda: [100])  # EmbeddingNN's hidden layers
    y_range: tuple[float, float] | None = (0.0, 5.5)
    epochs: int = 5
    lr: float = 5e-3
    wd: float = 0.1
    bs: int = 64
    seed: int = 42
    valid_pct: float = 0.1
    test_pct: float = 0.1
    max_rows: int | None = None
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)


@dataclass
class RatingScores:
    """The exported learner's predictions for the held-out ratings of known users and items."""

    actual: np.ndarray
    predicted: np.ndarray
    unknown: int

    def evaluation(self) -> dict[str, Any]:
        """API.md's rating `Evaluation`: `{"n", "rmse", "mae", "unknown"}`."""
        error = self.predicted.astype(np.float64) - self.actual.astype(np.float64)
        n = len(error)
        return {
            "n": n,
            "rmse": float(np.sqrt(np.mean(error**2))) if n else None,  # null: no known pair to score
            "mae": float(np.mean(np.abs(error))) if n else None,
            "unknown": self.unknown,
        }


def _columns(path: Path, *, what: str) -> list[str]:
    existing_file(path, what=what)
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        reason = first_line(exc)
        raise TrainingInputError(MSG_UNREADABLE_CSV.format(what=what, path=path, reason=reason)) from exc


def check_inputs(recipe: CollabRecipe) -> None:
    """The files exist, parse and have the named columns: refused before any training."""
    columns = _columns(recipe.ratings, what="--data")
    needed = {"--user": [recipe.user], "--item": [recipe.item], "--rating": [recipe.rating]}
    check_columns(recipe.ratings, columns, what="--data", needed=needed)
    if recipe.items is not None:
        item_columns = _columns(recipe.items, what="--items")
        check_columns(recipe.items, item_columns, what="--items", needed={"--item": [recipe.item]})


def read_ratings(recipe: CollabRecipe) -> pd.DataFrame:
    frame = pd.read_csv(recipe.ratings, usecols=[recipe.user, recipe.item, recipe.rating])
    frame = frame.dropna()
    return frame.iloc[: recipe.max_rows] if recipe.max_rows else frame


def split_test(frame: pd.DataFrame, *, pct: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held out before fastai sees the data (never trained on, never used to pick an epoch); the same rows
    for the same seed."""
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(round(len(frame) * pct))
    test, train = np.sort(order[:cut]), np.sort(order[cut:])
    return frame.iloc[train].reset_index(drop=True), frame.iloc[test].reset_index(drop=True)


def known_mask(learn: Any, frame: pd.DataFrame, *, user: str, item: str) -> np.ndarray:
    """Rows whose user and item both have a trained embedding (index 0 is `#na#`, never trained)."""
    classes = learn.dls.classes
    users, items = set(list(classes[user])[1:]), set(list(classes[item])[1:])
    return np.asarray(frame[user].isin(users) & frame[item].isin(items))


def score_ratings(learn: Any, test: pd.DataFrame, *, recipe: CollabRecipe) -> RatingScores:
    """The learner's predictions (y_range included: it is inside the model) for the known test pairs."""
    known = known_mask(learn, test, user=recipe.user, item=recipe.item)
    rows = test[known]
    dl = learn.dls.test_dl(rows[[recipe.user, recipe.item]].copy(), num_workers=0)
    # The model batch by batch, as get_preds runs it (fastai's get_preds fails on a single row).
    learn.model.eval()
    with torch.no_grad():
        parts = [learn.model(*batch[: learn.dls.n_inp]).reshape(-1) for batch in dl]
    predicted = torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)
    return RatingScores(
        actual=rows[recipe.rating].to_numpy(np.float32),
        predicted=predicted,
        unknown=int((~known).sum()),
    )


def plot_predicted_vs_actual(scores: RatingScores, path: Path, *, rating: str) -> None:
    """Ratings come in steps (half stars): the spread of predictions per actual rating, as boxes, with a
    jittered sample of the pairs behind them and the line a perfect model would sit on."""
    evaluation = scores.evaluation()
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    values = np.unique(scores.actual)
    if len(values):
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(scores.actual))[:SCATTER_POINTS]
        jitter = rng.uniform(-0.12, 0.12, len(keep))
        ax.scatter(scores.actual[keep] + jitter, scores.predicted[keep], s=4, alpha=0.25, color="tab:blue")
        groups = [scores.predicted[scores.actual == v] for v in values]
        ax.boxplot(groups, positions=values, widths=0.3, showfliers=False, manage_ticks=False)
        low, high = float(values.min()), float(values.max())
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xlabel(f"actual {rating}")
    ax.set_ylabel(f"predicted {rating}")
    ax.set_title(
        f"predicted vs actual (n={evaluation['n']} known pairs, RMSE {evaluation['rmse'] or 0:.3f}, "
        f"MAE {evaluation['mae'] or 0:.3f}; {evaluation['unknown']} unknown)",
        fontsize=10,
    )
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def write_items(recipe: CollabRecipe, learn: Any, out_dir: Path) -> int:
    """`items.csv`: the titles file's rows for the items the learner knows, the item id column first."""
    if recipe.items is None:
        return 0
    items = pd.read_csv(recipe.items)
    known = set(list(learn.dls.classes[recipe.item])[1:])
    items = items[items[recipe.item].isin(known)].drop_duplicates(subset=[recipe.item])
    ordered = items[[recipe.item, *(c for c in items.columns if c != recipe.item)]]
    tmp = out_dir / (ITEMS_FILE + ".tmp")
    ordered.to_csv(tmp, index=False)
    tmp.replace(out_dir / ITEMS_FILE)
    return len(ordered)


def _learner(recipe: CollabRecipe, dls: Any, metrics: list[Any]) -> Any:
    from fastai.collab import collab_learner

    shape: dict[str, Any] = (
        {"use_nn": True, "layers": list(recipe.layers)} if recipe.use_nn else {"n_factors": recipe.factors}
    )
    return collab_learner(dls, y_range=recipe.y_range, metrics=metrics, wd=recipe.wd, **shape)


def train_collab(recipe: CollabRecipe) -> TrainResult:
    from fastai.collab import CollabDataLoaders
    from fastai.metrics import mae, rmse

    metrics = [rmse, mae]
    recipe = replace(recipe, fit=recipe.fit.resolved("valid_loss"))
    check_monitor(recipe.fit.watched, metrics)
    check_inputs(recipe)
    train, test = split_test(read_ratings(recipe), pct=recipe.test_pct, seed=recipe.seed)
    seed_everything(recipe.seed)
    dls = CollabDataLoaders.from_df(
        train,
        valid_pct=recipe.valid_pct,
        seed=recipe.seed,
        user_name=recipe.user,
        item_name=recipe.item,
        rating_name=recipe.rating,
        bs=recipe.bs,
        num_workers=0,
    )
    reseed_loaders(dls, recipe.seed)
    check_one_batch(dls, items="ratings", bs=recipe.bs)
    learn = _learner(recipe, dls, metrics)
    seconds, outcome = fit(learn, epochs=recipe.epochs, lr=recipe.lr, options=recipe.fit)
    out_dir = recipe.out_dir
    path = export_learner(learn, out_dir)
    pairs = sampled(list(zip(train[recipe.user], train[recipe.item], strict=True)))
    write_reference(out_dir, path, CollabPredictor, lambda p: reference_parts(p, p.prepare(pairs)))
    # Scored from the exported file as a server loads it: what the store holds, not the training object.
    served = prepare_for_serving(load_exported_learner(path).learn, torch.device("cpu"))
    scores = score_ratings(served, test, recipe=recipe)
    evaluation = scores.evaluation()
    n_items = write_items(recipe, served, out_dir)
    metrics_out = {
        **{f"test_{k}": round(evaluation[k], 4) for k in ("rmse", "mae") if evaluation[k] is not None},
        "test_items": float(evaluation["n"]),
        "test_unknown": float(evaluation["unknown"]),
    }
    model = "EmbeddingNN" if recipe.use_nn else f"EmbeddingDotBias ({recipe.factors} factors)"
    write_manifest(
        out_dir,
        kind=ModelKind.COLLAB,
        description=recipe.description or f"collab_learner, {model}, on {recipe.ratings.name}",
        metrics=metrics_out,
        extra={
            "task": Task.RATING.value,
            "classes": [],
            "targets": [recipe.rating],
            "train_seconds": round(seconds, 2),
            "seed": recipe.seed,
            "user": recipe.user,
            "item": recipe.item,
            "items_file": ITEMS_FILE if n_items else None,
        },
    )
    source = f"{len(test)} ratings held out of {recipe.ratings.name} (seed {recipe.seed})"
    report_dir = write_scored_report(
        out_dir,
        learn=learn,
        outcome=outcome,
        task=Task.RATING,
        seed=recipe.seed,
        train_seconds=seconds,
        test=evaluation,
        test_source=source,
        plots={
            "predicted_vs_actual": lambda p: plot_predicted_vs_actual(scores, p, rating=recipe.rating),
        },
        recipe=recipe_dict(recipe, model=model),
    )
    return TrainResult(
        name=out_dir.name,
        kind=ModelKind.COLLAB,
        learner_path=path,
        metrics=metrics_out,
        train_seconds=seconds,
        report_dir=report_dir,
        learn=learn,
    )
