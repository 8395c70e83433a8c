"""Explanations run beside predictions: their own threads and queue, 503 + Retry-After when it is full,
and predictions answer while every explanation thread is busy."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx

from service.api.app import create_app
from service.explain.core import Explained, Method
from service.explain.images import ImageExplainer
from service.explain.pool import ExplainPool
from service.inference.predictor import ModelKind
from tests.helpers import VISION, image_bytes, make_settings, problem, started_client


class HeldImageExplainer(ImageExplainer):
    """The real image explainer, held at its start until the test lets it go: a slow explanation on
    demand (the pool's scheduling is what is tested; the explanation itself is real)."""

    started = threading.Event()
    release = threading.Event()

    def explain(self, prepared: Any, *, target: int | None, method: Method) -> Explained:
        type(self).started.set()
        assert type(self).release.wait(60)
        return super().explain(prepared, target=target, method=method)


def _files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", ("a.png", image_bytes(size=(32, 32)), "image/png"))]


async def test_a_full_explain_queue_is_503_while_predictions_still_answer(trained_store: Path) -> None:
    app = create_app(make_settings(trained_store))
    async for client in started_client(app):
        app.state.explainers.close()
        pool = ExplainPool(
            concurrency=1,
            max_queue=1,
            metrics=app.state.metrics,
            explainers={ModelKind.VISION: HeldImageExplainer},
        )
        app.state.explainers = pool
        path = f"/api/v1/vision/{VISION}/explain"
        try:
            running = asyncio.create_task(client.post(path, files=_files()))
            assert await asyncio.to_thread(HeldImageExplainer.started.wait, 60)
            waiting = asyncio.create_task(client.post(path, files=_files()))
            while pool.pending < 2:  # the second has reached the queue
                await asyncio.sleep(0.01)
            refused = await client.post(path, files=_files())
            body = problem(refused, 503)
            assert refused.headers["retry-after"] == "1"
            assert "explanations are busy" in body["detail"]
            # The only explanation thread is held: a prediction of the same model still answers.
            predicted = await client.post(f"/api/v1/vision/{VISION}/predict", files=_files())
            assert predicted.status_code == 200
        finally:
            HeldImageExplainer.release.set()
        answers: list[httpx.Response] = [await running, await waiting]
        assert [a.status_code for a in answers] == [200, 200]
        assert pool.pending == 0
        metrics = (await client.get("/metrics")).text
        assert f'fastai_serve_explain_rejections_total{{model="{VISION}"}} 1.0' in metrics
