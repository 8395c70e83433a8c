"""The peer `make bench-ray` measures us against: the Ray Serve app a user would write from Ray's documentation
around the same two exports (kept out of `service/`).

As Ray's docs show it ("Dynamic Request Batching", docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html,
and `@serve.ingress` with FastAPI): one deployment with a FastAPI ingress, each learner loaded once in
`__init__`, and an `async` method under `@serve.batch` that runs a batch of items through
`learn.get_preds(dl=learn.dls.test_dl(...))`. `max_ongoing_requests` is 64, at least the batch size: with
Serve's default (5) a batch never holds more than 5 requests and the app manages a few requests per second.

Deploy: `serve.run(build(store), route_prefix="/")` on a running cluster (bench/ray_bench.py does).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pandas as pd
from fastai.learner import load_learner
from fastai.vision.core import PILImage
from fastapi import FastAPI, File, UploadFile
from ray import serve
from ray.serve import Application

MAX_BATCH = 32
BATCH_WAIT_S = 0.01  # @serve.batch's default
TABULAR, VISION = "adult-income", "cifar10"

app = FastAPI(title="textbook Ray Serve app")


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(app)
class TextbookFastai:
    def __init__(self, store: str) -> None:
        self.tabular = load_learner(Path(store) / TABULAR / "model.pkl")
        self.vision = load_learner(Path(store) / VISION / "model.pkl")

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
        learn = self.tabular
        with learn.no_bar():
            probs, _ = learn.get_preds(dl=learn.dls.test_dl(pd.DataFrame(rows)))
        vocab = [str(v) for v in learn.dls.vocab]
        return [dict(zip(vocab, p.tolist(), strict=True)) for p in probs]

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def predict_images(self, images: list[bytes]) -> list[str]:
        learn = self.vision
        items = [PILImage.create(io.BytesIO(b)) for b in images]
        with learn.no_bar():
            probs, _ = learn.get_preds(dl=learn.dls.test_dl(items))
        return [str(learn.dls.vocab[int(p.argmax())]) for p in probs]

    @app.post("/api/v1/tabular/{name}/predict")
    async def tabular(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        out = await asyncio.gather(*(self.predict_rows(row) for row in body["rows"]))
        return {"predictions": [{"probabilities": p} for p in out]}

    @app.post("/api/v1/vision/{name}/predict")
    async def images(self, name: str, files: list[UploadFile] = File(...)) -> dict[str, Any]:  # noqa: B008
        labels = await asyncio.gather(*[self.predict_images(await f.read()) for f in files])
        return {
            "predictions": [{"filename": f.filename, "label": x} for f, x in zip(files, labels, strict=True)]
        }

    @app.get("/health/ready")
    async def ready(self) -> dict[str, str]:
        return {"status": "ready"}


def build(store: Path) -> Application:
    application: Application = TextbookFastai.bind(str(store))  # type: ignore[attr-defined]
    return application
