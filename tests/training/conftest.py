"""Fixtures of the collab and segmentation recipes: tiny data and models trained once per session, in
seconds (synthetic ratings with a pattern to learn; a few dozen generated shapes at 32 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.training.collab import CollabRecipe, train_collab
from service.training.common import FitOptions, TrainResult
from service.training.segmentation import SegmentationRecipe, train_segmentation

TINY_COLLAB = "tiny-recommender"
TINY_SEGMENTATION = "tiny-shapes"
N_USERS, N_ITEMS = 40, 30


def tiny_ratings(seed: int = 0) -> pd.DataFrame:
    """Ratings of 40 users for 30 items from two hidden tastes (so an epoch learns something), on the
    MovieLens columns, with half-star steps between 0.5 and 5."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(N_USERS, 2)), rng.normal(size=(N_ITEMS, 2))
    pairs = [(u, i) for u in range(N_USERS) for i in range(N_ITEMS) if rng.random() < 0.5]
    score = np.array([users[u] @ items[i] for u, i in pairs])
    rating = np.clip(np.round((3.0 + score) * 2) / 2, 0.5, 5.0)
    return pd.DataFrame(
        {
            "userId": [u + 1 for u, _ in pairs],
            "movieId": [100 + i for _, i in pairs],
            "rating": rating,
            "timestamp": 0,
        }
    )


def tiny_items() -> pd.DataFrame:
    # Titles for every item but one (a title file need not cover them all), and one the ratings never name.
    ids = [100 + i for i in range(1, N_ITEMS)] + [999]
    return pd.DataFrame({"title": [f"Film {i}" for i in ids], "movieId": ids, "genres": ["Drama"] * len(ids)})


@pytest.fixture(scope="session")
def ratings_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("collab-data") / "ratings.csv"
    tiny_ratings().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def items_csv(ratings_csv: Path) -> Path:
    path = ratings_csv.parent / "movies.csv"
    tiny_items().to_csv(path, index=False)
    return path


def collab_recipe(ratings: Path, items: Path | None, out_dir: Path, **overrides: object) -> CollabRecipe:
    values: dict[str, object] = {
        "ratings": ratings,
        "items": items,
        "out_dir": out_dir,
        "factors": 4,
        "epochs": 2,
        "lr": 3e-2,
        "bs": 32,
        "fit": FitOptions(quiet=True),
        **overrides,
    }
    return CollabRecipe(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def collab_model(tmp_path_factory: pytest.TempPathFactory, ratings_csv: Path, items_csv: Path) -> TrainResult:
    store = tmp_path_factory.mktemp("collab-store")
    return train_collab(collab_recipe(ratings_csv, items_csv, store / TINY_COLLAB))


def segmentation_recipe(out_dir: Path, **overrides: object) -> SegmentationRecipe:
    values: dict[str, object] = {
        "out_dir": out_dir,
        "n_images": 40,
        "size": 32,
        "epochs": 1,
        "bs": 8,
        "valid_pct": 0.2,
        "test_pct": 0.2,
        "fit": FitOptions(quiet=True),
        **overrides,
    }
    return SegmentationRecipe(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def segmentation_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    store = tmp_path_factory.mktemp("segmentation-store")
    return train_segmentation(segmentation_recipe(store / TINY_SEGMENTATION))
