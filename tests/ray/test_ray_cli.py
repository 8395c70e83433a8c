"""`fastai-serve serve --ray ADDRESS`: one command deploys the store on an existing Ray cluster, serves it
through Serve's proxy until stopped, then removes its application (the cluster stays)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from service.cli import DEMO_TABULAR  # noqa: E402
from tests.helpers import ROOT, clone_store, free_port  # noqa: E402

STORE = ROOT / "model_store"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (STORE / DEMO_TABULAR / "model.pkl").is_file(), reason="demo models not built"),
]


def test_one_command_serves_the_store_on_a_ray_cluster(tmp_path: Path) -> None:
    store = clone_store(STORE, tmp_path / "store", [DEMO_TABULAR])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    port = free_port()
    env = {
        **os.environ,
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_RAY_NUM_CPUS": "0.25",
        "FASTAI_SERVE_ONNX_CACHE_DIR": str(tmp_path / "onnx"),
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--ray", cluster.address, "--replicas", "2"]
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert ready is not None and ready.status_code == 200, (tmp_path / "serve.log").read_text()[-3000:]
        # Ready means a replica of every model runs; the second may still be starting (CI saw 1 of 2).
        replicas = _replicas_once_all_run(port, deadline)
        log_tail = (tmp_path / "serve.log").read_text()[-3000:]
        assert replicas == {"running": 2, "target": 2, "errors": []}, log_tail
        csv = (ROOT / "examples" / "adult_rows.csv").read_bytes()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/tabular/{DEMO_TABULAR}/predict/csv",
            files={"file": ("rows.csv", csv, "text/csv")},
            timeout=30,
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4
        assert answer.headers["x-served-by"].startswith("node ")
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        ray.init(address=cluster.address, namespace="fastai-serve", log_to_driver=False)
        assert "fastai-serve" not in serve.status().applications  # removed on stop; the cluster stays
    finally:
        if server.poll() is None:
            server.kill()
        ray.shutdown()
        cluster.shutdown()


def _replicas_once_all_run(port: int, deadline: float) -> dict[str, object]:
    """The demo model's replica counts, polled until all its target replicas run or the deadline passes."""
    while True:
        detail = httpx.get(f"http://127.0.0.1:{port}/api/v1/models/{DEMO_TABULAR}", timeout=30).json()
        replicas: dict[str, object] = detail["replicas"]
        if replicas["running"] == replicas["target"] or time.monotonic() > deadline:
            return replicas
        time.sleep(0.5)
