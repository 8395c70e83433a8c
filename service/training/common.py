"""Shared steps of every training recipe: seeding, callbacks, the fit, export, and test scoring."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import fastai
import numpy as np
import pandas as pd
import torch

from service.errors import MSG_UNKNOWN_MONITOR, TrainingInputError
from service.inference.csvio import cells_as_rows
from service.inference.images import UploadedImage
from service.inference.kinds import build_predictor, recognise
from service.inference.labelled import EVAL_CHUNK, target_labels
from service.inference.predictor import ModelKind, labels_of
from service.inference.tabular import TabularPredictor
from service.inference.vision import VisionPredictor
from service.loading import load_exported_learner, prepare_for_serving, sha256_of
from service.reports.scores import evaluate_labels
from service.reports.writer import FitOutcome, TestScores, fit_outcome, write_report

logger = logging.getLogger(__name__)
P = TypeVar("P", TabularPredictor, VisionPredictor)
CHECKPOINTS = ".checkpoints"


@dataclass
class TrainResult:
    name: str
    kind: ModelKind
    learner_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    report_dir: Path | None = None
    learn: Any = field(default=None, repr=False)


@dataclass
class FitOptions:
    """The book's training callbacks, as command-line options."""

    monitor: str = "accuracy"
    min_delta: float = 0.01
    early_stopping: bool = False
    patience: int = 3
    save_best: bool = False
    quiet: bool = False  # no progress bars even on a terminal; epochs are still logged

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def seed_everything(seed: int) -> None:
    """Seed before the DataLoaders exist: they draw their own RNG at creation (fastai #2832)."""
    from fastai.torch_core import set_seed

    set_seed(seed, reproducible=True)


def reseed_loaders(dls: Any, seed: int) -> None:
    """Each DataLoader drew its own `rng` when created; re-seed them so shuffling repeats (the book's fix)."""
    for i, dl in enumerate(dls.loaders):
        dl.rng.seed(seed + i)


def show_progress(options: FitOptions) -> bool:
    """fastai's progress bars (and its per-epoch table) only on a terminal: piped into a file (CI, make,
    docker build) every bar redraw would be a line of its own. Epochs are logged one line each either way."""
    return not options.quiet and sys.stdout.isatty()


def metric_names(metrics: list[Any]) -> list[str]:
    """The names fastai's Recorder gives these metrics, without building a learner (what --monitor takes)."""
    from fastai.learner import mk_metric

    return ["train_loss", "valid_loss", *(mk_metric(m).name for m in metrics)]


def check_monitor(monitor: str, metrics: list[Any]) -> None:
    """Refuse an unknown --monitor before any data is read (fastai would fail only once training ran)."""
    names = metric_names(metrics)
    if monitor not in names:
        raise TrainingInputError(MSG_UNKNOWN_MONITOR.format(monitor=monitor, choices=", ".join(names)))


def log_epochs_callback() -> Any:
    """A callback that logs one line per epoch with every recorded value (bars or not)."""
    from fastai.callback.core import Callback

    class LogEpochs(Callback):
        order = 60  # after the Recorder has written the epoch's values

        def after_epoch(self) -> None:
            names = self.recorder.metric_names[1:-1]
            values = ", ".join(
                f"{n}={float(v):.4f}" for n, v in zip(names, self.recorder.values[-1], strict=False)
            )
            logger.info("epoch %d/%d: %s", self.epoch + 1, self.n_epoch, values)

    return LogEpochs()


def fit(
    learn: Any, *, epochs: int, lr: float, options: FitOptions, fine_tune: bool = False
) -> tuple[float, FitOutcome]:
    """Train with the requested callbacks (fit-only: not in the exported file); returns the seconds it took
    and what the fit loop did, for the report."""
    from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

    cbs: list[Any] = [log_epochs_callback()]
    if options.early_stopping:
        cbs.append(
            EarlyStoppingCallback(
                monitor=options.monitor, min_delta=options.min_delta, patience=options.patience
            )
        )
    if options.save_best:
        # SaveModelCallback writes path/model_dir/best.pth each time the monitor improves, and reloads
        # the best weights when the fit ends.
        learn.model_dir = (Path(learn.path) / CHECKPOINTS).resolve()
        cbs.append(SaveModelCallback(monitor=options.monitor, min_delta=options.min_delta, fname="best"))
    # Without bars fastai would print its per-epoch table instead: LogEpochs already logs each epoch.
    quiet = () if show_progress(options) else (learn.no_bar(), learn.no_logging())
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for ctx in quiet:
            stack.enter_context(ctx)
        if fine_tune:
            learn.fine_tune(epochs, lr, cbs=cbs)
        else:
            learn.fit_one_cycle(epochs, lr, cbs=cbs)
    seconds = time.perf_counter() - started
    if options.save_best:
        shutil.rmtree(learn.model_dir, ignore_errors=True)
        learn.model_dir = "models"
    return seconds, fit_outcome(learn, epochs=epochs, monitor=options.monitor, min_delta=options.min_delta)


def serving_predictor(learner_path: Path, predictor_type: type[P]) -> P:
    """The exported file loaded and wrapped exactly as the server does: what the report describes."""
    learn = prepare_for_serving(load_exported_learner(learner_path).learn, torch.device("cpu"))
    predictor = build_predictor(recognise(learn), learn)
    assert isinstance(predictor, predictor_type)
    return predictor


