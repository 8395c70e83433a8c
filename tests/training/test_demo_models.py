"""The collab and segmentation demo models `make models` builds: their held-out numbers meet the targets of
issue 22 (each test runs once its model is in the store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from service.cli import DEMO_COLLAB, DEMO_SEGMENTATION
from service.inference.kinds import recognise
from service.loading import load_exported_learner
from service.training.collab import ITEMS_FILE
from service.training.shapes import CODES

STORE = Path(__file__).resolve().parents[2] / "model_store"
# The targets. The recipes beat them by more than float noise across CPUs (README's recipe table).
MAX_RMSE = 0.845
MIN_MEAN_IOU = 0.90


def _built(name: str) -> dict[str, Any]:
    if not (STORE / name / "model.pkl").is_file():
        pytest.skip(f"demo model {name} not built: run `make models` (make test does)")
    return dict(json.loads((STORE / name / "model.json").read_text()))


def test_the_recommender_beats_the_target_rmse_on_held_out_ratings() -> None:
    manifest = _built(DEMO_COLLAB)
    assert manifest["metrics"]["test_rmse"] <= MAX_RMSE
    assert manifest["metrics"]["test_items"] > 9000  # ~10% of the ratings, known users and items
    assert (manifest["kind"], manifest["task"]) == ("collab", "rating")


def test_the_recommender_names_its_movies() -> None:
    _built(DEMO_COLLAB)
    items = pd.read_csv(STORE / DEMO_COLLAB / ITEMS_FILE)
    assert list(items.columns[:2]) == ["movieId", "title"]
    assert items.set_index("movieId").loc[1, "title"] == "Toy Story (1995)"


def test_the_shapes_model_beats_the_target_mean_iou_on_its_test_split() -> None:
    manifest = _built(DEMO_SEGMENTATION)
    assert manifest["metrics"]["test_mean_iou"] >= MIN_MEAN_IOU
    assert manifest["classes"] == CODES
    learner_type = recognise(load_exported_learner(STORE / DEMO_SEGMENTATION / "model.pkl").learn)
    assert str(learner_type) == "vision segmentation"
