"""`fastai-serve train tabular` per task: regression (one and two targets) and multi-label from the repo's
adult data, their manifests, reports and plots as the API serves them, and the refusals of a target that
does not fit the task."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import mean_absolute_error, precision_recall_fscore_support, r2_score

from service.cli import TABULAR_TASKS, main
from service.errors import (
    MSG_LABEL_IS_FEATURE,
    MSG_NO_LABELS,
    MSG_TARGET_IS_FEATURE,
    MSG_TASK_NOT_NUMERIC,
    MSG_TASK_ONE_TARGET,
    MSG_UNKNOWN_TEST_LABELS,
)
from service.inference.tasks import Task
from service.reports.store import read_report
from service.reports.writer import TASK_PLOTS, lower_is_better
from service.training import data
from service.training.tabular import read_table, split_indices
from service.training.tabular_targets import TARGET_TASKS, choose_task, split_labels
from tests.helpers import client_for, problem

HOURS, HOURS_AGE, TAGS = "hours", "hours-age", "tags"
TAG_NAMES = ["long_hours", "married", "rich"]
SEED = 42  # the CLI's default: which rows are held out for the test set
FAST = ["--epochs", "2", "--bs", "64", "--layers", "16", "--quiet"]
TASK_ARGS = {
    HOURS: ["--target", "hours-per-week", "--monitor", "rmse", "--save-best"],  # auto: numeric, many values
    HOURS_AGE: ["--target", "hours-per-week", "age"],  # several targets: a regression
    TAGS: ["--target", "tags", "--task", "multi_label"],
}
EXPECTED_ARTIFACTS = {
    HOURS: {"loss_curve", "predicted_vs_actual", "residuals", "top_losses"},
    HOURS_AGE: {"loss_curve", "predicted_vs_actual", "residuals", "top_losses"},
    TAGS: {"loss_curve", "per_class_scores", "f1_vs_threshold", "top_losses"},
}


def tags_of(row: pd.Series) -> str:
    tags = [
        "long_hours" if row["hours-per-week"] > 40 else "",
        "married" if str(row["marital-status"]).startswith("Married") else "",
        "rich" if ">50K" in str(row[data.ADULT_TARGET]) else "",
    ]
    return ";".join(t for t in tags if t)


@pytest.fixture(scope="module")
def tags_csv(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    """500 adult rows with a `tags` column: each row's labels joined by ';' (some rows have none)."""
    frame = adult_frame.iloc[:500].copy()
    frame["tags"] = frame.apply(tags_of, axis=1)
    path = tmp_path_factory.mktemp("tasks") / "adult-tags.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def task_models(tmp_path_factory: pytest.TempPathFactory, tags_csv: Path) -> Path:
    """The three models trained through the CLI, as a user would, into one store."""
    store = tmp_path_factory.mktemp("task-models")
    for name, args in TASK_ARGS.items():
        argv = ["train", "tabular", "--data", str(tags_csv), *FAST, *args]
        assert main([*argv, "--store", str(store), "--name", name]) == 0
    return store


