"""`make gpu-check`'s CPU half (issue 26), in the normal suite so that the prepared GPU script cannot rot:
every kind and task loads, ONNX Runtime matches torch wherever the server would serve it, the server answers
every model on its device and labels it in /metrics, images/s per batch; no CUDA device is said as such."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_check
from service.inference.kinds import served_types
from tests.helpers import ROOT, TABULAR, VISION


def test_the_cpu_half_checks_every_kind_and_task(
    trained_store: Path, task_store: Path, text_store: Path, collab_store: Path, seg_store: Path
) -> None:
    result = gpu_check.run(
        [trained_store, task_store, text_store, collab_store, seg_store], batches=(1, 4), seconds=0.2
    )
    assert result["cuda"] is torch.cuda.is_available()
    served = {(r["kind"], r["task"]) for r in result["parity"] if "kind" in r}
    assert served == {
        (str(t.kind), str(t.task)) for t in served_types()
    }  # every kind and task the server serves
    assert all(r["ok"] for r in result["parity"]), [r for r in result["parity"] if not r["ok"]]
    by_model = {(r["model"], r["runtime"]): r for r in result["parity"]}
    assert (
        by_model[(TABULAR, "onnx")]["served"] and by_model[(TABULAR, "onnx")]["max_gap"] <= gpu_check.PARITY
    )
    http = result["http"]
    assert http["ok"] and set(http["models"]) == set(result["models"])
    assert http["metrics_device_labels"] == len(result["models"])
    assert [(r["model"], r["batch"]) for r in result["throughput"] if r["precision"] == "fp32"] == [
        (VISION, 1),
        (VISION, 4),
    ]
    assert all(r["images_per_s"] > 0 for r in result["throughput"])
    text = "\n".join(gpu_check.lines(result))
    if not torch.cuda.is_available():
        assert "no CUDA device" in text and http["device"] == "cpu"
    assert text.endswith("all checks passed")


@pytest.mark.slow
def test_make_gpu_check_writes_its_json_and_says_what_it_ran_on(tmp_path: Path) -> None:
    """The script as `make gpu-check` runs it: tiny learners built, one JSON, a table, exit status 0."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--store", str(tmp_path / "none"), "--seconds", "0.1"],
        cwd=ROOT,
        env={"OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["ok"] and len(result["models"]) >= 11
    assert ("no CUDA device" in done.stdout) is not torch.cuda.is_available()
