"""Reading exported learners from the model store and making them ready to serve."""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

MSG_NOT_A_LEARNER = "{file} does not hold a fastai Learner (found {type})"
MSG_OUTSIDE_STORE = "{file} is outside the model store; only files inside it are ever unpickled"


class LoadError(RuntimeError):
    """A learner file could not be turned into a servable learner; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_inside(path: Path, root: Path) -> Path:
    """Resolve `path` and refuse it unless it stays inside `root` (symlinks included)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise LoadError(MSG_OUTSIDE_STORE.format(file=path))
    return resolved


def load_exported_learner(path: Path) -> Any:
    """Unpickle a `Learner.export()` file onto the CPU.

    `torch.load` is called directly: fastai's `load_learner` turns a missing module into an
    `UnboundLocalError` that hides the real reason.
    """
    from fastai.learner import Learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(learn, Learner):
        raise LoadError(MSG_NOT_A_LEARNER.format(file=path.name, type=type(learn).__name__))
    return learn


def prepare_for_serving(learn: Any, device: torch.device) -> Any:
    """Strip progress bars and logging once, move data pipeline and model to `device`, eval mode."""
    from fastai.callback.progress import ProgressCallback
    from fastcore.basics import noop

    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = noop
    learn.dls.to(device)
    learn.model.to(device).eval()
    return learn
