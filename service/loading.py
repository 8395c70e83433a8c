"""Reading exported learners from the model store and making them ready to serve."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.errors import (
    MSG_MISSING_MODULE,
    MSG_NOT_A_LEARNER,
    MSG_OLD_FASTAI,
    MSG_OUTSIDE_STORE,
    LoadError,
)

logger = logging.getLogger(__name__)

# The names `Learner.export()` files go by in a model's folder, in order of preference.
LEARNER_FILES = ("model.pkl", "export.pkl")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_learner_file(folder: Path) -> Path | None:
    """The exported learner in a model's folder, or None when there is none."""
    return next((folder / name for name in LEARNER_FILES if (folder / name).is_file()), None)


def ensure_inside(path: Path, root: Path) -> Path:
    """Resolve `path` and refuse it unless it stays inside `root` (symlinks included)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise LoadError(MSG_OUTSIDE_STORE.format(file=path))
    return resolved


# Failures an export from an older fastai, a notebook or Windows produces; anything else (a corrupt
# file, a truncated download) is reported as it is.
COMPAT_CANDIDATES = (ImportError, AttributeError, NotImplementedError, TypeError, RuntimeError)


@dataclass
class LoadedLearner:
    learn: Any
    compat: dict[str, Any] | None = None  # {"loaded_with", "notes"} when the compat path was needed
    made_by: str | None = None


def load_exported_learner(path: Path) -> LoadedLearner:
    """Unpickle a `Learner.export()` file onto the CPU, through the compat loader when plain loading fails.

    `torch.load` is called directly: fastai's `load_learner` turns a missing module into an
    `UnboundLocalError` that hides the real reason.
    """
    from fastai.learner import Learner

    from service import compat

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = LoadedLearner(torch.load(path, map_location="cpu", weights_only=False))
    except COMPAT_CANDIDATES as first:
        logger.info(
            "plain load of %s failed (%s: %s); trying the compat loader", path, type(first).__name__, first
        )
        report = compat.report_for(path)
        made_by = report.made_by
        try:
            learn = compat.load_with_compat(path, report)
        except ModuleNotFoundError as exc:
            raise LoadError(MSG_MISSING_MODULE.format(module=exc.name, made_by=made_by)) from None
        except Exception as exc:  # noqa: BLE001 - whatever it is, the message must say what to do
            reason = f"{type(exc).__name__}: {exc}"
            raise LoadError(MSG_OLD_FASTAI.format(made_by=made_by, reason=reason)) from None
        notes = report.notes or [
            f"plain loading failed with {type(first).__name__}; the compat unpickler succeeded"
        ]
        loaded = LoadedLearner(learn, {"loaded_with": compat.LOADED_WITH, "notes": notes}, report.made_by)
    if not isinstance(loaded.learn, Learner):
        raise LoadError(MSG_NOT_A_LEARNER.format(file=path.name, type=type(loaded.learn).__name__))
    return loaded


def prepare_for_serving(learn: Any, device: torch.device) -> Any:
    """Strip progress bars and logging once, move data pipeline and model to `device`, eval mode."""
    from fastai.callback.progress import ProgressCallback
    from fastcore.basics import noop

    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = noop
    # Learners saved in mixed precision predict in fp32 on any device (what load_learner(cpu=True) does).
    if hasattr(learn, "channels_last"):
        learn = learn.to_contiguous(to_fp32=True)
    elif hasattr(learn, "mixed_precision"):
        learn = learn.to_fp32()
    learn.dls.to(device)
    learn.model.to(device).eval()
    return learn
