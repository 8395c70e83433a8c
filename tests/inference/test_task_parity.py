"""Every task is served the learner's way: what the predictor gives equals fastai's own
`get_preds(dl=test_dl(...), with_decoded=True)` (values ≤ 1e-4, labels equal) on torch and on ONNX Runtime,
and points come back in the uploaded image's pixels exactly where fastai's own transforms put them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.inference.images import UploadedImage
from service.inference.kinds import predictor_for, recognise
from service.inference.runtime import RuntimeOptions, RuntimeSetting, select_runtime
from service.inference.tasks import Decoding, Task
from service.loading import load_exported_learner
from tests.helpers import image_bytes
from tests.tiny import (
    MULTI_TAGS,
    TAB_CAT,
    TAB_CONT,
    TAB_MULTI,
    TAB_REGRESSION,
    TAB_REGRESSION_2,
    VIS_MULTI,
    VIS_POINTS,
    VIS_REGRESSION,
)

TOLERANCE = 1e-4
TABULAR_TASKS = {
    TAB_REGRESSION: Task.REGRESSION,
    TAB_REGRESSION_2: Task.REGRESSION,
    TAB_MULTI: Task.MULTI_LABEL,
}
VISION_TASKS = {VIS_MULTI: Task.MULTI_LABEL, VIS_REGRESSION: Task.REGRESSION, VIS_POINTS: Task.POINTS}


def _learner(store: Path, name: str) -> Any:
    return load_exported_learner(store / name / "model.pkl").learn


def _fastai(learn: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
    """fastai's activated outputs and decoded predictions for `items`."""
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        outputs, _, decoded = learn.get_preds(dl=dl, with_decoded=True)
    return np.asarray(outputs.numpy()), np.asarray(decoded.numpy())


def _runtimes(predictor: Any, tmp_path: Path) -> Iterator[str]:
    """Torch first, then ONNX Runtime (with `onnx` the model fails rather than fall back to torch)."""
    yield predictor.runtime.name
    options = RuntimeOptions(RuntimeSetting.ONNX, tmp_path / "onnx")
    yield select_runtime(predictor, options, sha256=None).name


def _rows(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    rows = frame[TAB_CAT + TAB_CONT].iloc[:n].copy()
    rows.loc[rows.index[1::5], "workclass"] = np.nan
    return rows


@pytest.mark.parametrize("name", list(TABULAR_TASKS))
def test_tabular_tasks_equal_fastai_on_both_runtimes(
    name: str, task_store: Path, adult_frame: pd.DataFrame, tmp_path: Path
) -> None:
    learn = _learner(task_store, name)
    assert recognise(learn).task is TABULAR_TASKS[name]
    predictor = predictor_for(learn)
    rows = _rows(adult_frame, 200)
    reference, decoded = _fastai(learn, rows)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    for runtime in _runtimes(predictor, tmp_path):
        assert predictor.runtime.name == runtime
        prepared = predictor.prepare(records)
        outputs = predictor.forward_many([prepared])[0]
        np.testing.assert_allclose(outputs, reference, atol=TOLERANCE, rtol=TOLERANCE)
        predictions = predictor.finish(prepared, outputs)
        if TABULAR_TASKS[name] is Task.MULTI_LABEL:
            chosen = [[c in p.labels for c in MULTI_TAGS] for p in predictions]
            assert np.array_equal(np.array(chosen), decoded.astype(bool))
        else:
            targets = predictor.head.targets
            values = np.array([[p.values[t] for t in targets] for p in predictions])
            np.testing.assert_allclose(values, decoded, atol=TOLERANCE, rtol=TOLERANCE)


def _uploads(n: int = 6) -> list[UploadedImage]:
    sizes = [(32, 32), (48, 30), (20, 40), (64, 64), (33, 17), (16, 16)]
    return [UploadedImage(f"{i}.png", image_bytes(size=sizes[i % len(sizes)], seed=i)) for i in range(n)]


@pytest.mark.parametrize("name", list(VISION_TASKS))
def test_vision_tasks_equal_fastai_on_both_runtimes(name: str, task_store: Path, tmp_path: Path) -> None:
    learn = _learner(task_store, name)
    assert recognise(learn).task is VISION_TASKS[name]
    predictor = predictor_for(learn)
    uploads = _uploads()
    images = predictor.prepare(uploads).images
    reference, decoded = _fastai(learn, images)
    for runtime in _runtimes(predictor, tmp_path):
        assert predictor.runtime.name == runtime
        prepared = predictor.prepare(uploads)
        outputs = predictor.forward_many([prepared])[0]
        np.testing.assert_allclose(
            outputs, reference.reshape(len(outputs), -1), atol=TOLERANCE, rtol=TOLERANCE
        )
        predictions = predictor.finish(prepared, outputs)
        if VISION_TASKS[name] is Task.MULTI_LABEL:
            classes = predictor.head.classes
            chosen = np.array([[c in p.labels for c in classes] for p in predictions])
            assert np.array_equal(chosen, decoded.astype(bool))


def test_points_map_back_to_the_uploaded_images_pixels_as_fastais_transforms_do(task_store: Path) -> None:
    """fastai's own item transforms take a point of an image to [-1, 1] of the model's input; the served
    points take that back to the same pixel, whatever the image's size."""
    from fastai.vision.all import PILImage, TensorPoint
    from fasttransform.transform import Pipeline

    learn = _learner(task_store, VIS_POINTS)
    predictor = predictor_for(learn)
    after_item = Pipeline(list(learn.dls.valid.after_item.fs), split_idx=1)
    for upload in _uploads():
        image = PILImage.create(upload.data)
        width, height = image.size
        truth = np.array([[0.25 * width, 0.5 * height], [0.8 * width, 0.1 * height]], dtype=np.float32)
        _, scaled = after_item((image, TensorPoint(truth, img_size=(width, height))))
        prepared = predictor.prepare([upload])
        outputs = np.asarray(scaled, dtype=np.float32).reshape(1, -1)
        [prediction] = predictor.head.decode(outputs, how=Decoding(boxes=predictor.boxes(prepared)))
        np.testing.assert_allclose(prediction.points, truth, atol=1e-3)


def test_the_learners_threshold_decodes_and_a_requests_own_overrides_it(task_store: Path) -> None:
    learn = _learner(task_store, VIS_MULTI)
    learn.loss_func.thresh = 0.3
    predictor = predictor_for(learn)
    prepared = predictor.prepare(_uploads(2))
    outputs = predictor.forward_many([prepared])[0]
    for prediction, row in zip(predictor.finish(prepared, outputs), outputs, strict=True):
        assert prediction.threshold == 0.3
        assert prediction.labels == [c for c, p in zip(predictor.head.classes, row, strict=True) if p > 0.3]
    for prediction, row in zip(predictor.finish(prepared, outputs, threshold=0.9), outputs, strict=True):
        assert prediction.threshold == 0.9
        assert prediction.labels == [c for c, p in zip(predictor.head.classes, row, strict=True) if p > 0.9]
