"""Shared steps of every training recipe: seeding, callbacks, the fit, export, and test scoring."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import fastai
import numpy as np
import pandas as pd
import torch

from service.errors import MSG_UNKNOWN_MONITOR, TrainingInputError
from service.inference.collab import CollabPredictor
from service.inference.csvio import CsvTable, cells_as_rows
from service.inference.images import UploadedImage
from service.inference.kinds import build_predictor, recognise
from service.inference.labelled import EVAL_CHUNK, LABEL_TARGETS, TABLE_TARGETS
from service.inference.predictor import ModelKind
from service.inference.tabular import TabularPredictor
from service.inference.tasks import AnyHead, Task
from service.inference.text import TextPredictor
from service.inference.vision import VisionPredictor
from service.loading import load_exported_learner, prepare_for_serving, sha256_of
from service.reports.scores import score
from service.reports.writer import FitOutcome, TestScores, fit_outcome, lower_is_better, write_report
from service.schemas.reports import AnyEvaluation, Evaluation, MultiLabelEvaluation, RegressionEvaluation
from service.training import progress
from service.training.data import check_one_batch

logger = logging.getLogger(__name__)
P = TypeVar("P", TabularPredictor, VisionPredictor, TextPredictor, CollabPredictor)
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

    monitor: str | None = None  # None: the recipe's task's own (`resolved`), else fastai's valid_loss
    min_delta: float = 0.01
    early_stopping: bool = False
    patience: int = 3
    save_best: bool = False
    quiet: bool = False  # no progress bars even on a terminal; epochs are still logged

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def watched(self) -> str:
        """What the callbacks watch: the monitor, or fastai's TrackerCallback default."""
        return self.monitor or "valid_loss"

    def resolved(self, default: str) -> FitOptions:
        """These options with the task's own metric watched unless a monitor was named."""
        return replace(self, monitor=self.monitor or default)


def seed_everything(seed: int) -> None:
    """Seed before the DataLoaders exist: they draw their own RNG at creation (fastai #2832)."""
    from fastai.torch_core import set_seed

    set_seed(seed, reproducible=True)


def reseed_loaders(dls: Any, seed: int) -> None:
    """Each DataLoader drew its own `rng` when created; re-seed them so shuffling repeats (the book's fix)."""
    for i, dl in enumerate(dls.loaders):
        dl.rng.seed(seed + i)


def seeded_loaders(block: Any, source: Any, *, bs: int, seed: int, items: str) -> Any:
    """`block.dataloaders(source)` the same for the same seed (seeded before, loaders re-seeded after; no
    worker processes), its first batch checked: the DataLoaders every DataBlock recipe trains on."""
    seed_everything(seed)
    dls = block.dataloaders(source, bs=bs, num_workers=0)
    reseed_loaders(dls, seed)
    check_one_batch(dls, items=items, bs=bs)
    return dls


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

    monitor = options.watched
    # fastai guesses the direction from the name ("loss", "error"): an rmse or mae would count as better
    # when it grows.
    comp = np.less if lower_is_better(monitor) else np.greater
    cbs: list[Any] = [log_epochs_callback()]
    if (reporter := progress.current()) is not None:  # a demo model the server shows as training
        cbs.append(progress.epoch_callback(reporter))
    if options.early_stopping:
        cbs.append(
            EarlyStoppingCallback(
                monitor=monitor, comp=comp, min_delta=options.min_delta, patience=options.patience
            )
        )
    if options.save_best:
        # SaveModelCallback writes path/model_dir/best.pth each time the monitor improves, and reloads
        # the best weights when the fit ends.
        learn.model_dir = (Path(learn.path) / CHECKPOINTS).resolve()
        cbs.append(SaveModelCallback(monitor=monitor, comp=comp, min_delta=options.min_delta, fname="best"))
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
    return seconds, fit_outcome(learn, epochs=epochs, monitor=monitor, min_delta=options.min_delta)


# Items of the training data the drift reference is profiled on (images, texts, pairs): quantiles and
# shares settle long before the whole set.
REFERENCE_ITEMS = 1000


def sampled(items: Sequence[Any], *, limit: int = REFERENCE_ITEMS, seed: int = 0) -> list[Any]:
    """At most `limit` of `items`, the same ones for the same seed."""
    if len(items) <= limit:
        return list(items)
    chosen = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[int(i)] for i in sorted(chosen)]


def reference_parts(predictor: Any, prepared: Any) -> list[tuple[Any, np.ndarray]]:
    """Prepared training inputs with the exported model's outputs: what a drift reference profiles."""
    return [(prepared, predictor.forward_many([prepared])[0])]


def image_reference(predictor: Any, files: Sequence[Path]) -> list[tuple[Any, np.ndarray]]:
    uploads = [UploadedImage(filename=f.name, data=f.read_bytes()) for f in sampled(files)]
    return reference_parts(predictor, predictor.prepare(uploads))


def write_reference(
    out_dir: Path, learner_path: Path, predictor_type: type[P], parts: Callable[[P], list[tuple[Any, Any]]]
) -> None:
    """The drift reference (`reference.json`) of training inputs, through the exported file as served."""
    from service.monitoring.drift import REFERENCE_FILE, build_reference

    predictor = serving_predictor(learner_path, predictor_type)
    build_reference(predictor, parts(predictor), source="training").save(out_dir / REFERENCE_FILE)


def serving_predictor(learner_path: Path, predictor_type: type[P]) -> P:
    """The exported file loaded and wrapped exactly as the server does: what the report describes."""
    learn = prepare_for_serving(load_exported_learner(learner_path).learn, torch.device("cpu"))
    predictor = build_predictor(recognise(learn), learn)
    assert isinstance(predictor, predictor_type)
    return predictor


