"""The payload log, on real files: what was served is what the dataset holds (counts, ids, typed columns,
every door), a graceful stop loses nothing, and a log that cannot keep up or cannot write never fails or
slows a prediction — it counts what it dropped."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pyarrow.dataset as ds
from PIL import Image

from service.api.app import create_app
from service.monitoring.payload import PREDICTIONS, LogOptions, PayloadLog, read_log
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes, make_settings, started_client


async def _client(store: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    async for c in started_client(create_app(make_settings(store, **overrides))):
        yield c


def _files(n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", image_bytes(size=(32 + i, 30), seed=i), "image/png")) for i in range(n)]


async def test_the_dataset_holds_what_every_door_served(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 5)
    served: dict[str, str] = {}  # id -> protocol
    async for c in _client(trained_store, log_dir=tmp_path, log_flush_s=60):
        predicted = await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})
        served |= {p["id"]: "v1" for p in predicted.json()["predictions"]}
        request_id = predicted.headers["x-request-id"]
        assert [p["id"] for p in predicted.json()["predictions"]] == [f"{request_id}-{k}" for k in range(5)]
        own = await c.post(
            f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows[:2]}, headers={"X-Request-ID": "mine-1"}
        )
        assert [p["id"] for p in own.json()["predictions"]] == ["mine-1-0", "mine-1-1"]
        served |= {"mine-1-0": "v1", "mine-1-1": "v1"}
        csv = pd.DataFrame(rows).to_csv(index=False).encode()
        as_csv = await c.post(
            f"/api/v1/tabular/{TABULAR}/predict/csv",
            files={"file": ("rows.csv", csv, "text/csv")},
            headers={"Accept": "text/csv"},
        )
        scored = pd.read_csv(io.StringIO(as_csv.text))
        served |= dict.fromkeys(scored["prediction_id"], "v1")
        images = await c.post(f"/api/v1/vision/{VISION}/predict", files=_files(2))
        served |= {p["id"]: "v1" for p in images.json()["predictions"]}
        v2 = await c.post(
            f"/v2/models/{VISION}/infer",
            json={"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]},
        )
        assert v2.status_code == 400  # not an image: refused, nothing logged
        # Evaluation is not prediction: not logged.
        labelled = pd.DataFrame(adult_rows(adult_frame, 3)).assign(salary=">=50k").to_csv(index=False)
        await c.post(f"/api/v1/tabular/{TABULAR}/evaluate", files={"file": ("l.csv", labelled.encode())})
    table = read_log(tmp_path)  # the app stopped: everything queued was written
    assert sorted(table.column("id").to_pylist()) == sorted(served)
    frame = table.to_pandas()
    assert set(frame["protocol"]) == {"v1"} and set(frame["model"]) == {TABULAR, VISION}
    tab = frame[frame["model"] == TABULAR]
    assert tab["age"].dtype == "float64" and tab["workclass"].map(type).eq(str).all()
    assert {"prediction", "latency_ms", "ts", "version"} <= set(tab.columns)
    assert any(c.startswith("p_") for c in tab.columns)
    vis = frame[frame["model"] == VISION]
    assert (
        sorted(vis["width"]) == [32, 33]
        and set(vis["height"]) == {30}
        and vis["sha256"].str.len().eq(64).all()
    )
    assert "thumbnail" not in frame.columns  # LOG_THUMBNAIL_PX is 0 by default
    # Other readers see the same table: pandas (a model's folder: one schema) and DuckDB (hive partitions give
    # model and date; `union_by_name` merges the models' columns).
    assert len(pd.read_parquet(tmp_path / PREDICTIONS / f"model={TABULAR}")) == len(tab)
    files = f"{tmp_path}/{PREDICTIONS}/**/*.parquet"
    query = (
        "SELECT count(*), count(DISTINCT model) FROM "
        f"read_parquet('{files}', hive_partitioning=true, union_by_name=true)"
    )
    assert duckdb.connect().execute(query).fetchall() == [(len(served), 2)]


async def test_images_thumbnails_when_asked(trained_store: Path, tmp_path: Path) -> None:
    """`LOG_THUMBNAIL_PX`: each logged image's JPEG, its longer side at most that, its aspect kept."""
    files = [
        ("files", ("wide.png", image_bytes(size=(64, 32), seed=1), "image/png")),
        ("files", ("grey.png", image_bytes(size=(20, 40), mode="L", seed=2), "image/png")),
    ]
    async for c in _client(trained_store, log_dir=tmp_path, log_thumbnail_px=16):
        answer = await c.post(f"/api/v1/vision/{VISION}/predict", files=files)
        ids = [p["id"] for p in answer.json()["predictions"]]
    rows = {row["id"]: row for row in read_log(tmp_path, model=VISION).to_pylist()}
    sizes = [Image.open(io.BytesIO(rows[i]["thumbnail"])).size for i in ids]
    assert sizes == [(16, 8), (8, 16)]
    assert [Image.open(io.BytesIO(rows[i]["thumbnail"])).format for i in ids] == ["JPEG", "JPEG"]