@pytest.fixture(scope="module")
async def task_models_client(task_models: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(task_models):
        yield c


def _report(store: Path, name: str) -> dict[str, Any]:
    report = read_report(store / name)
    assert report is not None
    return report


def _test_rows(csv: Path) -> pd.DataFrame:
    """The rows the recipe held out for its test set (same split, same seed)."""
    frame = read_table(csv)
    _, test_idx = split_indices(len(frame), pct=0.2, seed=SEED)
    return frame.iloc[test_idx].reset_index(drop=True)


def _fastai_outputs(model: Path, rows: pd.DataFrame) -> np.ndarray:
    from fastai.learner import load_learner

    learn = load_learner(model / "model.pkl")
    with learn.no_bar(), learn.no_logging():
        outputs, _ = learn.get_preds(dl=learn.dls.test_dl(rows))
    return np.asarray(outputs, dtype=np.float64)


# -- what was trained, and its report -------------------------------------------------------------------


def test_a_regression_of_one_target(task_models: Path, tags_csv: Path) -> None:
    manifest = json.loads((task_models / HOURS / "model.json").read_text())
    assert manifest["task"] == "regression" and manifest["kind"] == "tabular"
    assert manifest["targets"] == ["hours-per-week"] and manifest["classes"] == []
    assert {"test_rmse", "test_mae", "test_r2", "test_items"} <= set(manifest["metrics"])
    report = _report(task_models, HOURS)
    assert report["task"] == "regression" and report["monitor"] == "rmse"
    rmse = [row["rmse"] for row in report["history"]]
    assert report["best_epoch"] == int(np.argmin(rmse))  # lower is better for an error metric
    # The test scores are fastai's own predictions on the held-out rows, scored per target.
    rows = _test_rows(tags_csv)
    predicted = _fastai_outputs(task_models / HOURS, rows)[:, 0]
    actual = rows["hours-per-week"].to_numpy(dtype=np.float64)
    scores = report["test"]["targets"]["hours-per-week"]
    assert report["test"]["n"] == len(rows) == 100
    assert scores["rmse"] == pytest.approx(float(np.sqrt(((predicted - actual) ** 2).mean())), abs=1e-3)
    assert scores["mae"] == pytest.approx(mean_absolute_error(actual, predicted), abs=1e-3)
    assert scores["r2"] == pytest.approx(r2_score(actual, predicted), abs=1e-4)
    assert "-> classes" not in report["datablock_summary"] and "regression" in report["datablock_summary"]


def test_a_regression_of_two_targets(task_models: Path, tags_csv: Path) -> None:
    manifest = json.loads((task_models / HOURS_AGE / "model.json").read_text())
    assert manifest["task"] == "regression" and manifest["targets"] == ["hours-per-week", "age"]
    assert {"test_rmse_hours-per-week", "test_rmse_age", "test_r2_age"} <= set(manifest["metrics"])
    report = _report(task_models, HOURS_AGE)
    assert report["monitor"] == "valid_loss"  # the regression's default
    assert set(report["history"][0]) >= {"train_loss", "valid_loss", "rmse", "mae", "r2_score"}
    rows = _test_rows(tags_csv).dropna(subset=["age"]).reset_index(drop=True)  # no target: not scored
    predicted = _fastai_outputs(task_models / HOURS_AGE, rows)
    assert report["test"]["n"] == len(rows) < 100
    for i, target in enumerate(["hours-per-week", "age"]):
        actual = rows[target].to_numpy(dtype=np.float64)
        scores = report["test"]["targets"][target]
        assert scores["mae"] == pytest.approx(mean_absolute_error(actual, predicted[:, i]), abs=1e-3)
        assert scores["r2"] == pytest.approx(r2_score(actual, predicted[:, i]), abs=1e-4)
    worst = report["top_losses_rows"][0]
    assert worst["actual"].startswith("hours-per-week=") and "; age=" in worst["predicted"]


def test_a_multi_label_target_column(task_models: Path, tags_csv: Path) -> None:
    manifest = json.loads((task_models / TAGS / "model.json").read_text())
    assert manifest["task"] == "multi_label" and manifest["classes"] == TAG_NAMES
    assert {"test_accuracy_multi", "test_f1_micro", "test_f1_macro"} <= set(manifest["metrics"])
    report = _report(task_models, TAGS)
    assert report["task"] == "multi_label" and report["monitor"] == "accuracy_multi"
    assert {"accuracy_multi", "f1_macro"} <= set(report["history"][0])
    test = report["test"]
    rows = _test_rows(tags_csv)
    actual = np.array([[t in split_labels(cell) for t in TAG_NAMES] for cell in rows["tags"]])
    predicted = _fastai_outputs(task_models / TAGS, rows) > 0.5
    assert test["n"] == 100 and test["threshold"] == 0.5
    assert test["accuracy_multi"] == pytest.approx(float((actual == predicted).mean()))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, average=None, zero_division=0)
    for i, tag in enumerate(TAG_NAMES):
        assert (test["precision"][tag], test["recall"][tag], test["f1"][tag]) == pytest.approx(
            (p[i], r[i], f[i])
        )
    micro = precision_recall_fscore_support(actual, predicted, average="micro", zero_division=0)
    assert test["f1"]["micro"] == pytest.approx(micro[2])
    assert test["f1"]["macro"] == pytest.approx(float(f.mean()))
    worst = report["top_losses_rows"][0]
    assert set(worst) >= {"row", "actual", "predicted", "loss"} and "probability" not in worst


@pytest.mark.parametrize("name", [HOURS, HOURS_AGE, TAGS])
async def test_the_report_route_serves_each_tasks_plots(
    task_models_client: httpx.AsyncClient, name: str
) -> None:
    detail = (await task_models_client.get(f"/api/v1/models/{name}")).json()
    assert detail["status"] == "ready", detail
    response = await task_models_client.get(f"/api/v1/models/{name}/report")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["task"] == detail["task"]
    assert set(report["artifacts"]) == EXPECTED_ARTIFACTS[name]
    for key, url in report["artifacts"].items():
        assert url == f"/api/v1/models/{name}/report/{key}.png"
        image = await task_models_client.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as png:
            assert png.format == "PNG" and png.size[0] > 100
    # Another task's plot is not in this report: 404, as for any unknown artifact.
    problem(await task_models_client.get(f"/api/v1/models/{name}/report/confusion_matrix.png"), 404)