def score_table(predictor: TabularPredictor, frame: pd.DataFrame, *, source: str) -> TestScores:
    classes = list(predictor.classes)
    actual = target_labels(frame, target=predictor.spec.target, classes=classes, filename=source)
    prepared = predictor.prepare_frame(frame, filename=source)
    probs = predictor.forward_many([prepared])[0]
    items = cells_as_rows(frame, predictor.spec.column_names)
    return _scores(source=source, classes=classes, actual=actual, probs=probs, items=items)


def score_images(predictor: VisionPredictor, files: list[Path], *, source: str) -> TestScores:
    classes = list(predictor.classes)
    actual = [f.parent.name for f in files]
    uploads = [UploadedImage(filename=f.name, data=f.read_bytes()) for f in files]
    parts = [
        predictor.forward_many([predictor.prepare(uploads[i : i + EVAL_CHUNK])])[0]
        for i in range(0, len(uploads), EVAL_CHUNK)
    ]
    probs = np.concatenate(parts) if parts else np.zeros((0, len(classes)), dtype=np.float32)
    return _scores(
        source=source, classes=classes, actual=actual, probs=probs, items=[u.data for u in uploads]
    )


def _scores(
    *, source: str, classes: list[str], actual: list[str], probs: np.ndarray, items: list[Any]
) -> TestScores:
    evaluation = evaluate_labels(actual, labels_of(probs, classes), classes)
    return TestScores(
        source=source, classes=classes, actual=actual, probs=probs, evaluation=evaluation, items=items
    )


@contextlib.contextmanager
def captured_stdout() -> Iterator[list[str]]:
    """`DataBlock.summary()` prints; keep its text for the report."""
    import io

    buffer, out = io.StringIO(), list[str]()
    with contextlib.redirect_stdout(buffer):
        yield out
    out.append(buffer.getvalue())


def export_learner(learn: Any, out_dir: Path) -> Path:
    """`Learner.export()` into `out_dir/model.pkl`, atomically (a reader never sees half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    learner_path = out_dir / "model.pkl"
    tmp = out_dir / "model.pkl.tmp"
    learn.export(tmp.resolve())
    tmp.replace(learner_path)
    return learner_path


def write_manifest(
    out_dir: Path, *, kind: ModelKind, description: str, metrics: dict[str, float], extra: dict[str, Any]
) -> None:
    """`model.json` next to the export: kind, version, sha256 (checked before unpickling), metrics."""
    manifest = {
        "kind": kind,
        "version": datetime.now(UTC).strftime("%Y%m%d.%H%M%S"),
        "description": description,
        "sha256": sha256_of(out_dir / "model.pkl"),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
        "framework": {"fastai": fastai.__version__, "torch": torch.__version__},
        **extra,
    }
    (out_dir / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")


def summary_metrics(
    scores: TestScores | None, history: list[dict[str, Any]], best: int | None
) -> dict[str, float]:
    """The manifest's headline numbers: test metrics when there is a test set, else the best epoch's."""
    if scores is not None:
        e = scores.evaluation
        return {
            "test_accuracy": round(e.accuracy, 4),
            "test_f1_macro": round(e.f1["macro"], 4),
            "test_items": float(e.n),
        }
    row = history[best] if best is not None and history else {}
    return {f"valid_{k}": round(float(v), 4) for k, v in row.items() if k != "epoch" and v is not None}


def publish(
    learn: Any,
    *,
    kind: ModelKind,
    out_dir: Path,
    outcome: FitOutcome,
    seconds: float,
    seed: int,
    score: Callable[[Path], TestScores | None],
    description: str,
    augmented: bool,
    datablock_summary: str | None,
    recipe: dict[str, Any],
    manifest_extra: dict[str, Any] | None = None,
) -> TrainResult:
    """What every recipe does once trained: export, score the test set with the serving predictor, write
    the manifest and the report."""
    path = export_learner(learn, out_dir)
    scores = score(path)
    metrics = summary_metrics(scores, outcome.history, outcome.best_epoch)
    write_manifest(
        out_dir,
        kind=kind,
        description=description,
        metrics=metrics,
        extra={"train_seconds": round(seconds, 2), "seed": seed, **(manifest_extra or {})},
    )
    report_dir = write_report(
        out_dir,
        learn=learn,
        outcome=outcome,
        scores=scores,
        kind=kind,
        seed=seed,
        augmented=augmented,
        train_seconds=seconds,
        datablock_summary=datablock_summary,
        recipe=recipe,
    )
    return TrainResult(
        name=out_dir.name,
        kind=kind,
        learner_path=path,
        metrics=metrics,
        train_seconds=seconds,
        report_dir=report_dir,
        learn=learn,
    )


def recipe_dict(recipe: Any, **extra: Any) -> dict[str, Any]:
    """A recipe's options for the report (paths as text, callbacks' options nested)."""
    out = {k: v for k, v in recipe.__dict__.items() if k not in {"fit", "out_dir", "description"}}
    out |= {"fit": recipe.fit.as_dict(), **extra}
    return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
