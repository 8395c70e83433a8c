"""The runtime each model runs on, as the model detail reports it, under each FASTAI_SERVE_RUNTIME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from service.inference.runtime import TorchModel
from tests.helpers import TABULAR, VISION, client_for, clone_store


async def test_model_detail_says_onnx_and_why(client: httpx.AsyncClient) -> None:
    for name in (TABULAR, VISION):
        detail = (await client.get(f"/api/v1/models/{name}")).json()
        assert detail["runtime"] == "onnx", detail["runtime_note"]
        assert "parity with torch" in detail["runtime_note"]


async def test_runtime_torch_keeps_torch(trained_store: Path, tmp_path: Path) -> None:
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    async for c in client_for(store, runtime="torch", onnx_cache_dir=tmp_path / "onnx"):
        detail = (await c.get(f"/api/v1/models/{TABULAR}")).json()
        assert (detail["runtime"], detail["runtime_note"]) == ("torch", "FASTAI_SERVE_RUNTIME=torch")
        assert (await c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": [{}]})).status_code == 422
        text = (await c.get("/metrics")).text
    assert not (tmp_path / "onnx").exists()
    assert "fastai_serve_model_seconds" in text


async def test_runtime_onnx_fails_a_model_that_cannot_export(
    trained_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: TorchModel, example: Any) -> bytes:
        raise RuntimeError("no symbolic for aten::weird")

    monkeypatch.setattr(TorchModel, "export_onnx", broken)
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    for setting, status in (("onnx", "failed"), ("auto", "ready")):
        async for c in client_for(store, runtime=setting, onnx_cache_dir=tmp_path / setting):
            detail = (await c.get(f"/api/v1/models/{TABULAR}")).json()
            assert detail["status"] == status
            if status == "failed":
                assert detail["error"].startswith("FASTAI_SERVE_RUNTIME=onnx but this model cannot run")
                assert "no symbolic for aten::weird" in detail["error"]
            else:
                assert detail["runtime"] == "torch"
                assert "ONNX export failed" in detail["runtime_note"]
