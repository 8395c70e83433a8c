"""Shared steps of every training recipe: seeding, export and the manifest next to the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastai
import torch

from service.loading import sha256_of


@dataclass
class TrainResult:
    name: str
    kind: str
    learner_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed before the DataLoaders exist: they draw their own RNG at creation (fastai #2832)."""
    from fastai.torch_core import set_seed

    set_seed(seed, reproducible=True)


def held_out_accuracy(learn: Any, items: Any) -> float:
    """Accuracy on labelled items the learner never saw (not the validation set it was tuned on)."""
    dl = learn.dls.test_dl(items, with_labels=True, num_workers=0)
    with learn.no_bar():
        probs, targets = learn.get_preds(dl=dl)
    return round(float((probs.argmax(dim=1) == targets.view(-1)).float().mean()), 4)


def export_model(
    learn: Any,
    *,
    out_dir: Path,
    kind: str,
    description: str,
    metrics: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Export the learner into `out_dir/model.pkl` and write `model.json` with its sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    learner_path = out_dir / "model.pkl"
    tmp = out_dir / "model.pkl.tmp"
    learn.export(tmp.resolve())
    tmp.replace(learner_path)
    manifest = {
        "kind": kind,
        "version": datetime.now(UTC).strftime("%Y%m%d.%H%M%S"),
        "description": description,
        "sha256": sha256_of(learner_path),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
        "framework": {"fastai": fastai.__version__, "torch": torch.__version__},
        **(extra or {}),
    }
    (out_dir / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return learner_path
