"""The cookbook's way, as a reference: FastAPI + one `learn.predict` per request (kept out of `service/`).

Run: FASTAI_SERVE_MODEL_STORE=model_store uvicorn bench.naive_server:app --port 8001
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from fastai.learner import load_learner
from fastai.vision.core import PILImage
from fastapi import FastAPI, File, UploadFile

STORE = Path(os.environ.get("FASTAI_SERVE_MODEL_STORE", "model_store"))
tabular = load_learner(STORE / "adult-income" / "model.pkl")
vision = load_learner(STORE / "cifar10" / "model.pkl")
app = FastAPI(title="naive fastai server")
# fastai learners are not thread-safe (concurrent `predict` calls hang here); the cookbook's Flask app
# served one request at a time, which is what this lock reproduces.
LOCK = threading.Lock()


@app.post("/api/v1/tabular/adult-income/predict")
def predict_rows(body: dict[str, Any]) -> dict[str, Any]:
    out = []
    for row in body["rows"]:
        with LOCK, tabular.no_bar():
            _, _, probs = tabular.predict(pd.Series(row))
        out.append({"probabilities": dict(zip(map(str, tabular.dls.vocab), probs.tolist(), strict=True))})
    return {"predictions": out}


@app.post("/api/v1/vision/cifar10/predict")
def predict_images(files: list[UploadFile] = File(...)) -> dict[str, Any]:  # noqa: B008
    out = []
    for f in files:
        with LOCK, vision.no_bar():
            label, _, probs = vision.predict(PILImage.create(io.BytesIO(f.file.read())))
        out.append({"filename": f.filename, "label": str(label)})
    return {"predictions": out}


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}
