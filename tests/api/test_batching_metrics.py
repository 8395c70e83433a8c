"""Micro-batching across concurrent requests, overload 503s, and the Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.helpers import (
    TABULAR,
    VISION,
    adult_rows,
    client_for,
    clone_store,
    image_bytes,
)

PREDICT = f"/api/v1/tabular/{TABULAR}/predict"


@pytest.fixture
async def slow_batch_client(trained_store: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # A long wait makes coalescing certain, so the test does not depend on timing luck.
    store = clone_store(trained_store, tmp_path / "store")
    async for c in client_for(store, batch_max_wait_ms=200, batch_max_size=64):
        yield c


def _metric(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{{{labels}}} not in metrics")


async def test_concurrent_requests_share_forward_passes(
    slow_batch_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 16)
    alone = [(await slow_batch_client.post(PREDICT, json={"rows": [r]})).json() for r in rows[:2]]
    responses = await asyncio.gather(*(slow_batch_client.post(PREDICT, json={"rows": [r]}) for r in rows))
    assert all(r.status_code == 200 for r in responses)
    for single, batched in zip(alone, responses[:2], strict=True):
        [a], [b] = single["predictions"], batched.json()["predictions"]
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-6)
    text = (await slow_batch_client.get("/metrics")).text
    batches = _metric(text, "fastai_serve_requests_per_batch_count", f'model="{TABULAR}"')
    requests = _metric(text, "fastai_serve_requests_per_batch_sum", f'model="{TABULAR}"')
    assert requests == 18
    assert batches < 18 - 8  # the 16 concurrent ones went through a few forward passes, not 16


async def test_bad_request_in_a_batch_fails_alone(
    slow_batch_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 4)
    bad = {**rows[0], "age": "old"}
    good, wrong, good2 = await asyncio.gather(
        slow_batch_client.post(PREDICT, json={"rows": rows[1:2]}),
        slow_batch_client.post(PREDICT, json={"rows": [bad]}),
        slow_batch_client.post(PREDICT, json={"rows": rows[2:4]}),
    )
    assert (good.status_code, wrong.status_code, good2.status_code) == (200, 422, 200)
    assert len(good2.json()["predictions"]) == 2


async def test_mixed_image_requests_come_back_to_their_senders(slow_batch_client: httpx.AsyncClient) -> None:
    async def send(seed: int, count: int) -> dict[str, Any]:
        files = [
            ("files", (f"{seed}-{i}.png", image_bytes(seed=seed + i), "image/png")) for i in range(count)
        ]
        response = await slow_batch_client.post(f"/api/v1/vision/{VISION}/predict", files=files)
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    results = await asyncio.gather(send(10, 1), send(20, 3), send(30, 2))
    for seed, count, result in zip((10, 20, 30), (1, 3, 2), results, strict=True):
        assert [p["filename"] for p in result["predictions"]] == [f"{seed}-{i}.png" for i in range(count)]


async def test_full_queue_gives_503_with_retry_after(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    rows = adult_rows(adult_frame, 10)
    async for client in client_for(store, batch_max_wait_ms=300, batch_max_queue=3):
        responses = await asyncio.gather(*(client.post(PREDICT, json={"rows": [r]}) for r in rows))
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) >= 3
        assert 503 in statuses
        rejected = next(r for r in responses if r.status_code == 503)
        assert rejected.headers["retry-after"] == "1"
        assert rejected.headers["content-type"] == "application/problem+json"
        assert "overloaded" in rejected.json()["detail"]
        # The service keeps serving once the burst has drained.
        assert (await client.post(PREDICT, json={"rows": rows[:1]})).status_code == 200
        text = (await client.get("/metrics")).text
        assert _metric(
            text, "fastai_serve_overload_rejections_total", f'model="{TABULAR}"'
        ) == statuses.count(503)


async def test_metrics_expose_requests_and_timings(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    await client.post(PREDICT, json={"rows": adult_rows(adult_frame, 3)})
    await client.post("/api/v1/tabular/nope/predict", json={"rows": [{}]})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/api/v1/tabular/{name}/predict"
    assert (
        _metric(
            text,
            "fastai_serve_requests_total",
            f'model="{TABULAR}",protocol="v1",route="{route}",status="200"',
        )
        >= 1
    )
    labels = f'model="nope",protocol="v1",route="{route}",status="404"'
    assert _metric(text, "fastai_serve_requests_total", labels) >= 1
    for name in ("fastai_serve_queue_wait_seconds", "fastai_serve_batch_size"):
        assert _metric(text, f"{name}_count", f'model="{TABULAR}"') >= 1
    assert _metric(text, "fastai_serve_model_seconds_count", f'model="{TABULAR}",runtime="onnx"') >= 1
