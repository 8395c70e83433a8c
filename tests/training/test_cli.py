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
from pathlib import Path

import pandas as pd
import pytest

from service.cli import main
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
