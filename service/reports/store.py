"""Where a model's training report lives in its store folder, and reading it (no plotting imports here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_DIR = "report"
REPORT_FILE = "report.json"
ARTIFACTS = ("loss_curve", "confusion_matrix", "top_losses")


def read_report(model_folder: Path) -> dict[str, Any] | None:
    path = model_folder / REPORT_DIR / REPORT_FILE
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text()))
