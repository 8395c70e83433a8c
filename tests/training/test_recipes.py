"""The training recipes' options: seeds, early stopping, save-best, augmentation, reports, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from service.cli import main
from service.reports.store import read_report
from service.training import data
from service.training.common import FitOptions, TrainResult
from service.training.tabular import TabularRecipe, train_tabular
from service.training.vision import VisionRecipe, train_vision


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("data") / "adult-small.csv"
    adult_frame.iloc[:1500].to_csv(path, index=False)
    return path


def _tabular(csv: Path, out: Path, **changes: Any) -> TrainResult:
    options = {"epochs": 3, "seed": 7, "lr": 1e-2, "layers": [16, 8], "bs": 128} | changes
    fit = options.pop("fit", FitOptions(quiet=True))
    return train_tabular(
        TabularRecipe(
            csv=csv,
            target=data.ADULT_TARGET,
            cat_names=data.ADULT_CATEGORICAL,
            cont_names=data.ADULT_CONTINUOUS,
            out_dir=out,
            fit=fit,
            **options,
        )
    )


def _history(result: TrainResult) -> list[dict[str, Any]]:
    report = read_report(result.learner_path.parent)
    assert report is not None
    return list(report["history"])


def test_same_seed_gives_identical_epochs_and_another_seed_does_not(small_csv: Path, tmp_path: Path) -> None:
    first = _history(_tabular(small_csv, tmp_path / "a", seed=11))
    second = _history(_tabular(small_csv, tmp_path / "b", seed=11))
    other = _history(_tabular(small_csv, tmp_path / "c", seed=12))
    assert first == second  # every loss and metric of every epoch, bit for bit
    assert [r["train_loss"] for r in first] != [r["train_loss"] for r in other]


def test_early_stopping_stops_when_the_metric_plateaus(small_csv: Path, tmp_path: Path) -> None:
    # No epoch can beat the first by a whole unit of valid_loss: a plateau by definition.
    fit = FitOptions(monitor="valid_loss", min_delta=1.0, early_stopping=True, patience=1, quiet=True)
    result = _tabular(small_csv, tmp_path / "m", epochs=6, fit=fit)
    report = read_report(result.learner_path.parent)
    assert report is not None
    assert report["stopped_early"] is True and report["stopped_at_epoch"] == 1
    assert len(report["history"]) == 2 and report["epochs_planned"] == 6
    assert report["best_epoch"] == 0


def test_without_early_stopping_every_epoch_runs(small_csv: Path, tmp_path: Path) -> None:
    fit = FitOptions(monitor="valid_loss", min_delta=1.0, quiet=True)
    report = read_report(_tabular(small_csv, tmp_path / "m", epochs=3, fit=fit).learner_path.parent)
    assert report is not None and report["stopped_early"] is False and len(report["history"]) == 3


def test_save_best_restores_the_best_epochs_weights(small_csv: Path, tmp_path: Path) -> None:
    # A high learning rate makes accuracy wander, so the best epoch is not the last one.
    fit = FitOptions(monitor="accuracy", min_delta=0.0, save_best=True, quiet=True)
    result = _tabular(small_csv, tmp_path / "m", epochs=4, lr=0.5, seed=3, fit=fit)
    history = _history(result)
    best = max(range(len(history)), key=lambda i: (history[i]["accuracy"], -i))
    assert best != len(history) - 1, "pick a seed where the last epoch is not the best"
    with result.learn.no_bar(), result.learn.no_logging():
        _, accuracy, *_ = result.learn.validate()
    assert accuracy == pytest.approx(history[best]["accuracy"], abs=1e-6)
    report = read_report(result.learner_path.parent)
    assert report is not None and report["best_epoch"] == best
    assert not (result.learner_path.parent / ".checkpoints").exists()  # checkpoints are not left behind


def test_test_csv_option_is_the_reports_test_set(
    small_csv: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    test_csv = tmp_path / "test.csv"
    adult_frame.iloc[2000:2250].to_csv(test_csv, index=False)
    result = _tabular(small_csv, tmp_path / "m", epochs=1, test_csv=test_csv)
    report = read_report(result.learner_path.parent)
    assert report is not None and report["test"]["n"] == 250 and report["test_source"] == "test.csv"
    assert result.metrics["test_accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-4)


def test_vision_augmentation_is_recorded(tmp_path: Path) -> None:
    result = train_vision(
        VisionRecipe(
            folder=data.demo_cifar_folder(),
            out_dir=tmp_path / "aug",
            epochs=1,
            bs=32,
            max_per_class=4,
            augment=True,
            fit=FitOptions(quiet=True),
        )
    )
    report = read_report(result.learner_path.parent)
    assert report is not None and report["augmented"] is True
    assert report["recipe"]["augment"] is True
    assert "Flip" in report["datablock_summary"] or "Affine" in report["datablock_summary"]


def test_compare_prints_both_models(trained_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "adult-tiny", "cifar-tiny", "--store", str(trained_store)]) == 0
    out = capsys.readouterr().out
    assert "adult-tiny" in out and "cifar-tiny" in out and "test accuracy" in out
    assert "cifar-tiny: confusion matrix" in out
