"""`fastai-serve train text`: the ULMFiT recipe on a small slice of the shipped sentences (a tiny AWD_LSTM,
one epoch each) makes an export the server recognises as a text classifier, a report that fits the task,
the same numbers for the same seed, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from service.cli import DEMO_TEXT, main
from service.inference.kinds import recognise
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.loading import load_exported_learner
from service.reports.store import read_report
from service.training import text as text_training
from service.training.common import FitOptions, TrainResult
from service.training.text import (
    LABEL_COL,
    TEXT_COL,
    VALID_COL,
    TextRecipe,
    demo_frame,
    load_data,
    refit_frame,
    train_text,
)

STORE = Path(__file__).resolve().parents[2] / "model_store"
# Issue 22's target. The demo measures 0.7625 (one pinned thread, docs/recipes.md row 34): 2 sentences of
# margin for float noise across CPUs (each test sentence is 0.1%); a CPU whose kernels sum in another order
# could land under it, which is the recipe's noise (one standard error is 1.4 points), not a regression.
DEMO_FLOOR = 0.76
TINY = {
    "max_rows": 300,
    "emb_sz": 16,
    "n_hid": 24,
    "n_layers": 1,
    "lm_epochs": 1,
    "epochs": 1,
    "bs": 32,
    "seed": 7,
}


def _train(out: Path, **changes: Any) -> TrainResult:
    options = TINY | changes
    return train_text(TextRecipe(out_dir=out, fit=FitOptions(quiet=True), **options))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return _train(tmp_path_factory.mktemp("text") / "tiny")


def _weights(result: TrainResult) -> dict[str, torch.Tensor]:
    learn = load_exported_learner(result.learner_path).learn
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


def _history(result: TrainResult) -> list[dict[str, Any]]:
    report = read_report(result.learner_path.parent)
    assert report is not None
    return list(report["history"])


def test_the_export_is_recognised_as_a_text_classifier(tiny: TrainResult) -> None:
    learn = load_exported_learner(tiny.learner_path).learn
    entry = recognise(learn)
    assert (entry.kind, entry.task) == (ModelKind.TEXT, Task.CLASSIFICATION)
    assert [str(c) for c in learn.dls.vocab[1]] == ["neg", "pos"]
    manifest = json.loads((tiny.learner_path.parent / "model.json").read_text())
    assert manifest["kind"] == "text" and manifest["task"] == "classification"
    assert manifest["classes"] == ["neg", "pos"] and manifest["metrics"]["test_items"] == 30


def test_the_report_has_the_text_artifacts_and_the_held_out_evaluation(tiny: TrainResult) -> None:
    folder = tiny.learner_path.parent
    report = read_report(folder)
    assert report is not None
    assert set(report["artifacts"]) == {"loss_curve", "confusion_matrix", "top_losses"}
    for name in report["artifacts"].values():
        assert (folder / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["test"]["n"] == 30 and "held out" in report["test_source"]
    rows = report["top_losses_rows"]
    assert len(rows) == 9 and all(row[TEXT_COL] and row["actual"] in ("neg", "pos") for row in rows)
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    assert report["recipe"]["lm_epochs"] == 1 and report["recipe"]["lm_vocab"] > 100
    assert "language model: trained first" in report["datablock_summary"]


def test_same_seed_gives_the_same_weights_and_epochs_and_another_seed_does_not(
    tiny: TrainResult, tmp_path: Path
) -> None:
    again = _train(tmp_path / "again")
    other = _train(tmp_path / "other", seed=8)
    first, second = _weights(tiny), _weights(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert _history(tiny) == _history(again)
    assert tiny.metrics == again.metrics
    assert not all(torch.equal(first[k], v) for k, v in _weights(other).items())


@pytest.fixture(scope="module")
def refitted(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return _train(tmp_path_factory.mktemp("text") / "refit", lm_epochs=0, epochs=2, refit=True)


def test_refit_trains_on_the_validation_texts_too_and_keeps_the_first_fits_history(
    refitted: TrainResult, tmp_path: Path
) -> None:
    assert recognise(load_exported_learner(refitted.learner_path).learn).kind == ModelKind.TEXT
    data = load_data(TextRecipe(out_dir=Path("unused"), **(TINY | {"lm_epochs": 0})))
    # The exported model trained on every kept text (the validation ones too), still scored on the test ones.
    assert len(refitted.learn.dls.train_ds) == len(data.train)
    assert refitted.metrics["test_items"] == 30
    # The report's epochs are the first fit's, measured on the validation texts (the refit trains on them).
    plain = _train(tmp_path / "plain", lm_epochs=0, epochs=2)
    assert _history(refitted) == _history(plain)
    assert not all(torch.equal(v, _weights(plain)[k]) for k, v in _weights(refitted).items())
    report = read_report(refitted.learner_path.parent)
    assert report is not None and report["recipe"]["refit"] is True
    assert "refit on the training and validation texts: 2 epochs" in report["datablock_summary"]


def test_refit_is_deterministic_with_the_seed(refitted: TrainResult, tmp_path: Path) -> None:
    again = _train(tmp_path / "again", lm_epochs=0, epochs=2, refit=True)
    first, second = _weights(refitted), _weights(again)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert refitted.metrics == again.metrics


def test_the_refit_frame_trains_on_every_row_and_still_validates() -> None:
    data = load_data(TextRecipe(out_dir=Path("unused"), max_rows=100, seed=3))
    frame = refit_frame(data.train)
    n_valid = int(data.train[VALID_COL].sum())
    assert (~frame[VALID_COL]).sum() == len(data.train) and frame[VALID_COL].sum() == n_valid > 0


def test_training_pins_torch_threads_and_restores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    pinned = 1 if before > 1 else 2
    seen: list[int] = []

    def spy(recipe: TextRecipe) -> TrainResult:
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop")

    # Our own entry point is replaced, only to see the thread count inside it: no fastai call is.
    monkeypatch.setattr(text_training, "_train_text", spy)
    with pytest.raises(RuntimeError, match="stop"):
        train_text(TextRecipe(out_dir=tmp_path, threads=pinned))
    assert seen == [pinned] and torch.get_num_threads() == before


def test_the_test_texts_are_held_out_before_any_training() -> None:
    recipe = TextRecipe(out_dir=Path("unused"), seed=42)
    data = load_data(recipe)
    assert data.test is not None
    full = demo_frame()
    assert len(data.test) == round(len(full) * 0.1) and len(data.train) == len(full) - len(data.test)
    repeated = set(full[TEXT_COL][full[TEXT_COL].duplicated()])  # a sentence the data set has twice
    assert not (set(data.test[TEXT_COL]) - repeated) & set(data.train[TEXT_COL])
    assert data.train[VALID_COL].sum() == round(len(data.train) * 0.1)
    again = load_data(recipe)
    assert again.test is not None and again.test.equals(data.test)  # the seed fixes the split


def test_a_csv_with_its_own_columns_and_test_file_trains_from_scratch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = demo_frame().sample(n=260, random_state=0)
    renamed = frame.rename(columns={TEXT_COL: "review", LABEL_COL: "sentiment"})
    renamed.iloc[:220].to_csv(tmp_path / "train.csv", index=False)
    renamed.iloc[220:].to_csv(tmp_path / "test.csv", index=False)
    argv = ["train", "text", "--data", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]
    argv += ["--text-col", "review", "--label-col", "sentiment", "--lm-epochs", "0", "--epochs", "1"]
    argv += ["--emb-sz", "8", "--n-hid", "16", "--n-layers", "1", "--bs", "16", "--quiet"]
    assert main([*argv, "--store", str(tmp_path / "store"), "--name", "mine"]) == 0
    assert "mine: {'test_accuracy'" in capsys.readouterr().out
    report = read_report(tmp_path / "store" / "mine")
    assert report is not None and report["test"]["n"] == 40 and report["test_source"] == "test.csv"
    assert "none (from scratch)" in report["datablock_summary"]


# -- bad input: one line, exit 2, before any training ----------------------------------------------------


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastai-serve: error: "), err
    return lines[0]


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_a_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(
        capsys, ["train", "text", "--data", str(tmp_path / "nowhere.csv"), "--store", str(tmp_path)]
    )
    assert "--data" in line and "no such file" in line


def test_a_csv_without_the_label_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(tmp_path / "t.csv", pd.DataFrame({"text": ["good", "bad"], "stars": ["5", "1"]}))
    line = _refused(capsys, ["train", "text", "--data", str(csv), "--store", str(tmp_path)])
    assert "'label' (--label-col)" in line and "text, stars" in line


def test_a_single_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(
        tmp_path / "t.csv", pd.DataFrame({"text": ["good", "fine", ""], "label": ["pos", "pos", "neg"]})
    )
    line = _refused(capsys, ["train", "text", "--data", str(csv), "--store", str(tmp_path)])
    assert "holds one label (pos)" in line  # the row without a text is dropped, not counted


def test_no_row_with_a_text_and_a_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(tmp_path / "t.csv", pd.DataFrame({"text": ["", "fine"], "label": ["pos", ""]}))
    line = _refused(capsys, ["train", "text", "--data", str(csv), "--store", str(tmp_path)])
    assert "no row has both a text in 'text' and a label in 'label'" in line


def test_test_labels_the_training_data_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _csv(tmp_path / "a.csv", pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}))
    test = _csv(tmp_path / "b.csv", pd.DataFrame({"text": ["meh"], "label": ["neutral"]}))
    argv = ["train", "text", "--data", str(train), "--test", str(test), "--store", str(tmp_path)]
    assert "the training data has not: neutral" in _refused(capsys, argv)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--epochs", "0", "at least 1"),
        ("--lm-epochs", "-1", "0 or more"),
        ("--valid-pct", "1", "in (0, 1)"),
        ("--threads", "-1", "0 (torch's default) or more"),
    ],
)
def test_an_option_out_of_range(
    option: str, value: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, ["train", "text", option, value, "--store", str(tmp_path)])
    assert f"{option} must be {expected}, got {value}" in line


def test_the_same_column_for_texts_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "text", "--text-col", "x", "--label-col", "x", "--store", str(tmp_path)]
    assert "both 'x'" in _refused(capsys, argv)


def test_refit_after_a_language_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, ["train", "text", "--refit", "--lm-epochs", "1", "--store", str(tmp_path)])
    assert "--refit" in line and "--lm-epochs" in line
    assert not (tmp_path / DEMO_TEXT).exists()


def test_an_unknown_monitor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, ["train", "text", "--monitor", "rmse", "--store", str(tmp_path)])
    assert "unknown --monitor 'rmse'" in line and "accuracy, f1_score" in line
    assert not (tmp_path / DEMO_TEXT).exists()


# -- the demo model, when `make models` built it ---------------------------------------------------------


@pytest.mark.skipif(
    not (STORE / DEMO_TEXT / "model.pkl").is_file(), reason="demo text model not built: run `make models`"
)
def test_the_demo_model_meets_its_accuracy_target_on_held_out_sentences() -> None:
    manifest = json.loads((STORE / DEMO_TEXT / "model.json").read_text())
    assert manifest["kind"] == "text"
    assert manifest["metrics"]["test_accuracy"] >= DEMO_FLOOR
    assert manifest["metrics"]["test_items"] == round(len(demo_frame()) * 0.1)


def test_the_recipe_writes_the_drift_reference(tiny: TrainResult) -> None:
    from service.monitoring.drift import REFERENCE_FILE, Reference

    reference = Reference.load(tiny.learner_path.parent / REFERENCE_FILE)
    assert reference is not None and reference.source == "training"
    assert {"text_length", "unknown_share", "predicted:prediction"} <= set(reference.profiles)
