"""The demo build flow: each model built out of sight and moved into the store whole, a progress board the
server lists as `training`, and a server that picks the finished model up by itself (RESCAN_S)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.cli import main
from service.registry import ModelRegistry
from service.training import demo, progress
from service.training.common import TrainResult
from tests.helpers import client_for


def _copy_of(model: TrainResult) -> demo.Builder:
    """A builder that 'trains' by copying a tiny trained model, checking on the way what others see."""

    def build(store: Path, name: str) -> None:
        target = store / name
        shutil.copytree(model.learner_path.parent, target)

    return build


def _registry(store: Path) -> ModelRegistry:
    return ModelRegistry(store=store, device="cpu")


def test_a_model_is_out_of_sight_until_whole_and_on_the_board_meanwhile(
    collab_model: TrainResult, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    seen: dict[str, object] = {}

    def build(scratch: Path, name: str) -> None:
        _copy_of(collab_model)(scratch, name)
        # Half-way: the folder exists, but only under .building, which no registry lists.
        seen["board"] = progress.read_progress(store)
        seen["listed"] = [e.name for e in _registry(store).discover()]
        seen["signature"] = _registry(store).store_signature()
        seen["scratch"] = scratch

    model = demo.DemoModel("films", "collab", "rating", "new", build)
    demo.build_one(store, model)
    assert seen["listed"] == [] and seen["signature"] == ()
    board = seen["board"]
    assert isinstance(board, dict) and board["films"]["status"] == "training"
    assert board["films"]["kind"] == "collab" and board["films"]["pid"] == os.getpid()
    assert (store / "films" / "model.pkl").is_file() and (store / "films" / "model.json").is_file()
    assert not Path(str(seen["scratch"])).exists()  # nothing left behind
    assert progress.read_progress(store) == {}  # off the board once in the store
    assert [e.name for e in _registry(store).discover()] == ["films"]


def test_a_failed_build_is_on_the_board_as_failed_and_leaves_no_folder(tmp_path: Path) -> None:
    def build(scratch: Path, name: str) -> None:
        (scratch / name).mkdir()
        (scratch / name / "model.pkl").write_bytes(b"half")
        raise RuntimeError("out of disk")

    model = demo.DemoModel("broken", "vision", "segmentation", "new", build)
    with pytest.raises(RuntimeError):
        demo.build_one(tmp_path, model)
    assert not (tmp_path / "broken").exists()
    assert list((tmp_path / progress.BUILDING_DIR).iterdir()) == []
    entry = progress.read_progress(tmp_path)["broken"]
    assert entry["status"] == "failed" and entry["error"] == "RuntimeError: out of disk"


def test_epochs_of_the_fit_are_reported_on_the_board(
    tmp_path: Path, ratings_csv: Path, items_csv: Path
) -> None:
    from service.training.collab import train_collab
    from tests.training.conftest import collab_recipe

    epochs: list[tuple[int, int]] = []

    def build(scratch: Path, name: str) -> None:
        original = progress.Reporter.epoch

        def spy(self: progress.Reporter, done: int, total: int) -> None:
            original(self, done, total)
            entry = progress.read_progress(tmp_path)[name]
            epochs.append((entry["epoch"], entry["epochs"]))

        progress.Reporter.epoch = spy  # type: ignore[method-assign]
        try:
            train_collab(collab_recipe(ratings_csv, items_csv, scratch / name, epochs=2))
        finally:
            progress.Reporter.epoch = original  # type: ignore[method-assign]

    demo.build_one(tmp_path, demo.DemoModel("films", "collab", "rating", "new", build))
    assert epochs == [(1, 2), (2, 2)]


def test_leftovers_of_a_dead_builder_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    (tmp_path / progress.BUILDING_DIR / f"films-{pid}-abc").mkdir(parents=True)
    mine = tmp_path / progress.BUILDING_DIR / f"cats-{os.getpid()}-xyz"
    mine.mkdir()
    board = {"films": {"status": "training", "pid": pid}, "cats": {"status": "training", "pid": os.getpid()}}
    progress.progress_path(tmp_path).write_text(json.dumps(board))
    demo.clean_leftovers(tmp_path)
    assert [p.name for p in (tmp_path / progress.BUILDING_DIR).iterdir()] == [mine.name]
    assert list(progress.read_progress(tmp_path)) == ["cats"]


def test_present_models_are_skipped(
    collab_model: TrainResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def copy(scratch: Path, name: str) -> None:
        calls.append(name)
        _copy_of(collab_model)(scratch, name)

    shutil.copytree(collab_model.learner_path.parent, tmp_path / "there")
    monkeypatch.setattr(
        demo,
        "DEMOS",
        [
            demo.DemoModel("there", "collab", "rating", "existing", copy),
            demo.DemoModel("films", "collab", "rating", "new", copy),
        ],
    )
    assert demo.build_demos(tmp_path, group="all") == []
    assert calls == ["films"]
    out = capsys.readouterr().out
    assert "there: present" in out
    assert progress.read_progress(tmp_path) == {}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["films", "there"]
    calls.clear()
    assert demo.build_demos(tmp_path, group="existing", force=True) == []
    assert calls == ["there"]


def test_the_demo_groups_name_the_five_demo_models() -> None:
    assert [d.name for d in demo.selected("existing")] == ["adult-income", "cifar10"]
    assert [d.name for d in demo.selected("new")] == [
        "movie-recommender",
        "shapes-segmentation",
        "reviews-sentiment",
    ]
    assert [d.name for d in demo.selected("all", ["cifar10"])] == ["cifar10"]


def test_cli_refuses_an_unknown_demo_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "demo", "--store", str(tmp_path), "--models", "unicorns"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastai-serve: error: unknown demo model(s) unicorns; the demo models are:")


async def _models(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in (await client.get("/api/v1/models")).json()["models"]}


async def test_the_server_lists_a_training_model_then_loads_it_when_moved_in(
    collab_model: TrainResult, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    board = {
        "films": {
            "status": "training",
            "kind": "collab",
            "task": "rating",
            "epoch": 3,
            "epochs": 5,
            "started_at": "2026-12-04T08:00:00+00:00",
            "pid": os.getpid(),
        },
        "masks": {"status": "failed", "kind": "vision", "task": "segmentation", "error": "RuntimeError: x"},
    }
    progress.progress_path(store).write_text(json.dumps(board))
    async for client in client_for(store, rescan_s=0.1):
        models = await _models(client)
        assert models["films"]["status"] == "training"
        assert models["films"]["progress"] == {
            "epoch": 3,
            "epochs": 5,
            "started_at": "2026-12-04T08:00:00+00:00",
        }
        assert (models["films"]["kind"], models["films"]["task"]) == ("collab", "rating")
        assert models["masks"]["status"] == "failed" and models["masks"]["error"] == "RuntimeError: x"
        assert (await client.get("/health/ready")).status_code == 503  # nothing servable yet
        # The builder's last two steps: the whole folder moved in, then the name taken off the board.
        shutil.copytree(collab_model.learner_path.parent, store / progress.BUILDING_DIR / "films")
        (store / progress.BUILDING_DIR / "films").rename(store / "films")
        progress.clear(store, "films")
        deadline = time.monotonic() + 120
        while True:
            films = (await _models(client)).get("films", {})
            if films.get("status") in {"ready", "failed"}:
                break
            assert time.monotonic() < deadline, films
            await asyncio.sleep(0.1)
        # Loaded from the store (collab serving is another branch's: here it may be refused as not served
        # yet, but it is the learner itself that the registry read, not the board).
        assert films["status"] in {"ready", "failed"} and films["progress"] is None
        assert (films["kind"], films["task"]) == ("collab", "rating")


async def test_without_rescan_a_model_moved_in_waits_for_the_admin_reload(
    collab_model: TrainResult, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    async for client in client_for(store, api_key="k"):
        shutil.copytree(collab_model.learner_path.parent, store / "films")
        await asyncio.sleep(0.3)
        assert "films" not in await _models(client)
        answer = await client.post("/api/v1/models/reload", headers={"X-API-Key": "k"})
        assert [m["name"] for m in answer.json()["models"]] == ["films"]


async def test_a_model_moved_in_before_the_watcher_first_looks_is_still_loaded(
    collab_model: TrainResult, tmp_path: Path
) -> None:
    """The watcher compares the store with what the registry last listed, not with its own first look: a
    folder moved in while the first load ran (the watcher's thread not started yet) was once never seen."""
    from service.inference.batching import BatcherPool
    from service.startup import watch_store
    from service.telemetry import Metrics

    store = tmp_path / "store"
    store.mkdir()
    registry = _registry(store)
    registry.discover()
    registry.load_all()
    shutil.copytree(collab_model.learner_path.parent, store / "films")  # before the watcher starts
    pool = BatcherPool(max_batch=8, max_wait_ms=1.0, max_queue=8, metrics=Metrics())
    watcher = asyncio.create_task(watch_store(registry, pool, every_s=0.05))
    try:
        deadline = time.monotonic() + 120
        while "films" not in [e.name for e in registry.entries()]:
            assert time.monotonic() < deadline, "the model moved in early was never loaded"
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        await pool.close()
    assert registry.get("films").status.value == "ready"
    assert registry.scanned_signature == registry.store_signature()
