"""Models being trained into a store, as the server shows them: `<store>/.training.json`.

`fastai-serve train demo` builds each demo model in `<store>/.building/` (a hidden folder the registry never
loads) and moves the finished folder into the store with one rename, so a server never sees half a model.
Meanwhile it records here what it is training, and the fit loop (`common.fit`) adds each finished epoch:
`{name: {"status": "training"|"failed", "kind", "task", "epoch", "epochs", "started_at", "pid", "error"}}`.
A name leaves the file once its folder is in the store. Only the demo builder writes the file (one process);
readers (the server, any worker) take whatever was last replaced in whole.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROGRESS_FILE = ".training.json"
BUILDING_DIR = ".building"
TRAINING = "training"
FAILED = "failed"


def progress_path(store: Path) -> Path:
    return store / PROGRESS_FILE


def read_progress(store: Path) -> dict[str, dict[str, Any]]:
    """What is training (or failed to train) into `store`; empty when nothing is or the file is unreadable."""
    try:
        data = json.loads(progress_path(store).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def _write(store: Path, board: dict[str, dict[str, Any]]) -> None:
    path = progress_path(store)
    if not board:
        path.unlink(missing_ok=True)
        return
    store.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{PROGRESS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(board, indent=1) + "\n")
    tmp.replace(path)  # a reader gets the old or the new file, never half of one


def _update(store: Path, name: str, **fields: Any) -> None:
    board = read_progress(store)
    board[name] = {**board.get(name, {}), **fields}
    _write(store, board)


def clear(store: Path, *names: str) -> None:
    """Take `names` off the board (built, given up, or left over from a builder that died)."""
    board = read_progress(store)
    if any(n in board for n in names):
        _write(store, {k: v for k, v in board.items() if k not in names})


@dataclass(frozen=True)
class Reporter:
    """Where the epochs of the model being built now go."""

    store: Path
    name: str

    def epoch(self, done: int, total: int) -> None:
        _update(self.store, self.name, epoch=done, epochs=total)


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("training_reporter", default=None)


@contextlib.contextmanager
def training(store: Path, name: str, *, kind: str, task: str) -> Iterator[Reporter]:
    """Mark `name` as training in `store` while the block runs; `failed` (with why) if it raises, off the
    board when it ends otherwise. Fits inside the block report their epochs (`current`)."""
    reporter = Reporter(store, name)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    _update(
        store,
        name,
        status=TRAINING,
        kind=kind,
        task=task,
        epoch=0,
        epochs=None,
        started_at=started,
        pid=os.getpid(),
        error=None,
    )
    token = _current.set(reporter)
    try:
        yield reporter
    except Exception as exc:
        _update(store, name, status=FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    except BaseException:
        clear(store, name)  # interrupted (Ctrl-C, SIGTERM): not a failure of the model, and not training
        raise
    finally:
        _current.reset(token)


def current() -> Reporter | None:
    """The model whose training is being reported now, if any."""
    return _current.get()


def epoch_callback(reporter: Reporter) -> Any:
    """A fastai callback that records each finished epoch of the current fit."""
    from fastai.callback.core import Callback

    class ReportEpochs(Callback):
        order = 65  # after the Recorder

        def after_epoch(self) -> None:
            reporter.epoch(self.epoch + 1, self.n_epoch)

    return ReportEpochs()