async def test_a_log_that_cannot_write_never_fails_a_prediction(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    async for c in _client(trained_store, log_dir=blocked / "logs", log_flush_s=0.05):
        answer = await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": adult_rows(adult_frame, 3)})
        assert answer.status_code == 200
        for _ in range(100):  # the writer tries within its flush interval
            ready = (await c.get("/health/ready")).json()
            if ready["payload_log"]["dropped"]:
                break
            await asyncio_sleep(0.05)
        assert ready["status"] == "ready"
        assert (
            ready["payload_log"]["dropped"] == 3
            and "NotADirectoryError" in ready["payload_log"]["last_error"]
        )
        metrics = (await c.get("/metrics")).text
        assert 'fastai_serve_payload_log_dropped_total{reason="write_failed"} 3.0' in metrics


async def test_a_full_queue_drops_and_counts(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    async for c in _client(trained_store, log_dir=tmp_path, log_flush_s=60, log_queue=4):
        first = await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": adult_rows(adult_frame, 3)})
        second = await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": adult_rows(adult_frame, 3)})
        assert first.status_code == second.status_code == 200
        state = (await c.get("/health/ready")).json()["payload_log"]
        assert (state["queued"], state["dropped"]) == (3, 3)
    assert read_log(tmp_path).num_rows == 3


async def test_sampling_keeps_a_share_of_the_items(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    async for c in _client(trained_store, log_dir=tmp_path, log_sample=0.25, max_rows=400):
        answer = await c.post(
            f"/api/v1/tabular/{TABULAR}/predict", json={"rows": adult_rows(adult_frame, 400)}
        )
        ids = {p["id"] for p in answer.json()["predictions"]}
    logged = set(read_log(tmp_path).column("id").to_pylist())
    assert logged <= ids and 50 <= len(logged) <= 150


async def test_two_logs_write_beside_each_other(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    """Two apps (as two workers would) on one folder: no file clashes, one table holds both."""
    rows = adult_rows(adult_frame, 2)
    answered = []
    for _ in range(2):
        async for c in _client(trained_store, log_dir=tmp_path, log_flush_s=60):
            for _ in range(3):
                answer = await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})
                answered += [p["id"] for p in answer.json()["predictions"]]
    assert sorted(read_log(tmp_path).column("id").to_pylist()) == sorted(answered)
    assert len(list((tmp_path / PREDICTIONS).rglob("*.parquet"))) == 2


def test_files_roll_by_size_and_old_days_are_removed(trained_store: Path, tmp_path: Path) -> None:
    from service.inference.runtime import RuntimeOptions
    from service.registry import ModelRegistry
    from service.telemetry import RequestContext

    registry = ModelRegistry(store=trained_store, device="cpu", runtime=RuntimeOptions())
    registry.discover(TABULAR)
    registry.load_all()
    entry, predictor = registry.ready(TABULAR)
    old = tmp_path / PREDICTIONS / f"model={TABULAR}" / "date=2000-01-01"
    old.mkdir(parents=True)
    (old / "x.parquet").write_bytes(b"")
    log = PayloadLog(LogOptions(folder=tmp_path, flush_s=60, roll_mb=0.001, retention_days=30))
    frame = pd.read_csv(trained_store.parent / "adult-tiny.csv").head(200)
    prepared = predictor.prepare_frame(frame[predictor.spec.column_names], filename="x.csv")
    outputs = predictor.forward_many([prepared])[0]
    log.offer(
        entry=entry,
        predictor=predictor,
        prepared=prepared,
        outputs=outputs,
        context=RequestContext("r", "v1"),
        start=0,
    )
    log.close()
    today = tmp_path / PREDICTIONS / f"model={TABULAR}" / f"date={dt.datetime.now(dt.UTC).date()}"
    assert len(list(today.glob("*.parquet"))) > 1  # cut by size
    assert not old.exists()  # past the retention
    table = ds.dataset(tmp_path / PREDICTIONS, partitioning="hive").to_table()
    assert table.num_rows == 200 and table.column("id").to_pylist()[:2] == ["r-0", "r-1"]


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_sigterm_right_after_a_burst_loses_nothing(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    """A real server (the CLI), a burst of requests, SIGTERM at once: every answered item is in the log
    (the writer's interval is far longer than the test: only the shutdown's flush can have written them)."""
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import ROOT, free_port, wait_until_ready

    port, log_dir = free_port(), tmp_path / "log"
    env = {
        **os.environ,
        "FASTAI_SERVE_MODEL_STORE": str(trained_store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_GRPC_PORT": "0",
        "FASTAI_SERVE_LOG_DIR": str(log_dir),
        "FASTAI_SERVE_LOG_FLUSH_S": "600",
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    with (tmp_path / "server.log").open("wb") as out:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_until_ready(client)
            rows = adult_rows(adult_frame, 3)
            answers = await asyncio.gather(
                *(client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows}) for _ in range(20))
            )
            server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
    answered = [p["id"] for a in answers for p in a.json()["predictions"]]
    assert len(answered) == 60
    assert sorted(read_log(log_dir).column("id").to_pylist()) == sorted(answered)
