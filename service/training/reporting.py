"""The report of a recipe scored outside the serving predictors (collab ratings, segmentation masks): the
same `report/report.json` layout and loss curve as every other recipe, with the task's own test numbers and
plots. The numbers come from the exported file loaded back (`load_exported_learner`), so they describe what
the store holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.inference.tasks import Task
from service.reports.writer import FitOutcome, save_report_json, start_report

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
    folder, artifacts = start_report(out_dir, learn)
    for name, plot in plots.items():
        plot(folder / f"{name}.png")
        artifacts[name] = f"{name}.png"
    save_report_json(
        folder,
        outcome=outcome,
        task=task,
        seed=seed,
        augmented=False,
        train_seconds=train_seconds,
        test=test,
        test_source=test_source,
        datablock_summary=datablock_summary,
        top_losses_rows=None,
        recipe=recipe,
        artifacts=artifacts,
    )
    return folder
