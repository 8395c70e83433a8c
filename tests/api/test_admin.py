"""Admin reloads (API key, atomic swap, no dropped requests) and faults that stay with their model."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from service.errors import (
    MSG_ADMIN_DISABLED,
    MSG_API_KEY_MISSING,
    MSG_API_KEY_WRONG,
    MSG_MODEL_NAN,
)
from service.training import data
from service.training.common import FitOptions
from service.training.tabular import TabularRecipe, train_tabular
from tests.helpers import TABULAR, VISION, adult_rows, client_for, clone_store, image_bytes, problem

KEY = "s3cret-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def store(trained_store: Path, tmp_path: Path) -> Path:
    return clone_store(trained_store, tmp_path / "store")


@pytest.fixture
async def admin(store: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(store, api_key=KEY):
        yield c


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    """Another version of the tabular model (other seed, other weights) to swap in."""
    folder = tmp_path_factory.mktemp("v2")
    csv = folder / "adult.csv"
    adult_frame.to_csv(csv, index=False)
    train_tabular(
        TabularRecipe(
            csv=csv,
            target=data.ADULT_TARGET,
            cat_names=data.ADULT_CATEGORICAL,
            cont_names=data.ADULT_CONTINUOUS,
            out_dir=folder / "model",
            layers=[20, 10],
            epochs=1,
            seed=99,
            fit=FitOptions(quiet=True),
        )
    )
    return folder / "model"


def _replace(src: Path, dst: Path) -> None:
    """Swap files in a cloned store: unlink first, the clone's files are hard links to the fixture's."""
    for name in ("model.pkl", "model.json"):
        (dst / name).unlink(missing_ok=True)
        shutil.copy(src / name, dst / name)


async def _predict(client: httpx.AsyncClient, rows: list[dict[str, object]]) -> httpx.Response:
    # One request id: the answers' item ids are the same, so whole answers compare.
    headers = {"X-Request-ID": "admin-test"}
    return await client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows}, headers=headers)


# --- the key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"/api/v1/models/{TABULAR}/reload", "/api/v1/models/reload"])
async def test_admin_is_disabled_without_a_configured_key(client: httpx.AsyncClient, path: str) -> None:
    body = problem(await client.post(path, headers=AUTH), 403)
    assert body["detail"] == MSG_ADMIN_DISABLED


@pytest.mark.parametrize(
    ("headers", "detail"), [({}, MSG_API_KEY_MISSING), ({"X-API-Key": "s3cret-kez"}, MSG_API_KEY_WRONG)]
)
async def test_admin_needs_the_right_key(
    admin: httpx.AsyncClient, headers: dict[str, str], detail: str
) -> None:
    for path in (f"/api/v1/models/{TABULAR}/reload", "/api/v1/models/reload"):
        body = problem(await admin.post(path, headers=headers), 401)
        assert body["detail"] == detail


async def test_reload_of_unknown_model_is_404(admin: httpx.AsyncClient) -> None:
    problem(await admin.post("/api/v1/models/nope/reload", headers=AUTH), 404)


# --- reloading ---------------------------------------------------------------------------------------


async def test_reload_swaps_in_the_new_version(
    admin: httpx.AsyncClient, store: Path, retrained: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 5)
    before = (await _predict(admin, rows)).json()
    _replace(retrained, store / TABULAR)
    assert (await _predict(admin, rows)).json() == before  # nothing changes until asked
    response = await admin.post(f"/api/v1/models/{TABULAR}/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["status"] == "ready" and summary["version"] != before["version"]
    after = (await _predict(admin, rows)).json()
    assert after["version"] == summary["version"]
    assert after["predictions"] != before["predictions"]


async def test_a_bad_new_file_keeps_the_old_version_serving(
    admin: httpx.AsyncClient, store: Path, adult_frame: pd.DataFrame
) -> None:
    (store / TABULAR / "model.pkl").unlink()
    (store / TABULAR / "model.pkl").write_bytes(b"truncated upload")
    body = problem(await admin.post(f"/api/v1/models/{TABULAR}/reload", headers=AUTH), 422)
    assert "the previous version keeps serving" in body["detail"]
    assert (await _predict(admin, adult_rows(adult_frame, 2))).status_code == 200


async def test_rescan_loads_new_reloads_changed_and_unloads_removed(
    admin: httpx.AsyncClient, store: Path, retrained: Path
) -> None:
    shutil.copytree(retrained, store / "adult-v2")
    shutil.rmtree(store / VISION)
    response = await admin.post("/api/v1/models/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    states = {m["name"]: m["status"] for m in response.json()["models"]}
    assert states == {TABULAR: "ready", "adult-v2": "ready"}
    gone = await admin.post(f"/api/v1/vision/{VISION}/predict", files={"files": ("a.png", image_bytes())})
    problem(gone, 404)


async def test_requests_never_fail_during_reloads(
    admin: httpx.AsyncClient, store: Path, retrained: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 3)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def client_loop() -> None:
        while not stop.is_set():
            statuses.append((await _predict(admin, rows)).status_code)

    clients = [asyncio.create_task(client_loop()) for _ in range(8)]
    for i in range(5):
        if i % 2 == 0:
            _replace(retrained, store / TABULAR)
        reload = await admin.post(f"/api/v1/models/{TABULAR}/reload", headers=AUTH)
        assert reload.status_code == 200, reload.text
    stop.set()
    await asyncio.gather(*clients)
    assert len(statuses) > 20 and set(statuses) == {200}


# --- faults stay with their model ---------------------------------------------------------------------


async def _ready_states(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    ready = await client.get("/health/ready")
    return ready.status_code, ready.json()["models"]


def _predictor(client_app_store: httpx.AsyncClient, name: str) -> Any:
    transport: Any = client_app_store._transport
    return transport.app.state.registry.get(name).predictor


@pytest.mark.parametrize("fault", ["raises", "nan"])
async def test_a_broken_forward_fails_that_model_only_until_reloaded(
    admin: httpx.AsyncClient, adult_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    predictor = _predictor(admin, TABULAR)

    def broken(batch: list[Any]) -> list[np.ndarray]:
        if fault == "raises":
            raise RuntimeError("weights on fire")
        return [np.full((p.n, 2), np.nan, dtype=np.float32) for p in batch]

    monkeypatch.setattr(predictor, "forward_many", broken)
    body = problem(await _predict(admin, adult_rows(adult_frame, 2)), 500)
    assert ("weights on fire" if fault == "raises" else MSG_MODEL_NAN) in body["detail"]
    status, states = await _ready_states(admin)
    assert status == 200 and states == {TABULAR: "failed", VISION: "ready"}
    listed = {m["name"]: m for m in (await admin.get("/api/v1/models")).json()["models"]}
    assert "failed while predicting" in listed[TABULAR]["error"]
    problem(await _predict(admin, adult_rows(adult_frame, 2)), 503)  # failed until reloaded
    vision = await admin.post(f"/api/v1/vision/{VISION}/predict", files={"files": ("a.png", image_bytes())})
    assert vision.status_code == 200
    assert (await admin.post(f"/api/v1/models/{TABULAR}/reload", headers=AUTH)).status_code == 200
    assert (await _predict(admin, adult_rows(adult_frame, 2))).status_code == 200


async def test_out_of_memory_is_a_503_for_that_request(
    admin: httpx.AsyncClient, adult_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = _predictor(admin, TABULAR)
    real = predictor.forward_many
    calls = {"n": 0}

    def once_out_of_memory(batch: list[Any]) -> list[np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        result: list[np.ndarray] = real(batch)
        return result

    monkeypatch.setattr(predictor, "forward_many", once_out_of_memory)
    response = await _predict(admin, adult_rows(adult_frame, 2))
    assert problem(response, 503)["detail"].startswith(f"model {TABULAR!r} ran out of memory")
    assert response.headers["retry-after"] == "1"
    assert (await _predict(admin, adult_rows(adult_frame, 2))).status_code == 200  # the model is fine
