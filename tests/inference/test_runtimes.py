"""The runtime layer: ONNX Runtime under the fast paths equals torch and fastai's `get_preds`, falls back to
torch (saying why) when it cannot, reuses its cached export, and stays out of the way when told to."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.errors import LoadError
from service.inference import runtime as runtime_module
from service.inference.images import UploadedImage
from service.inference.kinds import predictor_for
from service.inference.runtime import (
    OnnxModel,
    RuntimeOptions,
    RuntimeSetting,
    TorchModel,
    select_runtime,
)
from service.loading import load_exported_learner, prepare_for_serving
from tests.helpers import (
    FIXTURES,
    TABULAR,
    VISION,
    fastai_probabilities,
    image_bytes,
    predicted_probabilities,
)

TOLERANCE = 1e-4
AUTO = RuntimeSetting.AUTO


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


def _three_ways(predictor: Any, options: RuntimeOptions, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """(torch probabilities, the runtime choice, onnx probabilities) for the same input."""
    torch_probs = predicted_probabilities(predictor, *args, **kwargs)
    choice = select_runtime(predictor, options, sha256="a" * 64)
    return torch_probs, choice, predicted_probabilities(predictor, *args, **kwargs)


def _served(path: Path) -> Any:
    import torch

    return prepare_for_serving(load_exported_learner(path).learn, torch.device("cpu"))


@pytest.fixture(scope="module")
def tabular_learner(trained_store: Path) -> Any:
    return _served(trained_store / TABULAR / "model.pkl")


@pytest.fixture(scope="module")
def vision_learner(trained_store: Path) -> Any:
    return _served(trained_store / VISION / "model.pkl")


@pytest.fixture
def options(tmp_path: Path) -> RuntimeOptions:
    return RuntimeOptions(setting=AUTO, cache_dir=tmp_path / "onnx")


def test_tabular_onnx_equals_torch_and_get_preds(
    tabular_learner: Any, adult_frame: pd.DataFrame, options: RuntimeOptions
) -> None:
    frame = adult_frame.drop(columns=["Salary"]).iloc[:700].copy()
    frame.loc[frame.index[::3], "age"] = np.nan
    frame.loc[frame.index[1::4], "occupation"] = np.nan
    predictor = predictor_for(tabular_learner)
    torch_probs, choice, onnx_probs = _three_ways(predictor, options, _rows(frame))
    assert (choice.name, predictor.runtime.name) == ("onnx", "onnx"), choice.note
    assert "parity with torch" in choice.note
    reference = fastai_probabilities(tabular_learner, frame)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=TOLERANCE)
    np.testing.assert_allclose(onnx_probs, reference, atol=TOLERANCE)
    assert (onnx_probs.argmax(1) == reference.argmax(1)).all()
    [one] = predictor.predict(_rows(frame.iloc[:1]))  # a batch of one through the dynamic axis
    assert one.probabilities == pytest.approx(
        dict(zip(predictor.classes, onnx_probs[0], strict=True)), abs=1e-6
    )


def test_vision_onnx_equals_torch_and_get_preds(vision_learner: Any, options: RuntimeOptions) -> None:
    uploads = [
        UploadedImage(f"{i}.png", image_bytes(size=(20 + 7 * i, 40 - 3 * i), seed=i)) for i in range(6)
    ]
    predictor = predictor_for(vision_learner)
    torch_probs, choice, onnx_probs = _three_ways(predictor, options, uploads)
    assert choice.name == "onnx", choice.note
    reference = fastai_probabilities(vision_learner, predictor.prepare(uploads).images)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=TOLERANCE)
    np.testing.assert_allclose(onnx_probs, reference, atol=TOLERANCE)


def test_cookbook_model_onnx_equals_torch_and_get_preds(tmp_path: Path, options: RuntimeOptions) -> None:
    shutil.copy(FIXTURES / "cookbook" / "adult_sample_model.pkl", tmp_path / "model.pkl")
    learn = _served(tmp_path / "model.pkl")
    frame = pd.read_csv(FIXTURES / "cookbook" / "adult_sample_test.csv")
    predictor = predictor_for(learn)
    torch_probs, choice, onnx_probs = _three_ways(predictor, options, _rows(frame), strict=False)
    assert choice.name == "onnx", choice.note
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=TOLERANCE)
    np.testing.assert_allclose(onnx_probs, fastai_probabilities(learn, frame), atol=TOLERANCE)


def test_export_failure_falls_back_to_torch_and_says_why(
    tabular_learner: Any, options: RuntimeOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: TorchModel, example: Any) -> bytes:
        raise RuntimeError("unsupported operator aten::weird")

    monkeypatch.setattr(TorchModel, "export_onnx", broken)
    predictor = predictor_for(tabular_learner)
    choice = select_runtime(predictor, options, sha256="b" * 64)
    assert choice.name == "torch"
    assert "ONNX export failed: RuntimeError: unsupported operator aten::weird" in choice.note
    assert isinstance(predictor.runtime, TorchModel)
    predictor.self_check()
    with pytest.raises(LoadError, match="FASTAI_SERVE_RUNTIME=onnx but this model cannot run"):
        select_runtime(predictor, RuntimeOptions(setting=RuntimeSetting.ONNX), sha256=None)


def test_mismatch_falls_back_to_torch(
    vision_learner: Any, options: RuntimeOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = OnnxModel.outputs

    def off(self: OnnxModel, *inputs: Any) -> np.ndarray:
        return honest(self, *inputs) + 1e-3

    monkeypatch.setattr(OnnxModel, "outputs", off)
    predictor = predictor_for(vision_learner)
    choice = select_runtime(predictor, options, sha256="c" * 64)
    assert choice.name == "torch"
    assert "ONNX Runtime differs from torch: outputs 1.0e-03 apart" in choice.note
    assert isinstance(predictor.runtime, TorchModel)


def test_parity_gap() -> None:
    expected = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    assert runtime_module.parity_gap(expected, expected.copy()) == 0.0
    # A tie in torch may resolve either way within float noise; a clear winner may not change.
    assert (
        runtime_module.parity_gap(expected, np.array([[0.2, 0.8], [0.50001, 0.49999]], dtype=np.float32))
        < 2e-5
    )
    with pytest.raises(runtime_module.RuntimeUnavailable, match="apart"):
        runtime_module.parity_gap(expected, np.array([[0.8, 0.2], [0.5, 0.5]], dtype=np.float32))


def test_cached_export_is_reused_and_still_checked(
    tabular_learner: Any, options: RuntimeOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = select_runtime(predictor_for(tabular_learner), options, sha256="d" * 64)
    cached = options.cache_dir / f"{'d' * 64}.onnx"  # type: ignore[operator]
    assert first.name == "onnx" and cached.is_file() and str(cached) in first.note
    exports = 0
    real_export = TorchModel.export_onnx

    def counting(self: TorchModel, example: Any) -> bytes:
        nonlocal exports
        exports += 1
        return real_export(self, example)

    monkeypatch.setattr(TorchModel, "export_onnx", counting)
    again = select_runtime(predictor_for(tabular_learner), options, sha256="d" * 64)
    assert again.name == "onnx" and "cached" in again.note and exports == 0
    cached.write_bytes(b"not an onnx model")  # a damaged cache is exported again, then repaired
    repaired = select_runtime(predictor_for(tabular_learner), options, sha256="d" * 64)
    assert repaired.name == "onnx" and exports == 1
    assert cached.read_bytes() != b"not an onnx model"


def test_unwritable_cache_still_serves_onnx(tabular_learner: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    choice = select_runtime(
        predictor_for(tabular_learner),
        RuntimeOptions(setting=AUTO, cache_dir=blocker / "onnx"),
        sha256="e" * 64,
    )
    assert choice.name == "onnx" and "exported at load" in choice.note


@pytest.mark.parametrize("spin", [True, False])
def test_onnx_threads_spin_only_where_one_process_owns_the_cores(
    tabular_learner: Any, tmp_path: Path, spin: bool
) -> None:
    """Several workers (`spin=False`, as `create_app` sets for WORKERS > 1): ONNX Runtime's intra-op threads
    sleep between runs instead of spinning on cores another worker needs; one process keeps the default."""
    predictor = predictor_for(tabular_learner)
    select_runtime(predictor, RuntimeOptions(setting=AUTO, cache_dir=tmp_path, spin=spin), sha256="9" * 64)
    assert isinstance(predictor.runtime, OnnxModel)
    options = predictor.runtime.session.get_session_options()
    if spin:  # ONNX Runtime's default: no entry at all
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry("session.intra_op.allow_spinning")
    else:
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_runtime_torch_setting_keeps_torch(tabular_learner: Any, tmp_path: Path) -> None:
    predictor = predictor_for(tabular_learner)
    options = RuntimeOptions(setting=RuntimeSetting.TORCH, cache_dir=tmp_path)
    choice = select_runtime(predictor, options, sha256="f" * 64)
    assert (choice.name, choice.note) == ("torch", "FASTAI_SERVE_RUNTIME=torch")
    assert isinstance(predictor.runtime, TorchModel)
    assert not list(tmp_path.iterdir())


def test_no_fast_path_keeps_fastai_pipeline(vision_learner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.inference import vision as vision_module

    monkeypatch.setattr(vision_module, "FAST_ITEM_TFMS", {"ToTensor"})
    predictor = predictor_for(vision_learner)
    choice = select_runtime(predictor, RuntimeOptions(setting=AUTO), sha256=None)
    assert choice.name == "torch" and "fastai's own pipeline" in choice.note
    with pytest.raises(LoadError, match="no fast path"):
        select_runtime(predictor, RuntimeOptions(setting=RuntimeSetting.ONNX), sha256=None)


def test_export_leaves_the_model_in_eval_mode(tabular_learner: Any, options: RuntimeOptions) -> None:
    select_runtime(predictor_for(tabular_learner), options, sha256=None)
    assert not any(m.training for m in tabular_learner.model.modules())