def test_compare_shows_each_tasks_numbers(task_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", HOURS, HOURS_AGE, TAGS, "--store", str(task_models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("rmse hours-per-week") for line in lines)
    assert any(line.startswith("rmse age") and line.split()[2] == "-" for line in lines)  # hours: no age
    assert any(line.startswith("accuracy_multi") for line in lines)
    assert not any("confusion matrix" in line for line in lines)


# -- the task chosen ------------------------------------------------------------------------------------


def test_auto_picks_regression_for_many_numbers_and_classification_otherwise(
    adult_frame: pd.DataFrame,
) -> None:
    frame = adult_frame.iloc[:500]
    assert choose_task(frame, [data.ADULT_TARGET], None) is Task.CLASSIFICATION  # text labels
    assert choose_task(frame, ["hours-per-week"], None) is Task.REGRESSION
    assert choose_task(frame, ["education-num"], None) is Task.CLASSIFICATION  # 16 codes
    assert choose_task(frame, ["sex", "age"], None) is Task.REGRESSION  # several: refused later if text
    assert choose_task(frame, ["education-num"], Task.REGRESSION) is Task.REGRESSION  # asked for


def test_the_cli_offers_every_task_the_recipe_trains() -> None:
    assert list(TABULAR_TASKS) == ["auto", *TARGET_TASKS]
    assert set(TARGET_TASKS) <= set(TASK_PLOTS)


def test_error_metrics_are_lower_is_better() -> None:
    assert all(lower_is_better(m) for m in ("rmse", "mae", "valid_loss", "error_rate"))
    assert not any(lower_is_better(m) for m in ("accuracy", "accuracy_multi", "r2_score", "f1_macro"))


# -- refused before training ----------------------------------------------------------------------------


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], store: Path) -> str:
    store.mkdir(exist_ok=True)
    assert main([*argv, "--store", str(store)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastai-serve: error: "), err
    assert list(store.iterdir()) == []  # nothing trained, nothing written
    return lines[0].removeprefix("fastai-serve: error: ")


def test_a_regression_of_a_text_column(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "tabular", "--data", str(tags_csv), "--target", "Salary", "--task", "regression"]
    line = _refused(capsys, argv, tmp_path)
    assert line.startswith(MSG_TASK_NOT_NUMERIC.split("{")[0])
    assert "column 'Salary' holds '<=50K'" in line and "--task classification" in line


@pytest.mark.parametrize(
    ("task", "targets"), [("classification", ["Salary", "sex"]), ("multi_label", ["tags", "Salary"])]
)
def test_several_targets_for_a_one_column_task(
    task: str, targets: list[str], tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "tabular", "--data", str(tags_csv), "--target", *targets, "--task", task]
    line = _refused(capsys, argv, tmp_path)
    shape = TARGET_TASKS[Task(task)].shape
    assert line == MSG_TASK_ONE_TARGET.format(task=task, shape=shape, count=2, targets=", ".join(targets))


def test_a_target_named_as_a_feature(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "tabular", "--data", str(tags_csv), "--target", "hours-per-week"]
    line = _refused(capsys, [*argv, "--cont", "age", "hours-per-week"], tmp_path)
    assert line == MSG_TARGET_IS_FEATURE.format(columns="'hours-per-week'")


def test_a_monitor_of_another_task(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "tabular",
        "--data",
        str(tags_csv),
        "--target",
        "hours-per-week",
        "--monitor",
        "accuracy",
    ]
    line = _refused(capsys, argv, tmp_path)
    assert line == "unknown --monitor 'accuracy'; choose one of: train_loss, valid_loss, rmse, mae, r2_score"


def test_a_multi_label_column_without_labels(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(tags_csv)
    frame["tags"] = ""
    frame.to_csv(tmp_path / "blank.csv", index=False)
    argv = [
        "train",
        "tabular",
        "--data",
        str(tmp_path / "blank.csv"),
        "--target",
        "tags",
        "--task",
        "multi_label",
    ]
    line = _refused(capsys, argv, tmp_path / "store")
    assert line == MSG_NO_LABELS.format(target="tags", what=f"--data {tmp_path / 'blank.csv'}")


def test_a_label_named_as_a_feature(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(tags_csv)
    frame["tags"] = "age;" + frame["tags"].fillna("")
    frame.to_csv(tmp_path / "clash.csv", index=False)
    argv = [
        "train",
        "tabular",
        "--data",
        str(tmp_path / "clash.csv"),
        "--target",
        "tags",
        "--task",
        "multi_label",
    ]
    line = _refused(capsys, argv, tmp_path / "store")
    assert line == MSG_LABEL_IS_FEATURE.format(labels="'age'", target="tags")


def test_test_labels_the_training_data_lacks(
    tags_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(tags_csv).iloc[:50]
    frame["tags"] = "rich;retired"
    frame.to_csv(tmp_path / "test.csv", index=False)
    argv = ["train", "tabular", "--data", str(tags_csv), "--target", "tags", "--task", "multi_label"]
    line = _refused(capsys, [*argv, "--test", str(tmp_path / "test.csv")], tmp_path / "store")
    assert line == MSG_UNKNOWN_TEST_LABELS.format(
        what="--test", path=tmp_path / "test.csv", target="tags", unknown="retired"
    )
