"""The shared readiness folder of several workers: which published states count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from service.registry import ModelStatus
from service.workers import WorkerState, combined_models, live_states, publish


def test_a_killed_worker_not_yet_reaped_is_not_counted(tmp_path: Path) -> None:
    """A worker killed a moment ago is a zombie until the supervisor reaps it: not counted as running."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        publish(tmp_path, WorkerState(child.pid, True, {"m": ModelStatus.READY.value}))
        publish(tmp_path, WorkerState(os.getpid(), True, {"m": ModelStatus.READY.value}))
        assert {s.pid for s in live_states(tmp_path)} == {child.pid, os.getpid()}
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, but left unreaped: a zombie
        assert Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert [s.pid for s in live_states(tmp_path)] == [os.getpid()]
    finally:
        child.kill()
        child.wait()
    assert [s.pid for s in live_states(tmp_path)] == [os.getpid()]


def test_a_model_is_ready_only_where_every_worker_has_it_ready() -> None:
    states = [
        WorkerState(1, True, {"a": "ready", "b": "ready"}),
        WorkerState(2, True, {"a": "loading", "b": "ready"}),
        WorkerState(3, False, {"b": "failed"}),
    ]
    assert combined_models(states) == {"a": "loading", "b": "failed"}
