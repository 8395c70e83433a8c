"""Tiny real collab learners (`collab_learner`, both models) trained in a second on a few hundred synthetic
ratings; the conftest builds them once per session into a store. Tests name them here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.tiny import _quiet

COLLAB_DOT = "ratings-dot"  # EmbeddingDotBias, integer user ids, text item ids, with items.csv titles
COLLAB_NN = "ratings-nn"  # EmbeddingNN (use_nn=True), text user ids, integer item ids
COLLAB_MODELS = [COLLAB_DOT, COLLAB_NN]
Y_RANGE = (0.0, 5.5)
N_USERS, N_ITEMS, N_RATINGS = 24, 40, 400


def ratings(*, text_users: bool, seed: int = 0) -> pd.DataFrame:
    """Synthetic ratings with structure a tiny model can pick up: each user likes one of three genres."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, N_USERS, N_RATINGS)
    items = rng.integers(0, N_ITEMS, N_RATINGS)
    liked = (users % 3 == items % 3).astype(np.float64)
    rating = np.clip(2.0 + 2.5 * liked + rng.normal(0, 0.5, N_RATINGS), 0.5, 5.0).round(1)
    if text_users:
        return pd.DataFrame({"reader": [f"u{u}" for u in users], "book": items, "stars": rating})
    return pd.DataFrame({"userId": users, "movieId": [f"m{i}" for i in items], "rating": rating})


def collab(frame: pd.DataFrame, *, use_nn: bool) -> Any:
    from fastai.collab import CollabDataLoaders, collab_learner

    dls = CollabDataLoaders.from_df(frame, bs=64, seed=0)
    options: dict[str, Any] = {"use_nn": True, "layers": [8]} if use_nn else {}
    learn = _quiet(collab_learner(dls, n_factors=4, y_range=Y_RANGE, **options))
    learn.fit_one_cycle(3, 5e-2)
    return learn


def items_csv(frame: pd.DataFrame) -> str:
    """Titles for the dot model's items (and one the learner never saw), other columns beside."""
    items = sorted(set(frame["movieId"]))
    rows = [f"{item},Film {item[1:]},genre {int(item[1:]) % 3}" for item in items]
    return "\n".join(["movieId,title,genres", *rows, "m999,Never Rated,none"]) + "\n"


def title_of(item: str) -> str:
    return f"Film {item[1:]}"


def build_collab_learners(store: Path) -> None:
    """Both tiny collab learners exported into `store/<name>/model.pkl` (the dot one with items.csv)."""
    dot_frame = ratings(text_users=False)
    for name, frame, use_nn in ((COLLAB_DOT, dot_frame, False), (COLLAB_NN, ratings(text_users=True), True)):
        (store / name).mkdir(parents=True, exist_ok=True)
        collab(frame, use_nn=use_nn).export(store / name / "model.pkl")
    (store / COLLAB_DOT / "items.csv").write_text(items_csv(dot_frame))
