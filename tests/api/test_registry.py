"""Model store discovery and failure isolation, through the HTTP API of a fresh app."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import torch

from service.api.app import create_app
from service.registry import ModelRegistry
from tests.helpers import (
    TABULAR,
    VISION,
    client_for,
    clone_store,
    image_bytes,
    make_settings,
)


@pytest.fixture
async def broken_client(trained_store: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = clone_store(trained_store, tmp_path / "store")
    (store / "corrupt").mkdir()
    (store / "corrupt" / "model.pkl").write_bytes(b"this is not a pickle")
    (store / "needs-module").mkdir()
    # A pickle that references a module this machine does not have.
    (store / "needs-module" / "model.pkl").write_bytes(
        b"\x80\x02cno_such_module_xyz\nThing\nq\x00)\x81q\x01."
    )
    (store / "empty").mkdir()
    async for c in client_for(store):
        yield c


async def test_failed_models_do_not_stop_the_others(broken_client: httpx.AsyncClient) -> None:
    ready = await broken_client.get("/health/ready")
    assert ready.status_code == 200
    states = ready.json()["models"]
    assert states == {
        "corrupt": "failed",
        "empty": "failed",
        "needs-module": "failed",
        TABULAR: "ready",
        VISION: "ready",
    }
    models = {m["name"]: m for m in (await broken_client.get("/api/v1/models")).json()["models"]}
    assert (
        "needs the Python module 'no_such_module_xyz', which the server cannot import"
        in (models["needs-module"]["error"])
    )
    assert "no model.pkl or export.pkl" in models["empty"]["error"]
    assert models["corrupt"]["error"]
    served = await broken_client.post(
        f"/api/v1/vision/{VISION}/predict", files={"files": ("a.png", image_bytes())}
    )
    assert served.status_code == 200


async def test_failed_model_is_503_with_reason(broken_client: httpx.AsyncClient) -> None:
    response = await broken_client.post("/api/v1/tabular/needs-module/predict", json={"rows": [{"a": 1}]})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "failed to load" in response.json()["detail"]
    assert "no_such_module_xyz" in response.json()["detail"]


async def test_bare_export_pkl_is_enough(trained_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "bare").mkdir(parents=True)
    shutil.copy(trained_store / VISION / "model.pkl", store / "bare" / "export.pkl")
    async for client in client_for(store):
        detail = (await client.get("/api/v1/models/bare")).json()
        assert detail["status"] == "ready"
        assert detail["kind"] == "vision"  # inferred from the learner, no manifest
        assert detail["version"] == detail["sha256"][:12]


async def test_sha256_mismatch_refuses_to_unpickle(trained_store: Path, tmp_path: Path) -> None:
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    manifest_path = store / TABULAR / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.unlink()  # hard-linked: write a new file instead of editing the shared one
    manifest_path.write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    async for client in client_for(store):
        summary = (await client.get(f"/api/v1/models/{TABULAR}")).json()
        assert summary["status"] == "failed"
        assert "refusing to unpickle" in summary["error"]
        assert (await client.get("/health/ready")).status_code == 503


async def test_symlink_out_of_the_store_is_refused(trained_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "escape").mkdir(parents=True)
    (store / "escape" / "model.pkl").symlink_to(trained_store / VISION / "model.pkl")
    async for client in client_for(store):
        summary = (await client.get("/api/v1/models/escape")).json()
        assert summary["status"] == "failed"
        assert "outside the model store" in summary["error"]


async def test_cuda_requested_without_cuda_fails_models_not_the_process(
    trained_store: Path, tmp_path: Path
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    async for client in client_for(store, device="cuda"):
        assert (await client.get("/health/live")).status_code == 200
        summary = (await client.get(f"/api/v1/models/{TABULAR}")).json()
        assert summary["status"] == "failed"
        assert "CUDA is not available" in summary["error"]


async def test_loading_model_is_503_and_not_ready(
    trained_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    release = threading.Event()
    original = ModelRegistry.load_all

    def slow_load_all(self: ModelRegistry) -> None:
        release.wait(30)
        original(self)

    monkeypatch.setattr(ModelRegistry, "load_all", slow_load_all)
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/health/live")).json() == {"status": "ok"}
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json() == {"status": "not_ready", "models": {TABULAR: "loading"}}
            response = await client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": [{}]})
            assert response.status_code == 503
            assert response.json()["detail"] == f"model '{TABULAR}' is still loading"
            release.set()
            await asyncio.to_thread(app.state.registry.wait_loaded, 60)
            assert (await client.get("/health/ready")).status_code == 200
