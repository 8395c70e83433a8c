"""Where a model's training report lives in its store folder, and reading it (no plotting imports here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_DIR = "report"
REPORT_FILE = "report.json"
# Every plot a report may hold (the report route serves these names only): all tasks have the loss curve
# and top losses; classification its confusion matrix; multi_label per-class P/R/F1 bars and F1 against the
# threshold; regression predicted vs actual and residuals, a panel per target.
ARTIFACTS = (
    "loss_curve",
    "confusion_matrix",
    "top_losses",
    "per_class_scores",
    "f1_vs_threshold",
    "predicted_vs_actual",
    "residuals",
    "per_class_iou",
    "sample_overlays",
)


def read_report(model_folder: Path) -> dict[str, Any] | None:
    path = model_folder / REPORT_DIR / REPORT_FILE
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text()))
