"""The peer a fastai user would otherwise pick: BentoML 1.4 with adaptive batching around fastai's own
batch path (`learn.dls.test_dl` + `learn.get_preds`), serving the same exported learners as fastai-serve.

It runs in its own virtual environment (BentoML pins its own starlette and pydantic ranges): `make
bench-peer` builds `.cache/venv-bentoml`, and `python -m bench --peer` serves this file with `bentoml serve`
and drives it with wrk beside our server. Its routes and wire formats are ours (multipart `files`, JSON
`{"rows": [...]}`), so one wrk script drives both; it answers `label` and `probabilities` per item.

Written as BentoML's docs show a batchable service (`@bentoml.service`, `@bentoml.api(batchable=True,
max_batch_size=..., max_latency_ms=...)`, a list of `PIL.Image.Image` for images, a list of row dicts
made into one `pd.DataFrame` for `test_dl`): one worker process holding both learners, as our server's one
process does, with torch given the same threads (one per core) and the same largest batch (64) as our
batcher. Rows come as dicts, not as BentoML's `pd.DataFrame` input type, because a batchable DataFrame API
fails in BentoML 1.4.40: its `PandasDataFrameContainer.get_batch_size` returns `df.shape` (a tuple), and the
batcher's first training step raises `TypeError`, leaving the request to time out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
from PIL.Image import Image

STORE = Path(os.environ.get("FASTAI_SERVE_MODEL_STORE", "model_store"))
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "64"))
# The docs' example. BentoML sheds (503) a request it expects to serve later than this, and scales its
# first waits by it: at 10 s its optimizer's training batches wait ~3.7 s and a lone client then waits
# ~0.5 s a request for minutes; the bench counts only answered requests, so shedding flatters no one.
MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "1000"))


def predictions(learn: Any, items: Any) -> list[dict[str, Any]]:
    """fastai's batch path: a test DataLoader over the items, `get_preds`, one dict per item."""
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    vocab = [str(c) for c in learn.dls.vocab]
    return [
        {"label": vocab[best], "probabilities": dict(zip(vocab, row, strict=True))}
        for best, row in zip(probs.argmax(dim=1).tolist(), probs.tolist(), strict=True)
    ]


@bentoml.service(workers=1, traffic={"timeout": 60})
class FastaiPeer:
    def __init__(self) -> None:
        import torch
        from fastai.learner import load_learner

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.vision = load_learner(STORE / "cifar10" / "model.pkl")
        self.tabular = load_learner(STORE / "adult-income" / "model.pkl")

    @bentoml.api(
        route="/api/v1/vision/cifar10/predict",
        batchable=True,
        max_batch_size=MAX_BATCH,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def classify(self, files: list[Image]) -> list[dict[str, Any]]:
        from fastai.vision.core import PILImage

        return predictions(self.vision, [PILImage.create(image.convert("RGB")) for image in files])

    @bentoml.api(
        route="/api/v1/tabular/adult-income/predict",
        batchable=True,
        max_batch_size=MAX_BATCH,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return predictions(self.tabular, pd.DataFrame(rows))
