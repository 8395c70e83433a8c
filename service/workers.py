"""Several uvicorn worker processes serving as one server.

Each worker is a whole copy of the service (every model loaded, its own batchers and model threads), so
`/metrics` and `/health/ready` must speak for all of them, whichever worker a request reaches. The CLI
gives the workers a shared folder (prometheus-client's `PROMETHEUS_MULTIPROC_DIR`): Prometheus values are
written there by every worker and summed on read (prometheus-client's multiprocess mode), and each worker
publishes its readiness there as `ready-<pid>.json`, refreshed every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from service.registry import ModelRegistry, ModelStatus

SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STATE_PREFIX = "ready-"
PUBLISH_EVERY_S = 1.0
# A model's state across workers is the worst of its states in each.
_WORST_FIRST = (ModelStatus.FAILED.value, ModelStatus.LOADING.value, ModelStatus.READY.value)


def shared_dir() -> Path | None:
    """The folder the workers share, or None for a single process."""
    value = os.environ.get(SHARED_DIR_ENV, "").strip()
    return Path(value) if value else None


@dataclass(frozen=True)
class WorkerState:
    pid: int
    loading_done: bool
    models: dict[str, str]

    @property
    def ready(self) -> bool:
        return self.loading_done and ModelStatus.READY.value in self.models.values()


def state_of(registry: ModelRegistry) -> WorkerState:
    """This process's readiness, as `/health/ready` of a single process computes it."""
    return WorkerState(
        pid=os.getpid(),
        loading_done=registry.loading_done,
        models={entry.name: entry.status.value for entry in registry.entries()},
    )


def publish(folder: Path, state: WorkerState) -> None:
    """Write this worker's state atomically: a reader never sees half a file."""
    path = folder / f"{STATE_PREFIX}{state.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": state.pid, "loading_done": state.loading_done, "models": state.models}))
    tmp.replace(path)


async def publish_forever(folder: Path, registry: ModelRegistry) -> None:
    """Keep this worker's published state current (loads, reloads, faults) until cancelled."""
    try:
        while True:
            publish(folder, state_of(registry))
            await asyncio.sleep(PUBLISH_EVERY_S)
    finally:
        with contextlib.suppress(OSError):
            (folder / f"{STATE_PREFIX}{os.getpid()}.json").unlink()


def _alive(pid: int) -> bool:
    """Whether `pid` still runs. A killed worker stays a zombie until the supervisor reaps it (uvicorn
    checks its workers every half second), and a zombie still answers signal 0: its state in /proc says so."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""  # no procfs (macOS): fall back to signal 0
    if stat:
        # The state letter follows the command name, which is in parentheses and may contain spaces.
        return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_states(folder: Path) -> list[WorkerState]:
    """The published state of every worker still running (a killed worker's file is ignored)."""
    states = []
    for path in sorted(folder.glob(f"{STATE_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being replaced right now: the next probe reads it
        if _alive(int(data["pid"])):
            states.append(WorkerState(int(data["pid"]), bool(data["loading_done"]), dict(data["models"])))
    return states


def combined_models(states: list[WorkerState]) -> dict[str, str]:
    """Each model's state across workers: ready only where it is ready in every worker."""
    names = sorted({name for state in states for name in state.models})
    combined = {}
    for name in names:
        seen = {state.models.get(name, ModelStatus.LOADING.value) for state in states}
        combined[name] = next(s for s in _WORST_FIRST if s in seen)
    return combined
