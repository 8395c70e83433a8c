"""`FASTAI_SERVE_PRECISION=fp16` (issue 26): on CUDA a model's torch forward runs under float16 autocast when
it matches fp32 within 1e-2 (labels equal); on CPU it stays fp32 and says why. `/metrics` says what serves
each model where (`fastai_serve_model_info`). The CUDA half runs wherever CUDA is available."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from service.inference.runtime import FP16_TOLERANCE, Precision, RuntimeOptions, RuntimeSetting
from service.registry import ModelRegistry
from tests.helpers import TABULAR, VISION, adult_rows, client_for, image_bytes

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _registry(store: Path, device: str, precision: Precision) -> ModelRegistry:
    registry = ModelRegistry(
        store=store,
        device=device,
        runtime=RuntimeOptions(setting=RuntimeSetting.TORCH, precision=precision),
    )
    registry.discover()
    registry.load_all()
    return registry


def _model(labels: str) -> str:
    found = re.search(r'model="([^"]+)"', labels)
    assert found is not None, labels
    return found.group(1)


def test_fp16_on_cpu_stays_fp32_and_says_why(trained_store: Path) -> None:
    registry = _registry(trained_store, "cpu", Precision.FP16)
    for name in (TABULAR, VISION):
        entry, predictor = registry.ready(name)
        assert entry.precision is Precision.FP32
        assert (
            entry.runtime_note is not None and "FASTAI_SERVE_PRECISION=fp16 not applied" in entry.runtime_note
        )
        assert "CUDA" in entry.runtime_note
        assert predictor.runtime.half is None  # type: ignore[union-attr]


async def test_the_api_and_metrics_say_device_runtime_and_precision(
    trained_store: Path, adult_frame: pd.DataFrame
) -> None:
    async for c in client_for(trained_store, precision="fp16", runtime="torch"):
        detail = (await c.get(f"/api/v1/models/{TABULAR}")).json()
        assert (detail["device"], detail["runtime"], detail["precision"]) == ("cpu", "torch", "fp32")
        rows = {"rows": adult_rows(adult_frame, 2)}
        assert (await c.post(f"/api/v1/tabular/{TABULAR}/predict", json=rows)).status_code == 200
        text = (await c.get("/metrics")).text
        lines = {
            _model(labels): labels for labels in re.findall(r"fastai_serve_model_info\{([^}]*)\} 1\.0", text)
        }
        assert set(lines) == {TABULAR, VISION}, text
        for labels in lines.values():
            assert 'device="cpu"' in labels and 'runtime="torch"' in labels and 'precision="fp32"' in labels
        assert 'kind="tabular"' in lines[TABULAR] and 'task="classification"' in lines[TABULAR]


@CUDA
def test_fp16_on_cuda_matches_fp32_within_its_tolerance(
    trained_store: Path, adult_frame: pd.DataFrame
) -> None:
    from service.inference.images import UploadedImage

    cpu = _registry(trained_store, "cpu", Precision.FP32)
    half = _registry(trained_store, "cuda", Precision.FP16)
    rows = adult_rows(adult_frame, 20)
    uploads = [UploadedImage(f"{i}.png", image_bytes(seed=i)) for i in range(8)]
    for name, items in ((TABULAR, rows), (VISION, uploads)):
        entry, predictor = half.ready(name)
        assert entry.precision is Precision.FP16 and entry.device == "cuda:0", entry.runtime_note
        _, reference = cpu.ready(name)
        expected = reference.forward_many([reference.prepare(items)])[0]  # type: ignore[arg-type]
        got = predictor.forward_many([predictor.prepare(items)])[0]  # type: ignore[arg-type]
        assert np.abs(expected - got).max() <= FP16_TOLERANCE
        assert (expected.argmax(axis=1) == got.argmax(axis=1)).all()
