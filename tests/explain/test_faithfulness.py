"""Faithfulness, measured: attributions rank the inputs a model really uses. A tabular learner whose label
depends on two known columns ranks those two first; on an image learner whose class is the colour of one
small square, occluding the pixels its map ranks highest costs far more probability than as many random
pixels."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from service.explain.core import Method
from service.explain.faithfulness import occlusion
from service.explain.images import ImageExplainer
from service.explain.rows import RowExplainer
from service.inference.images import UploadedImage
from service.inference.kinds import recognise
from service.inference.tabular import TabularPredictor
from service.inference.vision import VisionPredictor

SIGNAL = ["a", "e"]  # the label's two columns: one continuous, one categorical
NOISE_CONT, NOISE_CAT = "c", "d"


def _quiet(learn: Any) -> Any:
    from fastai.callback.progress import ProgressCallback

    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *args: None
    return learn


def synthetic_rows(n: int, *, seed: int) -> pd.DataFrame:
    """`label` = yes when a + (±1.5 by e) > 0, with |a| in [0.5, 2]; c and d are noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            # Away from its mean (the reference): a row's `a` always moves its answer.
            "a": rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.5, 2.0, size=n),
            "c": rng.normal(size=n),
            "e": rng.choice(["p", "q", "r", "s"], size=n),
            "d": rng.choice(["w", "x", "y", "z"], size=n),
        }
    )
    push = np.where(frame["e"].isin(["p", "q"]), 1.5, -1.5)
    frame["label"] = np.where(frame["a"] + push > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def row_learner() -> Any:
    from fastai.tabular.all import Categorify, Normalize, TabularDataLoaders, set_seed, tabular_learner

    set_seed(0, reproducible=True)
    dls = TabularDataLoaders.from_df(
        synthetic_rows(2000, seed=0),
        procs=[Categorify, Normalize],
        cat_names=["e", "d"],
        cont_names=["a", "c"],
        y_names="label",
        bs=64,
    )
    learn = _quiet(tabular_learner(dls, layers=[32]))
    learn.fit_one_cycle(5, 1e-2)
    return learn


def test_the_two_columns_the_label_depends_on_rank_first(row_learner: Any) -> None:
    predictor = recognise(row_learner).build(row_learner, _options())
    assert isinstance(predictor, TabularPredictor)
    explainer = RowExplainer(predictor, name="synthetic")
    rows = synthetic_rows(60, seed=1).drop(columns="label").to_dict("records")
    explained = explainer.explain(predictor.prepare(rows), target=None, method=Method.INTEGRATED_GRADIENTS)
    first_two = [
        set(sorted(item.attributions, key=lambda c: -abs(item.attributions[c]))[:2])
        for item in explained.items
    ]
    share = np.mean([ranked == set(SIGNAL) for ranked in first_two])
    assert share >= 0.9, share
    errors = [item.error for item in explained.items]
    assert max(errors) <= 1e-2


def _options() -> Any:
    from service.inference.kinds import BuildOptions

    return BuildOptions()


def square_image(index: int, *, size: int = 32) -> tuple[np.ndarray, str]:
    """Grey noise with one 8-pixel square, red or blue (the class), somewhere random."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(90, 166, size=(size, size, 3)).astype(np.uint8)
    label = "red" if index % 2 else "blue"
    x0, y0 = (int(v) for v in rng.integers(0, size - 8, size=2))
    pixels[y0 : y0 + 8, x0 : x0 + 8] = (230, 30, 30) if label == "red" else (30, 30, 230)
    return pixels, label


@pytest.fixture(scope="module")
def square_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("squares")
    files = []
    for i in range(160):
        pixels, label = square_image(i)
        (folder / label).mkdir(exist_ok=True)
        path = folder / label / f"{i}.png"
        Image.fromarray(pixels).save(path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def image_learner(square_images: list[Path]) -> Any:
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        Resize,
        parent_label,
        set_seed,
        vision_learner,
    )

    from tests.tiny_segmentation import tiny_body

    set_seed(0, reproducible=True)
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=parent_label, item_tfms=Resize(32))
    dls = block.dataloaders(square_images, bs=16, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = _quiet(vision_learner(dls, tiny_body, pretrained=False))
        learn.fit_one_cycle(4, 1e-2)
    return learn


@pytest.mark.parametrize("method", list(Method))
def test_occluding_the_top_of_the_map_costs_more_than_random_pixels(
    image_learner: Any, method: Method
) -> None:
    predictor = recognise(image_learner).build(image_learner, _options())
    assert isinstance(predictor, VisionPredictor)
    import io

    uploads = []
    for i in range(1000, 1040):
        pixels, _ = square_image(i)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        uploads.append(UploadedImage(f"{i}.png", buffer.getvalue()))
    result = occlusion(ImageExplainer(predictor, name="squares"), predictor.prepare(uploads), method=method)
    assert result.n == 40
    assert result.top_drop > 2 * result.random_drop, result
    assert result.top_drop > 0.2, result
