"""`fastai-serve serve --ray ADDRESS`: one command deploys the store on an existing Ray cluster (the 2-node
test cluster: two raylets of 1 CPU each) with its defaults, serves it until stopped, then removes its
application (the cluster stays); a deployment that cannot be placed is said on the console, and SIGTERM
ends the waiting command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from service.cli import DEMO_TABULAR, DEMO_VISION  # noqa: E402
from tests.helpers import ROOT, clone_store, free_port  # noqa: E402

STORE = ROOT / "model_store"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (STORE / DEMO_TABULAR / "model.pkl").is_file(), reason="demo models not built"),
]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _serve(
    cluster: Cluster, tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    store = clone_store(STORE, tmp_path / "store", [DEMO_TABULAR, DEMO_VISION])
    port = free_port()
    # The cluster's defaults as a new user has them: no FASTAI_SERVE_RAY_* from the caller's environment.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FASTAI_SERVE_RAY_")}
    environment = {
        **inherited,
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_ONNX_CACHE_DIR": str(tmp_path / "onnx"),
        **env,
    }
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--ray", cluster.address, *args]
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return server, port, log


def _application_removed(cluster: Cluster) -> bool:
    if not ray.is_initialized():
        ray.init(address=cluster.address, namespace="fastai-serve", log_to_driver=False)
    return "fastai-serve" not in serve.status().applications


def test_the_defaults_serve_two_models_with_two_replicas_on_a_two_cpu_cluster(
    two_nodes: Cluster, tmp_path: Path
) -> None:
    # The case: 2 models x 2 replicas on 2 nodes of 1 CPU, nothing configured: each replica asks
    # the share with which all fit (0.5), instead of 1 CPU each and never ready.
    grpc_port = free_port()
    server, port, log = _serve(two_nodes, tmp_path, "--replicas", "2", "--grpc-port", str(grpc_port))
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
        assert ready is not None and ready.status_code == 200, log.read_text()[-3000:]
        assert "4 replica(s) of 0.5 CPU each" in log.read_text()
        # Ready means a replica of every model runs; the second may still be starting (CI saw 1 of 2).
        replicas = _replicas_once_all_run(port, deadline)
        assert replicas == {"running": 2, "target": 2, "errors": []}, log.read_text()[-3000:]
        csv = (ROOT / "examples" / "adult_rows.csv").read_bytes()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/tabular/{DEMO_TABULAR}/predict/csv",
            files={"file": ("rows.csv", csv, "text/csv")},
            timeout=30,
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4
        assert answer.headers["x-served-by"].startswith("node ")
        # The same front serves V2 over gRPC, through the same replicas.
        image = (ROOT / "examples" / "airplane.jpg").read_bytes()
        rest = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/vision/{DEMO_VISION}/predict",
            files={"files": ("airplane.jpg", image, "image/jpeg")},
            timeout=30,
        )
        tensor = grpcclient.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        try:
            label = client.infer(DEMO_VISION, [tensor]).as_numpy("label")[0]
        finally:
            client.close()
        assert label.decode() == rest.json()["predictions"][0]["label"]
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        assert _application_removed(two_nodes)  # removed on stop; the cluster stays
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.parametrize("front", ["local", "proxy"])
def test_a_deployment_that_cannot_be_placed_is_said_and_sigterm_ends_the_wait(
    two_nodes: Cluster, tmp_path: Path, front: str
) -> None:
    # 4 replicas of 0.8 CPU (5 with the proxy front's ingress) on two nodes of 1 CPU: one fits on each.
    server, _, log = _serve(
        two_nodes,
        tmp_path,
        "--replicas",
        "2",
        FASTAI_SERVE_RAY_NUM_CPUS="0.8",
        FASTAI_SERVE_RAY_FRONT=front,
        FASTAI_SERVE_RAY_PROXY_LOCATION="HeadOnly",
    )
    try:
        replicas = 4 if front == "local" else 5
        started = time.monotonic()
        said = waited = ""
        while time.monotonic() - started < 60 and server.poll() is None and not waited:
            text = log.read_text()
            said = said or ("Ray cannot place" in text and text) or ""
            waited = ("is not running after" in text and text) or ""
            time.sleep(1)
        assert f"Ray cannot place {replicas} replica(s) of 0.8 CPU each" in said, log.read_text()[-3000:]
        assert "2 free (1, 1 on its 2 node(s))" in said and "FASTAI_SERVE_RAY_NUM_CPUS" in said
        # Serve's own words for what waits, on the console within WAIT_WARN_S (30 s) and a few polls.
        assert "is not running after 3" in waited, log.read_text()[-3000:]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)  # the issue saw a waiting CLI ignore SIGTERM for longer
        assert _application_removed(two_nodes)
    finally:
        if server.poll() is None:
            server.kill()


def _replicas_once_all_run(port: int, deadline: float) -> dict[str, object]:
    """The demo model's replica counts, polled until all its target replicas run or the deadline passes."""
    while True:
        detail = httpx.get(f"http://127.0.0.1:{port}/api/v1/models/{DEMO_TABULAR}", timeout=30).json()
        replicas: dict[str, object] = detail["replicas"]
        if replicas["running"] == replicas["target"] or time.monotonic() > deadline:
            return replicas
        time.sleep(0.5)
