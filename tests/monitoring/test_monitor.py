"""The monitor: drift of a shifted column against the reference, live accuracy from feedback as computed by
hand, every worker's predictions, the training reference, and the gauges."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from service.monitoring.drift import REFERENCE_FILE, Profile, profile, psi, status
from service.training import data
from tests.helpers import TABULAR, adult_rows, client_for, problem

ADMIN = {"X-API-Key": "admin-secret"}


def _csv(rows: list[dict[str, object]]) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("reference.csv", pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv")}


async def _predict(client: httpx.AsyncClient, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    answer = await client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["predictions"])


def test_psi_is_zero_alike_and_large_apart() -> None:
    rng = np.random.default_rng(0)
    reference = profile(rng.normal(size=5000))
    same = profile(rng.normal(size=2000), reference=reference)
    moved = profile(rng.normal(loc=1.5, size=2000), reference=reference)
    assert psi(reference, same) < 0.02 and status(psi(reference, same), same.n) == "ok"
    assert psi(reference, moved) > 0.5 and status(psi(reference, moved), moved.n) == "alert"
    categories = profile(np.array(["a"] * 70 + ["b"] * 30))
    assert isinstance(categories, Profile) and categories.type == "categorical"
    assert status(psi(categories, profile(np.array(["b"] * 10), reference=categories)), 10) == "ok"  # too few


async def test_a_shifted_column_alerts_and_the_others_stay_ok(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 1500)
    reference, recent = rows[:1000], rows[1000:1500]
    shifted = [{**row, "age": float(row["age"]) + 30} for row in recent]
    async for c in client_for(trained_store, log_dir=tmp_path, api_key=ADMIN["X-API-Key"], max_rows=2000):
        uploaded = await c.post(
            f"/api/v1/models/{TABULAR}/monitor/reference", files=_csv(reference), headers=ADMIN
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["n"] == 1000 and "age" in uploaded.json()["features"]
        await _predict(c, shifted)
        answer = await c.get(f"/api/v1/models/{TABULAR}/monitor", params={"window": "1h"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["n_predictions"] == 500 and body["reference"] == {"source": "upload", "n": 1000}
        assert body["drift"]["age"]["status"] == "alert"
        unshifted = [
            c for c in data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL if c != "age" and c in body["drift"]
        ]
        drifted = {c: body["drift"][c] for c in unshifted if body["drift"][c]["status"] != "ok"}
        assert unshifted and not drifted
        metrics = (await c.get("/metrics")).text
        assert f'fastai_serve_drift{{input="age",model="{TABULAR}"}}' in metrics


async def test_live_accuracy_is_the_accuracy_by_hand(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.dropna(subset=data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL).head(60)
    rows = adult_rows(frame, 60)
    truth = [str(v) for v in frame[data.ADULT_TARGET]]
    async for c in client_for(trained_store, log_dir=tmp_path):
        predictions = await _predict(c, rows)
        given = [{"id": p["id"], "label": t} for p, t in zip(predictions[:40], truth[:40], strict=True)]
        assert (await c.post(f"/api/v1/models/{TABULAR}/feedback", json={"feedback": given})).json()[
            "accepted"
        ] == 40
        body = (await c.get(f"/api/v1/models/{TABULAR}/monitor")).json()
        assert (body["n_predictions"], body["n_feedback"]) == (60, 40)
        by_hand = np.mean([p["label"] == t for p, t in zip(predictions[:40], truth[:40], strict=True)])
        assert body["live"]["n"] == 40 and body["live"]["accuracy"] == pytest.approx(by_hand)
        assert sum(body["predictions"]["prediction"].values()) == pytest.approx(1.0)
        metrics = (await c.get("/metrics")).text
        assert f'fastai_serve_live_metric{{metric="accuracy",model="{TABULAR}"}} {by_hand}' in metrics


async def test_every_worker_sees_the_whole_log(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    """Two apps on one log folder (as two workers): each one's monitor counts both's predictions."""
    rows = adult_rows(adult_frame, 5)
    clients = [
        client_for(trained_store, log_dir=tmp_path, log_flush_s=0.05, monitor_cache_s=0) for _ in range(2)
    ]
    first, second = [await anext(c) for c in clients]
    try:
        await _predict(first, rows)
        await _predict(second, rows[:3])
        await asyncio.sleep(0.5)  # the first's writer flushes on its own
        for client in (first, second):
            body = (await client.get(f"/api/v1/models/{TABULAR}/monitor")).json()
            assert body["n_predictions"] == 8
    finally:
        for c in clients:
            await c.aclose()


async def test_monitor_errors(trained_store: Path, tmp_path: Path) -> None:
    async for c in client_for(trained_store, log_dir=tmp_path):
        problem(await c.get(f"/api/v1/models/{TABULAR}/monitor", params={"window": "soon"}), 422)
        problem(await c.get("/api/v1/models/nope/monitor"), 404)
        no_key = await c.post(f"/api/v1/models/{TABULAR}/monitor/reference", files=_csv([{"age": 1}]))
        problem(no_key, 403)  # no API key configured: admin routes are off
    async for c in client_for(trained_store):
        assert "LOG_DIR" in problem(await c.get(f"/api/v1/models/{TABULAR}/monitor"), 404)["detail"]


def test_training_writes_the_reference(trained_store: Path) -> None:
    """`fastai-serve train tabular` profiled its training rows into the model's folder."""
    written = trained_store / TABULAR / REFERENCE_FILE
    assert written.is_file()
    body = io.StringIO(written.read_text()).read()
    assert '"source": "training"' in body and '"age"' in body and '"predicted:prediction"' in body
