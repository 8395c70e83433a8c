"""`fastai-serve train` as a user meets it: what it prints piped or on a terminal, and one clear line (exit 2,
never a traceback) for each kind of bad input, refused before any training starts."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pandas as pd
import pytest

from service.cli import main
from service.reports.store import read_report
from service.training import data

ROOT = Path(__file__).resolve().parents[2]
BAR_MARKS = ("\r", "█", "|----", "% [")  # what fastprogress draws, in any console bar
TABLE_HEADER = re.compile(r"train_loss\s+valid_loss")  # fastai's per-epoch table (Recorder's logger)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("cli") / "adult-600.csv"
    adult_frame.iloc[:600].to_csv(path, index=False)
    return path


def _images(folder: Path, classes: dict[str, int]) -> Path:
    """`folder/<class>/` with the first n shipped CIFAR images of each class (0 = an empty class folder)."""
    source = data.demo_cifar_folder() / "train"
    for name, n in classes.items():
        (folder / name).mkdir(parents=True)
        for image in sorted((source / name).iterdir())[:n]:
            shutil.copy(image, folder / name / image.name)
    return folder


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Runs the CLI expecting exit 2 with one line on stderr; returns that line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastai-serve: error: "), err
    return lines[0]


# -- 4. progress bars only on a terminal --------------------------------------------------------------


def test_piped_training_logs_one_line_per_epoch_and_draws_no_bars(small_csv: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "service.cli", "train", "tabular", "--data", str(small_csv)]
    cmd += ["--epochs", "3", "--bs", "64", "--store", str(tmp_path), "--name", "piped"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    both = done.stdout + done.stderr
    assert not [mark for mark in BAR_MARKS if mark in both], both[-3000:]
    assert not TABLE_HEADER.search(both)
    assert re.findall(r"epoch (\d+)/3: train_loss=", both) == ["1", "2", "3"]
    assert done.stdout.splitlines() == [done.stdout.strip()]  # only the closing result line
    assert done.stdout.startswith("piped: {'test_accuracy'")


def test_a_terminal_gets_fastais_bars_and_the_epoch_lines(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    caplog.set_level(logging.INFO, logger="service.training.common")
    argv = ["train", "tabular", "--data", str(small_csv), "--epochs", "2", "--bs", "64"]
    assert main([*argv, "--store", str(tmp_path), "--name", "tty"]) == 0
    shown = terminal.getvalue()
    assert "\r" in shown and "Epoch 2/2" in shown and TABLE_HEADER.search(shown)
    assert len(re.findall(r"epoch \d+/2: ", caplog.text)) == 2  # logged either way

    terminal.seek(0)
    terminal.truncate()
    assert main([*argv, "--store", str(tmp_path), "--name", "quiet", "--quiet"]) == 0
    assert "\r" not in terminal.getvalue() and not TABLE_HEADER.search(terminal.getvalue())


# -- 5. architectures ---------------------------------------------------------------------------------


def test_an_xresnet_trains_and_serves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "vision", "--arch", "xresnet18", "--epochs", "1", "--bs", "16", "--max-per-class", "8"]
    assert main([*argv, "--store", str(tmp_path), "--name", "xres", "--quiet"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    report = read_report(tmp_path / "xres")
    assert report is not None and report["recipe"]["arch"] == "xresnet18"
    assert report["test"]["n"] == 80  # scored by the exported file, loaded the way the server loads it


def test_an_unknown_arch_lists_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, ["train", "vision", "--arch", "resnet19", "--store", str(tmp_path)])
    assert "unknown --arch 'resnet19'; choose one of: " in line
    choices = line.split("choose one of: ")[1].split(", ")
    assert {"resnet18", "resnet50", "xresnet18", "xresnet50_deep", "convnext_tiny", "densenet121"} <= set(
        choices
    )
    assert choices.index("resnet18") < choices.index("resnet101")  # natural order
    assert not (tmp_path / "cifar10").exists()


def test_an_arch_too_deep_for_the_image_size_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _images(tmp_path / "images", {"cat": 4, "dog": 4})
    argv = ["train", "vision", "--arch", "alexnet", "--data", str(folder), "--bs", "4"]
    line = _refused(capsys, [*argv, "--store", str(tmp_path / "store")])
    assert "--arch alexnet does not work on 32x32 images" in line and "--size" in line


def test_the_cli_process_prints_one_line_and_exits_2() -> None:
    """The real process, warnings from the libraries included: one line on stderr, nothing on stdout."""
    cmd = [sys.executable, "-m", "service.cli", "train", "vision", "--arch", "xresnet19"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("fastai-serve: error: unknown --arch")


# -- 5. data, columns, metrics ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tabular", "vision"])
def test_a_missing_data_path(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    line = _refused(capsys, ["train", kind, "--data", str(missing), "--store", str(tmp_path)])
    assert line == f"fastai-serve: error: --data {missing}: no such file or directory"


def test_a_missing_test_path(small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "tabular", "--data", str(small_csv), "--test", str(tmp_path / "t.csv")]
    line = _refused(capsys, [*argv, "--store", str(tmp_path)])
    assert line.endswith(f"--test {tmp_path / 't.csv'}: no such file or directory")


def test_a_csv_without_the_target_column(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "tabular", "--data", str(small_csv), "--target", "salary", "--store", str(tmp_path)]
    line = _refused(capsys, argv)
    assert f"--data {small_csv} has no column 'salary' (--target); its columns: age, " in line
    assert "Salary" in line  # the columns it has, so the user sees the right spelling


def test_a_csv_without_a_named_feature_column(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "tabular", "--data", str(small_csv), "--cont", "age", "height", "--store", str(tmp_path)]
    assert "has no column 'height' (--cont)" in _refused(capsys, argv)


def test_an_empty_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.csv").write_text("")
    line = _refused(
        capsys, ["train", "tabular", "--data", str(tmp_path / "empty.csv"), "--store", str(tmp_path)]
    )
    assert "not a readable CSV" in line


def test_fewer_rows_than_one_batch(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, ["train", "tabular", "--data", str(small_csv), "--store", str(tmp_path)])
    assert "not one batch of --bs 1024" in line


def test_an_empty_class_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _images(tmp_path / "images", {"cat": 3, "dog": 0, "frog": 3})
    line = _refused(capsys, ["train", "vision", "--data", str(folder), "--store", str(tmp_path)])
    assert line == f"fastai-serve: error: --data {folder}: class folder(s) without images: dog"


def test_a_single_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _images(tmp_path / "images", {"cat": 3})
    line = _refused(capsys, ["train", "vision", "--data", str(folder), "--store", str(tmp_path)])
    assert "has one class folder (cat); a classifier needs two or more" in line


def test_test_classes_the_training_data_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _images(tmp_path / "images", {"cat": 3, "dog": 3})
    test = _images(tmp_path / "test", {"cat": 2, "ship": 2})
    argv = ["train", "vision", "--data", str(folder), "--test", str(test), "--store", str(tmp_path)]
    assert "has class folder(s) the training data has not: ship" in _refused(capsys, argv)


@pytest.mark.parametrize("kind", ["tabular", "vision"])
def test_an_unknown_monitor_is_refused_before_training(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, ["train", kind, "--monitor", "f1", "--early-stopping", "--store", str(tmp_path)])
    assert line == (
        "fastai-serve: error: unknown --monitor 'f1'; "
        "choose one of: train_loss, valid_loss, accuracy, precision_score, recall_score"
    )
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_a_failed_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastai.data.external

    def offline(*args: object, **kwargs: object) -> Path:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(fastai.data.external, "untar_data", offline)
    line = _refused(capsys, ["train", "tabular", "--download", "--store", str(tmp_path)])
    assert "could not download fastai's ADULT_SAMPLE data set" in line and "use --data" in line
