"""fastai-serve on a real 2-node Ray cluster (one machine, two raylets of 1 CPU each): the demo store with
2 replicas per model behind Ray Serve's proxy. Parity with the single-process server, spread over both
nodes, a killed replica, a removed node, and a rolling reload under load."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonclient

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from service.api.app import create_app  # noqa: E402
from service.cli import DEMO_TABULAR, DEMO_VISION  # noqa: E402
from service.monitoring.payload import read_log  # noqa: E402
from service.rayserve.app import application  # noqa: E402
from service.rayserve.pool import deployment_name, replica_counts  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.training import data  # noqa: E402
from tests.helpers import ROOT, clone_store, free_port, make_settings, problem, started_client  # noqa: E402

STORE = ROOT / "model_store"
EXAMPLES = ROOT / "examples"
API_KEY = "ray-test-key"
LOAD_S = 30.0
CLIENTS = 8
REQUEST_TIMEOUT_S = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all((STORE / name / "model.pkl").is_file() for name in (DEMO_TABULAR, DEMO_VISION)),
        reason="demo models not built: run `make models` (make test does)",
    ),
]


def _raylets() -> set[int]:
    """Raylets started from this environment's ray (not another install's, e.g. in a container)."""
    binary = str(Path(ray.__file__).parent / "core" / "src" / "ray" / "raylet" / "raylet")
    found = subprocess.run(["pgrep", "-f", binary], capture_output=True, text=True, check=False)
    return {int(p) for p in found.stdout.split()}


@dataclass
class Deployed:
    cluster: Cluster
    settings: Settings
    url: str
    store: Path
    results: dict[str, Any] = field(default_factory=dict)

    def running(self, model: str) -> int:
        return int(replica_counts(self.settings.ray_app_name).get(model, {}).get("RUNNING", 0))

    def wait_recovered(self, timeout: float = 240.0) -> None:
        """Until every deployment has its replicas running again (after a kill or a lost node)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            app = serve.status().applications.get(self.settings.ray_app_name)
            if app is not None and all(
                d.status == "HEALTHY" and set(d.replica_states) == {"RUNNING"}
                for d in app.deployments.values()
            ):
                return
            time.sleep(1)
        raise AssertionError(f"not recovered in {timeout:g} s: {serve.status()}")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    before = _raylets()
    store = clone_store(STORE, tmp_path_factory.mktemp("ray-store"), [DEMO_TABULAR, DEMO_VISION])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    port = free_port()
    settings = make_settings(
        store,
        api_key=API_KEY,
        # Both ingress replicas log what they answer into one folder (written within 0.2 s).
        log_dir=tmp_path_factory.mktemp("ray-log"),
        log_flush_s=0.2,
        ray_replicas=2,
        ray_ingress_replicas=2,
        # Both nodes' replicas fit on one node after the other is removed.
        ray_num_cpus=0.1,
        ray_proxy_location="HeadOnly",  # one HTTP proxy: both raylets share this machine's ports
        onnx_cache_dir=tmp_path_factory.mktemp("onnx"),
        frontend_dir=ROOT / "frontend",
    )
    try:
        ray.init(address=cluster.address, namespace="fastai-serve", log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(settings), name=settings.ray_app_name, route_prefix="/")
        state = Deployed(cluster, settings, f"http://127.0.0.1:{port}", store)
        state.wait_recovered()
        yield state
        print("\nRay fault and reload counts:", json.dumps(state.results, indent=1))
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    deadline = time.monotonic() + 30
    while (leaked := _raylets() - before) and time.monotonic() < deadline:
        time.sleep(1)
    assert not leaked, f"raylets left running: {leaked}"


@pytest.fixture
async def http(deployed: Deployed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed.url, timeout=REQUEST_TIMEOUT_S + 10) as client:
        yield client


@pytest.fixture(scope="module")
async def local(deployed: Deployed) -> AsyncIterator[httpx.AsyncClient]:
    """The single-process server over the same store and settings: what Ray must answer alike."""
    async for client in started_client(create_app(make_settings(deployed.store, api_key=API_KEY))):
        yield client


def _images() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(EXAMPLES.glob("*.jpg"))]


def _rows_csv() -> bytes:
    return (EXAMPLES / "adult_rows.csv").read_bytes()


def _rows() -> dict[str, Any]:
    with (EXAMPLES / "adult_rows.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "rows": [{k: float(v) if k in data.DEMO_ADULT_CONTINUOUS else v for k, v in r.items()} for r in rows]
    }


