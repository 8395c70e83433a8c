"""`fastai-serve train collab`: a plain `collab_learner` export the server recognises, held-out ratings
scored on known users and items with unknown ones counted apart, `items.csv`, the report, the seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from service.cli import main
from service.inference.kinds import recognise
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.loading import load_exported_learner
from service.reports.store import read_report
from service.training.collab import ITEMS_FILE, score_ratings, split_test, train_collab
from service.training.common import TrainResult
from tests.helpers import client_for
from tests.training.conftest import collab_recipe, tiny_ratings


def test_the_export_is_a_collab_learner_the_server_recognises(collab_model: TrainResult) -> None:
    learner_type = recognise(load_exported_learner(collab_model.learner_path).learn)
    assert (learner_type.kind, learner_type.task) == (ModelKind.COLLAB, Task.RATING)
    manifest = json.loads((collab_model.learner_path.parent / "model.json").read_text())
    assert (manifest["kind"], manifest["task"]) == ("collab", "rating")
    assert set(manifest["metrics"]) == {"test_rmse", "test_mae", "test_items", "test_unknown"}


def test_the_report_scores_held_out_ratings_with_a_predicted_vs_actual_plot(
    collab_model: TrainResult,
) -> None:
    folder = collab_model.learner_path.parent
    report = read_report(folder)
    assert report is not None
    assert report["task"] == "rating"
    test = report["test"]
    assert set(test) == {"n", "rmse", "mae", "unknown"}
    held_out = int(round(len(tiny_ratings()) * 0.1))
    assert test["n"] + test["unknown"] == held_out
    assert 0 < test["mae"] <= test["rmse"]
    assert collab_model.metrics["test_rmse"] == round(test["rmse"], 4)
    assert set(report["artifacts"]) == {"loss_curve", "predicted_vs_actual"}
    for name in report["artifacts"]:
        assert (folder / "report" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert len(report["history"]) == 2 and "mae" in report["history"][0]


def test_items_csv_holds_the_titles_of_the_items_the_learner_knows(collab_model: TrainResult) -> None:
    items = pd.read_csv(collab_model.learner_path.parent / ITEMS_FILE)
    assert list(items.columns) == ["movieId", "title", "genres"]  # the id column first
    known = set(list(load_exported_learner(collab_model.learner_path).learn.dls.classes["movieId"])[1:])
    assert set(items["movieId"]) <= known
    assert 999 not in set(items["movieId"])  # titled, never rated
    assert items.set_index("movieId").loc[101, "title"] == "Film 101"


def test_unknown_users_and_items_are_counted_apart_never_scored(collab_model: TrainResult) -> None:
    learn = load_exported_learner(collab_model.learner_path).learn
    recipe = collab_recipe(Path("r.csv"), None, Path("out"))
    user, item = list(learn.dls.classes["userId"])[1], list(learn.dls.classes["movieId"])[1]
    other = list(learn.dls.classes["movieId"])[2]
    frame = pd.DataFrame(
        {
            "userId": [user, 10_000, user, user],
            "movieId": [item, item, 10_001, other],
            "rating": [4.0, 1.0, 1.0, 2.0],
        }
    )
    scores = score_ratings(learn, frame, recipe=recipe)
    assert scores.unknown == 2
    assert scores.evaluation()["n"] == 2
    np.testing.assert_array_equal(scores.actual, [4.0, 2.0])
    dl = learn.dls.test_dl(frame.iloc[[0, 3]][["userId", "movieId"]].copy())
    expected = learn.get_preds(dl=dl)[0].reshape(-1).numpy()
    np.testing.assert_allclose(scores.predicted, expected, atol=1e-6)


def test_the_test_split_is_the_same_for_a_seed_and_disjoint() -> None:
    frame = tiny_ratings()
    train, test = split_test(frame, pct=0.1, seed=7)
    again, test_again = split_test(frame, pct=0.1, seed=7)
    pd.testing.assert_frame_equal(test, test_again)
    assert len(train) + len(test) == len(frame)
    key = ["userId", "movieId"]
    assert not set(map(tuple, train[key].to_numpy())) & set(map(tuple, test[key].to_numpy()))
    assert not split_test(frame, pct=0.1, seed=8)[1].equals(test)


def test_the_same_seed_trains_the_same_weights(
    collab_model: TrainResult, ratings_csv: Path, items_csv: Path, tmp_path: Path
) -> None:
    again = train_collab(collab_recipe(ratings_csv, items_csv, tmp_path / "again"))
    assert again.metrics == collab_model.metrics
    first = load_exported_learner(collab_model.learner_path).learn.model.state_dict()
    second = load_exported_learner(again.learner_path).learn.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_embedding_nn_trains_too(ratings_csv: Path, tmp_path: Path) -> None:
    result = train_collab(
        collab_recipe(ratings_csv, None, tmp_path / "nn", use_nn=True, layers=[8], epochs=1)
    )
    learn = load_exported_learner(result.learner_path).learn
    assert type(learn.model).__name__ == "EmbeddingNN"
    assert recognise(learn).kind is ModelKind.COLLAB
    assert not (tmp_path / "nn" / ITEMS_FILE).exists()  # no --items, no titles


def test_cli_trains_a_recommender(ratings_csv: Path, items_csv: Path, tmp_path: Path) -> None:
    argv = ["train", "collab", "--data", str(ratings_csv), "--items", str(items_csv)]
    argv += ["--store", str(tmp_path), "--name", "films", "--epochs", "1", "--factors", "3", "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "films" / "model.pkl").is_file()
    assert (tmp_path / "films" / ITEMS_FILE).is_file()


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastai-serve: error: "), err
    return lines[0]


def test_cli_refuses_a_column_the_ratings_lack(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    line = _refused(
        capsys, ["train", "collab", "--data", str(ratings_csv), "--user", "who", "--store", str(tmp_path)]
    )
    assert "'who' (--user)" in line and "userId" in line
    assert not any(tmp_path.iterdir())


def test_cli_refuses_a_y_range_upside_down(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    argv = ["train", "collab", "--data", str(ratings_csv), "--y-range", "5", "0", "--store", str(tmp_path)]
    assert "--y-range takes two numbers, low < high" in _refused(capsys, argv)


async def test_the_report_route_serves_the_rating_report(collab_model: TrainResult) -> None:
    folder = collab_model.learner_path.parent
    async for client in client_for(folder.parent):
        answer = await client.get(f"/api/v1/models/{folder.name}/report")
        assert answer.status_code == 200
        body = answer.json()
        assert set(body["test"]) == {"n", "rmse", "mae", "unknown"}
        url = body["artifacts"]["predicted_vs_actual"]
        plot = await client.get(url)
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