def score_table(predictor: TabularPredictor, frame: pd.DataFrame, *, source: str) -> TestScores:
    """The test rows scored as the evaluate endpoint scores an upload: the same target codec per task."""
    head = predictor.head
    table = CsvTable(source=frame, columns=[str(c) for c in frame.columns], filename=source)
    actual = TABLE_TARGETS[head.task](table, predictor.spec.targets, head.classes)
    outputs = predictor.forward_many([predictor.prepare_frame(frame, filename=source)])[0]
    items = cells_as_rows(frame, predictor.spec.column_names)
    return scored_test(source=source, head=head, actual=actual, outputs=outputs, items=items)


def score_images(predictor: VisionPredictor, files: list[Path], *, source: str) -> TestScores:
    """Images in a folder per class, scored as the evaluate endpoint scores uploads with their labels."""
    head = predictor.head
    actual = LABEL_TARGETS[head.task][0]([f.parent.name for f in files], head)
    uploads = [UploadedImage(filename=f.name, data=f.read_bytes()) for f in files]
    parts = []
    for i in range(0, len(uploads), EVAL_CHUNK):
        prepared = predictor.prepare(uploads[i : i + EVAL_CHUNK])
        parts.append(predictor.scored_outputs(prepared, predictor.forward_many([prepared])[0]))
    # Vision training makes classifiers: with no test image, no probabilities of any class.
    outputs = np.concatenate(parts) if parts else np.zeros((0, len(head.classes)), dtype=np.float32)
    items = [u.data for u in uploads]
    return scored_test(source=source, head=head, actual=actual, outputs=outputs, items=items)


def scored_test(
    *, source: str, head: AnyHead, actual: np.ndarray, outputs: np.ndarray, items: list[Any]
) -> TestScores:
    return TestScores(
        source=source,
        head=head,
        actual=actual,
        outputs=outputs,
        evaluation=score(head, actual, outputs),
        items=items,
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


def _classification_headline(e: AnyEvaluation) -> dict[str, float]:
    assert isinstance(e, Evaluation)
    return {"test_accuracy": e.accuracy, "test_f1_macro": e.f1["macro"]}


def _multi_label_headline(e: AnyEvaluation) -> dict[str, float]:
    assert isinstance(e, MultiLabelEvaluation)
    return {
        "test_accuracy_multi": e.accuracy_multi,
        "test_f1_micro": e.f1["micro"],
        "test_f1_macro": e.f1["macro"],
    }


def _regression_headline(e: AnyEvaluation) -> dict[str, float]:
    assert isinstance(e, RegressionEvaluation)
    # One target: test_rmse...; several: test_rmse_<target>... for each.
    single = len(e.targets) == 1
    return {
        f"test_{metric}" if single else f"test_{metric}_{target}": value
        for target, scores in e.targets.items()
        for metric, value in scores.model_dump().items()
        if value is not None  # R² of a target that does not vary
    }


# Per task: the manifest's headline test numbers.
HEADLINES: dict[Task, Callable[[AnyEvaluation], dict[str, float]]] = {
    Task.CLASSIFICATION: _classification_headline,
    Task.MULTI_LABEL: _multi_label_headline,
    Task.REGRESSION: _regression_headline,
}


def summary_metrics(
    scores: TestScores | None, history: list[dict[str, Any]], best: int | None
) -> dict[str, float]:
    """The manifest's headline numbers: test metrics when there is a test set, else the best epoch's."""
    if scores is not None:
        headline = HEADLINES[scores.head.task](scores.evaluation)
        rounded = {k: round(float(v), 4) for k, v in headline.items()}
        return rounded | {"test_items": float(scores.evaluation.n)}
    row = history[best] if best is not None and history else {}
    return {f"valid_{k}": round(float(v), 4) for k, v in row.items() if k != "epoch" and v is not None}


def publish(
    learn: Any,
    *,
    predictor_type: type[P],
    out_dir: Path,
    outcome: FitOutcome,
    seconds: float,
    seed: int,
    score_test: Callable[[P], TestScores | None],
    description: str,
    augmented: bool,
    datablock_summary: str | None,
    recipe: dict[str, Any],
    manifest_extra: dict[str, Any] | None = None,
    reference: Callable[[P], list[tuple[Any, np.ndarray]]] | None = None,
) -> TrainResult:
    """What every recipe does once trained: export, score the test set with the serving predictor, write
    the manifest, the report, and (`reference`: training inputs prepared with their outputs) the drift
    reference the monitor compares recent inputs with (`reference.json`)."""
    path = export_learner(learn, out_dir)
    # The exported file as the server loads it: its task and names, and what scores the test set.
    predictor = serving_predictor(path, predictor_type)
    kind, head = predictor.kind, predictor.head
    scores = score_test(predictor)
    if reference is not None:
        from service.monitoring.drift import REFERENCE_FILE, build_reference

        build_reference(predictor, reference(predictor), source="training").save(out_dir / REFERENCE_FILE)
    metrics = summary_metrics(scores, outcome.history, outcome.best_epoch)
    write_manifest(
        out_dir,
        kind=kind,
        description=description,
        metrics=metrics,
        extra={
            "task": head.task.value,
            "classes": head.classes,
            "targets": head.targets,
            "train_seconds": round(seconds, 2),
            "seed": seed,
            **(manifest_extra or {}),
        },
    )
    report_dir = write_report(
        out_dir,
        learn=learn,
        outcome=outcome,
        scores=scores,
        kind=kind,
        task=head.task,
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