def _same_predictions(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert [p["label"] for p in ours["predictions"]] == [p["label"] for p in theirs["predictions"]]
    for a, b in zip(ours["predictions"], theirs["predictions"], strict=True):
        probs_a = a.get("probabilities") or {t["label"]: t["probability"] for t in a["top_k"]}
        probs_b = b.get("probabilities") or {t["label"]: t["probability"] for t in b["top_k"]}
        assert probs_a.keys() == probs_b.keys()
        assert np.allclose(list(probs_a.values()), [probs_b[k] for k in probs_a], atol=1e-6)


async def test_the_contract_through_the_ray_proxy_equals_the_single_server(
    deployed: Deployed, http: httpx.AsyncClient, local: httpx.AsyncClient
) -> None:
    for path in ("/api/v1/models", f"/api/v1/models/{DEMO_TABULAR}/schema", f"/api/v1/models/{DEMO_VISION}"):
        ray_answer, local_answer = (await http.get(path)).json(), (await local.get(path)).json()
        if path.endswith(DEMO_VISION):  # the replicas' runtime (ONNX, one thread each here) and their count
            assert ray_answer.pop("replicas") == {"running": 2, "target": 2, "errors": []}
            assert ray_answer.pop("runtime_note").startswith("ONNX Runtime")
            local_answer.pop("runtime_note")
            assert local_answer.pop("replicas") is None
        assert ray_answer == local_answer
    assert (await http.get("/health/ready")).json()["status"] == "ready"

    rows = _rows()
    tab = await http.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict", json=rows)
    assert tab.status_code == 200, tab.text
    assert tab.headers["x-served-by"].startswith("node ")
    _same_predictions(
        tab.json(), (await local.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict", json=rows)).json()
    )

    files = {"file": ("rows.csv", _rows_csv(), "text/csv")}
    scored = await http.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict/csv", files=files)
    assert scored.status_code == 200, scored.text
    _same_predictions(
        scored.json(), (await local.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict/csv", files=files)).json()
    )

    vis = await http.post(f"/api/v1/vision/{DEMO_VISION}/predict", files=_images())
    assert vis.status_code == 200, vis.text
    assert len(vis.json()["predictions"]) == len(_images()) > 1
    _same_predictions(
        vis.json(), (await local.post(f"/api/v1/vision/{DEMO_VISION}/predict", files=_images())).json()
    )

    v2 = await http.get(f"/v2/models/{DEMO_VISION}")
    assert v2.status_code == 200 and v2.json()["name"] == DEMO_VISION
    # The Open Inference Protocol through Ray, with its reference client (binary tensors).
    client = tritonclient.InferenceServerClient(url=deployed.url.removeprefix("http://"))
    image = tritonclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([(EXAMPLES / "airplane.jpg").read_bytes()], dtype=object))
    result = await asyncio.to_thread(client.infer, DEMO_VISION, [image])
    v1 = vis.json()["predictions"][0]
    assert v1["filename"] == "airplane.jpg"
    assert result.as_numpy("label")[0].decode() == v1["label"]
    assert abs(float(result.as_numpy("probabilities").max()) - v1["top_k"][0]["probability"]) < 1e-6

    # Each kind of refusal, as problem+json, the same as the single server's.
    refusals = [
        ("post", "/api/v1/tabular/nope/predict", {"json": rows}, 404),
        ("post", f"/api/v1/tabular/{DEMO_VISION}/predict", {"json": rows}, 404),
        ("post", f"/api/v1/tabular/{DEMO_TABULAR}/predict", {"json": {"rows": [{"age": "old"}]}}, 422),
        (
            "post",
            f"/api/v1/tabular/{DEMO_TABULAR}/predict",
            {"content": b"a,b", "headers": {"content-type": "text/csv"}},
            415,
        ),
        (
            "post",
            f"/api/v1/vision/{DEMO_VISION}/predict",
            {"files": {"files": ("x.png", b"not an image", "image/png")}},
            415,
        ),
        (
            "post",
            f"/api/v1/vision/{DEMO_VISION}/predict",
            {"files": {"files": ("cut.jpg", (EXAMPLES / "cat.jpg").read_bytes()[:200], "image/jpeg")}},
            422,
        ),
        ("post", f"/api/v1/models/{DEMO_VISION}/reload", {}, 401),
        (
            "post",
            f"/api/v1/vision/{DEMO_VISION}/predict",
            {
                "content": b"x" * (21 * 1024 * 1024),
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            413,
        ),
    ]
    for method, path, kwargs, status in refusals:
        ray_body = problem(await getattr(http, method)(path, **kwargs), status)
        local_body = problem(await getattr(local, method)(path, **kwargs), status)
        assert {k: v for k, v in ray_body.items() if k != "instance"} == {
            k: v for k, v in local_body.items() if k != "instance"
        }


@dataclass
class LoadReport:
    ok: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    slowest_s: float = 0.0
    served_by: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": dict(self.failed), "slowest_s": round(self.slowest_s, 2)}


async def _load(url: str, seconds: float, *, clients: int = CLIENTS, during: Any = None) -> LoadReport:
    """`clients` clients sending tabular rows and images for `seconds`; `during` runs meanwhile."""
    report = LoadReport()
    rows = _rows()
    images = _images()[:2]
    stop = time.monotonic() + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S + 10) as http:
            n = 0
            while time.monotonic() < stop:
                n += 1
                started = time.monotonic()
                if (i + n) % 2:
                    response = await http.post(f"/api/v1/vision/{DEMO_VISION}/predict", files=images)
                else:
                    response = await http.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict", json=rows)
                report.slowest_s = max(report.slowest_s, time.monotonic() - started)
                if response.status_code == 200:
                    report.ok += 1
                    report.served_by[response.headers["x-served-by"]] += 1
                else:
                    report.failed[response.status_code] += 1
                    report.failures.append(response.text[:300])
                    assert response.status_code >= 500, response.text
                    assert response.headers["content-type"].startswith("application/problem+json"), (
                        response.text
                    )

    async def side() -> None:
        if during is not None:
            await during()

    await asyncio.gather(*(client(i) for i in range(clients)), side())
    return report


def _nodes(served_by: Counter[str]) -> set[str]:
    return {who.split(" replica ")[0] for who in served_by}


async def test_the_fronts_log_every_prediction_the_cluster_answers(
    deployed: Deployed, http: httpx.AsyncClient
) -> None:
    """Ray's ingress replicas run the app: each logs the items its model replicas answered, under the
    answers' ids, into the one dataset (two writers beside each other)."""
    answered: dict[str, str] = {}  # id -> model
    for k in range(8):
        rows = await http.post(f"/api/v1/tabular/{DEMO_TABULAR}/predict", json=_rows())
        images = await http.post(f"/api/v1/vision/{DEMO_VISION}/predict", files=_images()[: 1 + k % 2])
        answered |= {p["id"]: DEMO_TABULAR for p in rows.json()["predictions"]}
        answered |= {p["id"]: DEMO_VISION for p in images.json()["predictions"]}
    assert deployed.settings.log_dir is not None
    deadline = time.monotonic() + 30
    while True:
        table = read_log(deployed.settings.log_dir)
        logged = (
            dict(zip(table.column("id").to_pylist(), table.column("model").to_pylist(), strict=True))
            if table.num_rows
            else {}
        )
        if answered.keys() <= logged.keys() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {i: m for i, m in logged.items() if i in answered} == answered


async def test_replicas_on_both_nodes_answer_32_clients(deployed: Deployed) -> None:
    report = await _load(deployed.url, 10.0, clients=32)
    assert not report.failed, report.failures[:3]
    assert len(_nodes(report.served_by)) == 2, report.served_by
    assert len(report.served_by) == 4, report.served_by  # 2 replicas of each model
    deployed.results["spread_32_clients"] = {**report.as_dict(), "served_by": dict(report.served_by)}


async def test_metrics_say_where_the_clusters_numbers_are(
    deployed: Deployed, http: httpx.AsyncClient
) -> None:
    """/metrics is the answering ingress replica's; the replicas' batch metrics are on Ray's exporters."""
    ours = (await http.get("/metrics")).text
    assert ours.startswith("# fastai-serve on Ray") and "fastai_serve_requests_total{" in ours
    # What serves each model where: its replicas' runtime, device and precision (issue 26).
    info = [line for line in ours.splitlines() if line.startswith("fastai_serve_model_info{")]
    for model in (DEMO_TABULAR, DEMO_VISION):
        assert any(f'model="{model}"' in line and 'device="cpu"' in line for line in info), info
    await http.post(f"/api/v1/vision/{DEMO_VISION}/predict", files=_images())
    ports = [node["MetricsExportPort"] for node in ray.nodes() if node["Alive"]]
    deadline = time.monotonic() + 90  # Ray's agents export every few seconds
    found = ""
    while time.monotonic() < deadline and not found:
        for port in ports:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            found = next(
                (line for line in text.splitlines() if line.startswith("ray_fastai_serve_batch_size")), ""
            )
            if found:
                break
        await asyncio.sleep(2)
    assert f'model="{DEMO_VISION}"' in found or 'model="' in found, found


def _replica_actor(model: str) -> tuple[str, Any]:
    """One of the model's replica actors (Serve names them SERVE_REPLICA::<app>#<deployment>#<id>)."""
    names = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if deployment_name(model) in a["name"]
    ]
    names = [a for a in names if a["name"].startswith("SERVE_REPLICA")]
    assert len(names) == 2, names
    return names[0]["name"], ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])


