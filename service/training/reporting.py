"""The report of a recipe scored outside the serving predictors (collab ratings, segmentation masks): the
same `report/report.json` layout and loss curve as every other recipe, with the task's own test numbers and
plots. The numbers come from the exported file loaded back (`load_exported_learner`), so they describe what
the store holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.inference.tasks import Task
from service.reports.store import REPORT_DIR, REPORT_FILE
from service.reports.writer import FitOutcome, plot_loss_curve

# A plot of the test part: writes one PNG at the path it is given.
Plot = Callable[[Path], None]


def write_scored_report(
    out_dir: Path,
    *,
    learn: Any,
    outcome: FitOutcome,
    task: Task,
    seed: int,
    train_seconds: float,
    test: dict[str, Any] | None,
    test_source: str | None,
    plots: dict[str, Plot],
    recipe: dict[str, Any],
    datablock_summary: str | None = None,
) -> Path:
    """`report/report.json` with the loss curve and `plots` (artifact name -> plot); returns the folder."""
    folder = out_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plot_loss_curve(learn, folder / "loss_curve.png")
    artifacts = {"loss_curve": "loss_curve.png"}
    for name, plot in plots.items():
        plot(folder / f"{name}.png")
        artifacts[name] = f"{name}.png"
    report = {
        "task": task.value,
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "monitor": outcome.monitor,
        "stopped_early": outcome.stopped_early,
        "stopped_at_epoch": outcome.stopped_at_epoch,
        "epochs_planned": outcome.epochs_planned,
        "seed": seed,
        "augmented": False,
        "train_seconds": round(train_seconds, 2),
        "test": test,
        "test_source": test_source,
        "datablock_summary": datablock_summary,
        "top_losses_rows": None,
        "recipe": recipe,
        "artifacts": artifacts,
    }
    tmp = folder / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    tmp.replace(folder / REPORT_FILE)
    return folder
