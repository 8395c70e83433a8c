"""The cookbook's way, as a reference: FastAPI + one `learn.predict` per request (kept out of `service/`).

Run: FASTAI_SERVE_MODEL_STORE=model_store uvicorn bench.naive_server:app --port 8001
(BENCH_NAIVE_MODELS=kind:name,... picks the models; `python -m bench` passes its cases' models.)

Kinds: tabular and vision (`learn.predict` per row / image), text (`learn.predict(text)` per text),
collab (`get_preds` on a one-row DataFrame per pair: `learn.predict` fails for a collab learner) and
segmentation (`learn.predict(image)` per image, at the vision route, the mask sent back as a base64 PNG).
"""

from __future__ import annotations

import base64
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastai.learner import load_learner
from fastai.vision.core import PILImage
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

STORE = Path(os.environ.get("FASTAI_SERVE_MODEL_STORE", "model_store"))
MODELS = os.environ.get("BENCH_NAIVE_MODELS", "tabular:adult-income,vision:cifar10")
learners: dict[str, dict[str, Any]] = {
    "tabular": {},
    "vision": {},
    "text": {},
    "collab": {},
    "segmentation": {},
}
for kind, name in (entry.split(":", 1) for entry in MODELS.split(",")):
    learners[kind][name] = load_learner(STORE / name / "model.pkl")
app = FastAPI(title="naive fastai server")
# fastai learners are not thread-safe (concurrent `predict` calls hang here); the cookbook's Flask app
# served one request at a time, which is what this lock reproduces.
LOCK = threading.Lock()


def _learner(kind: str, name: str) -> Any:
    """The learner served as `name`, or a 404 as our server answers an unknown model."""
    if name not in learners[kind]:
        raise HTTPException(404, f"no {kind} model {name!r}")
    return learners[kind][name]


@app.post("/api/v1/tabular/{name}/predict")
def predict_rows(name: str, body: dict[str, Any]) -> dict[str, Any]:
    tabular = _learner("tabular", name)
    # A regression has no vocab: its values as they come, as the cookbook's app would send them.
    vocab = getattr(tabular.dls, "vocab", None)
    out = []
    for row in body["rows"]:
        with LOCK, tabular.no_bar():
            _, _, probs = tabular.predict(pd.Series(row))
        if vocab is None:
            out.append({"values": probs.tolist()})
        else:
            out.append({"probabilities": dict(zip(map(str, vocab), probs.tolist(), strict=True))})
    return {"predictions": out}


@app.post("/api/v1/vision/{name}/predict")
def predict_images(name: str, files: list[UploadFile] = File(...)) -> dict[str, Any]:  # noqa: B008
    if name in learners["segmentation"]:
        return predict_masks(learners["segmentation"][name], files)
    vision = _learner("vision", name)
    out = []
    for f in files:
        with LOCK, vision.no_bar():
            label, _, probs = vision.predict(PILImage.create(io.BytesIO(f.file.read())))
        # A multi-label model's label is its list of labels, in one string.
        out.append({"filename": f.filename, "label": str(label)})
    return {"predictions": out}


def predict_masks(learn: Any, files: list[UploadFile]) -> dict[str, Any]:
    """A segmentation learner's mask per image, as a PNG of class indices (at the model's size: a naive app
    sends what `predict` gives)."""
    out = []
    for f in files:
        with LOCK, learn.no_bar():
            mask, _, _ = learn.predict(PILImage.create(io.BytesIO(f.file.read())))
        png = io.BytesIO()
        Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(png, format="PNG")
        out.append({"filename": f.filename, "mask_png": base64.b64encode(png.getvalue()).decode()})
    return {"predictions": out}


@app.post("/api/v1/text/{name}/predict")
def predict_texts(name: str, body: dict[str, Any]) -> dict[str, Any]:
    text = _learner("text", name)
    vocab = text.dls.vocab[-1]  # a text classifier's vocab: [tokens, classes]
    out = []
    for item in body["texts"]:
        with LOCK, text.no_bar():
            label, _, probs = text.predict(item)
        out.append(
            {"label": str(label), "probabilities": dict(zip(map(str, vocab), probs.tolist(), strict=True))}
        )
    return {"predictions": out}


@app.post("/api/v1/collab/{name}/predict")
def predict_pairs(name: str, body: dict[str, Any]) -> dict[str, Any]:
    collab = _learner("collab", name)
    user, item = list(collab.dls.classes)[:2]  # the user and item columns, as the learner was given them
    out = []
    for pair in body["pairs"]:
        frame = pd.DataFrame({user: [pair["user"]], item: [pair["item"]]})
        with LOCK, collab.no_bar():
            # reorder=False: a collab model's one-row output is 0-d, which get_preds' reordering indexes
            # (IndexError); one row needs no reordering.
            preds, _ = collab.get_preds(dl=collab.dls.test_dl(frame), reorder=False)
        out.append({"user": pair["user"], "item": pair["item"], "rating": float(preds.reshape(-1)[0])})
    return {"predictions": out}


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}