async def test_a_killed_replica_fails_only_its_own_requests(deployed: Deployed) -> None:
    killed: list[str] = []

    async def kill() -> None:
        await asyncio.sleep(LOAD_S / 3)
        name, actor = _replica_actor(DEMO_VISION)
        killed.append(name.rsplit("#", 1)[1])
        ray.kill(actor, no_restart=True)

    report = await _load(deployed.url, LOAD_S, during=kill)
    deployed.results["replica_killed"] = report.as_dict()
    assert report.slowest_s < REQUEST_TIMEOUT_S
    assert sum(report.failed.values()) <= CLIENTS  # at most the requests in flight on the killed replica
    await asyncio.to_thread(deployed.wait_recovered)
    after = await _load(deployed.url, 5.0)
    deployed.results["after_replica_recovery"] = after.as_dict()
    assert after.ok and not after.failed, after.failures[:3]
    replicas = {who.split(" replica ")[1] for who in after.served_by}
    assert killed and killed[0] not in replicas and len(replicas) == 4, (killed, after.served_by)


async def test_a_rolling_reload_under_load_drops_nothing(deployed: Deployed, http: httpx.AsyncClient) -> None:
    """A new learner file (a re-export: same model, other bytes) rolls through both replicas, then the
    ingress swaps; every request of the 30 s meanwhile succeeds."""
    from fastai.learner import load_learner

    folder = deployed.store / DEMO_VISION
    before = (await http.get(f"/api/v1/models/{DEMO_VISION}")).json()
    learn = load_learner(folder / "model.pkl")
    fresh = folder.parent / "fresh.pkl"
    learn.export(fresh)
    sha = hashlib.sha256(fresh.read_bytes()).hexdigest()
    manifest = json.loads((folder / "model.json").read_text())
    assert sha != manifest["sha256"]
    (folder / "model.pkl").unlink()  # a hard link to the demo store's file: replace, never write through
    shutil.move(fresh, folder / "model.pkl")
    (folder / "model.json").unlink()
    (folder / "model.json").write_text(json.dumps({**manifest, "sha256": sha}))
    reloaded: dict[str, Any] = {}

    async def reload() -> None:
        await asyncio.sleep(3)
        answer = await http.post(f"/api/v1/models/{DEMO_VISION}/reload", headers={"X-API-Key": API_KEY})
        reloaded["status"], reloaded["body"] = answer.status_code, answer.json()

    report = await _load(deployed.url, LOAD_S, during=reload)
    deployed.results["rolling_reload"] = report.as_dict()
    assert reloaded["status"] == 200, reloaded
    assert not report.failed, report.failures[:3]
    after = (await http.get(f"/api/v1/models/{DEMO_VISION}")).json()
    assert after["sha256"] == sha != before["sha256"]
    assert deployed.running(DEMO_VISION) == 2


async def test_a_lost_node_fails_only_requests_in_flight_there(deployed: Deployed) -> None:
    worker = next(node for node in deployed.cluster.worker_nodes)

    async def remove() -> None:
        await asyncio.sleep(LOAD_S / 3)
        await asyncio.to_thread(deployed.cluster.remove_node, worker)

    report = await _load(deployed.url, LOAD_S, during=remove)
    deployed.results["node_removed"] = report.as_dict()
    assert report.slowest_s < REQUEST_TIMEOUT_S
    assert sum(report.failed.values()) <= 2 * CLIENTS  # in flight on its ingress and model replicas
    await asyncio.to_thread(deployed.wait_recovered)
    after = await _load(deployed.url, 5.0)
    deployed.results["after_node_recovery"] = after.as_dict()
    assert after.ok and not after.failed, after.failures[:3]
    assert _nodes(after.served_by) == {f"node {deployed.cluster.head_node.node_id[:12]}"}, after.served_by
    deployed.cluster.add_node(num_cpus=1)  # as it was, for any test after this one
