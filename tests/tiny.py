"""Tiny real learners of every task, built with fastai as a notebook would (a few seconds each), and learners
the service must refuse. `conftest.py` builds them once per session into a store; tests name them here."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.training import data

# Store names of the tiny learners of each task (the classifiers are `helpers.TABULAR`/`helpers.VISION`).
TAB_REGRESSION = "adult-hours"  # tabular regression, one target
TAB_REGRESSION_2 = "adult-hours-age"  # tabular regression, two targets
TAB_MULTI = "adult-tags"  # tabular multi-label (two encoded y_names)
VIS_MULTI = "cifar-tags"  # vision multi-label
VIS_REGRESSION = "cifar-brightness"  # vision regression, two unnamed targets
VIS_POINTS = "cifar-points"  # vision points, two points
TASK_MODELS = [TAB_REGRESSION, TAB_REGRESSION_2, TAB_MULTI, VIS_MULTI, VIS_REGRESSION, VIS_POINTS]

# Learners the service refuses (names say what they are).
REFUSED = ["vision-bbox", "image-to-image", "plain-learner"]

TAB_CAT = ["workclass", "education", "sex"]
TAB_CONT = ["age", "fnlwgt", "education-num"]
MULTI_TAGS = ["rich", "long_hours"]
IMAGE_SIZE = 16
# The points each cifar image is labelled with, in its own (32 x 32) pixels: a fixed pair, so a tiny model
# can learn them in an epoch.
POINTS = [[8.0, 6.0], [24.0, 20.0]]


def _quiet(learn: Any) -> Any:
    from fastai.callback.progress import ProgressCallback

    if ProgressCallback in [type(cb) for cb in learn.cbs]:
        learn.remove_cb(ProgressCallback)
    learn.logger = lambda *args: None
    return learn


def tag_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The adult rows with the two multi-label targets as boolean columns."""
    out = frame.copy()
    out["rich"] = out[data.ADULT_TARGET].astype(str).str.contains(">50K")
    out["long_hours"] = out["hours-per-week"] > 40
    return out


def tabular_regression(frame: pd.DataFrame, y_names: list[str]) -> Any:
    from fastai.tabular.all import (
        Categorify,
        FillMissing,
        Normalize,
        RegressionBlock,
        TabularDataLoaders,
        tabular_learner,
    )

    dls = TabularDataLoaders.from_df(
        frame[TAB_CAT + TAB_CONT + y_names].dropna(subset=y_names),
        procs=[Categorify, FillMissing, Normalize],
        cat_names=list(TAB_CAT),  # fastai appends FillMissing's flags to the list it is given
        cont_names=list(TAB_CONT),
        y_names=y_names,
        y_block=RegressionBlock(),
        bs=256,
    )
    learn = _quiet(tabular_learner(dls, layers=[16]))
    learn.fit_one_cycle(2, 1e-2)
    return learn


def tabular_multi_label(frame: pd.DataFrame) -> Any:
    from fastai.tabular.all import (
        Categorify,
        FillMissing,
        MultiCategoryBlock,
        Normalize,
        TabularDataLoaders,
        tabular_learner,
    )

    dls = TabularDataLoaders.from_df(
        tag_frame(frame)[TAB_CAT + TAB_CONT + MULTI_TAGS],
        procs=[Categorify, FillMissing, Normalize],
        cat_names=list(TAB_CAT),  # fastai appends FillMissing's flags to the list it is given
        cont_names=list(TAB_CONT),
        y_names=MULTI_TAGS,
        y_block=MultiCategoryBlock(encoded=True, vocab=MULTI_TAGS),
        bs=256,
    )
    learn = _quiet(tabular_learner(dls, layers=[16]))
    learn.fit_one_cycle(2, 1e-2)
    return learn


def cifar_files(per_class: int = 6) -> list[Path]:
    folder = data.demo_cifar_folder() / "train"
    return [f for c in sorted(folder.iterdir()) for f in sorted(c.glob("*.jpg"))[:per_class]]


# fastai's transforms read a `get_y`'s return annotation as the type to keep, and a parameterised one
# (list[str]) breaks them: these three have none.
def image_tags(path: Path):  # type: ignore[no-untyped-def]
    """Multi-label targets of a cifar image: its class, and `vehicle` for the vehicles."""
    vehicles = {"airplane", "automobile", "ship", "truck"}
    return [path.parent.name, *(["vehicle"] if path.parent.name in vehicles else [])]


def image_brightness(path: Path):  # type: ignore[no-untyped-def]
    """Two regression targets of an image: mean brightness and red share, from its own pixels."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
    return [float(pixels.mean()), float(pixels[..., 0].mean())]


def image_points(path: Path):  # type: ignore[no-untyped-def]
    from fastai.vision.all import TensorPoint

    return TensorPoint(np.array(POINTS, dtype=np.float32))


def _vision(blocks: tuple[Any, ...], get_y: Callable[[Path], Any], *, method: str = "crop", **kw: Any) -> Any:
    from fastai.vision.all import DataBlock, Resize, resnet18, vision_learner

    block = DataBlock(blocks=blocks, get_y=get_y, item_tfms=Resize(IMAGE_SIZE, method=method))
    dls = block.dataloaders(cifar_files(), bs=16, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = _quiet(vision_learner(dls, resnet18, pretrained=False, **kw))
        learn.fit_one_cycle(1, 1e-3)
    return learn


def vision_multi_label() -> Any:
    from fastai.vision.all import ImageBlock, MultiCategoryBlock

    return _vision((ImageBlock, MultiCategoryBlock), image_tags)


def vision_regression() -> Any:
    from fastai.vision.all import ImageBlock, RegressionBlock

    return _vision((ImageBlock, RegressionBlock(n_out=2)), image_brightness)


def vision_points() -> Any:
    from fastai.vision.all import ImageBlock, PointBlock

    return _vision((ImageBlock, PointBlock), image_points, method="squish")


def build_task_learners(store: Path, frame: pd.DataFrame) -> None:
    """Every task's tiny learner exported into `store/<name>/model.pkl`."""
    learners = {
        TAB_REGRESSION: lambda: tabular_regression(frame, ["hours-per-week"]),
        TAB_REGRESSION_2: lambda: tabular_regression(frame, ["hours-per-week", "capital-gain"]),
        TAB_MULTI: lambda: tabular_multi_label(frame),
        VIS_MULTI: vision_multi_label,
        VIS_REGRESSION: vision_regression,
        VIS_POINTS: vision_points,
    }
    for name, build in learners.items():
        (store / name).mkdir(parents=True, exist_ok=True)
        build().export(store / name / "model.pkl")


# -- learners the service must refuse (never trained: recognition reads what they are) --------------------
def refused_learners(frame: pd.DataFrame) -> dict[str, Any]:
    import torch
    from fastai.data.core import Datasets
    from fastai.learner import Learner
    from fastai.vision.all import (
        BBoxBlock,
        BBoxLblBlock,
        DataBlock,
        ImageBlock,
        MSELossFlat,
        Resize,
        TensorBBox,
        resnet18,
        unet_learner,
        vision_learner,
    )

    files = cifar_files(per_class=2)

    boxes = DataBlock(
        blocks=(ImageBlock, BBoxBlock, BBoxLblBlock),
        get_y=[lambda f: TensorBBox([[2.0, 2.0, 20.0, 20.0]]), lambda f: [f.parent.name]],
        item_tfms=Resize(IMAGE_SIZE),
        n_inp=1,
    )
    bbox = vision_learner(
        boxes.dataloaders(files, bs=4, num_workers=0),
        resnet18,
        pretrained=False,
        n_out=4,
        loss_func=MSELossFlat(),
    )

    pairs = DataBlock(blocks=(ImageBlock, ImageBlock), get_y=lambda f: f, item_tfms=Resize(IMAGE_SIZE))
    image_to_image = unet_learner(
        pairs.dataloaders(files, bs=4, num_workers=0),
        resnet18,
        pretrained=False,
        n_out=3,
        loss_func=MSELossFlat(),
    )

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    dsets = Datasets(
        list(range(32)),
        tfms=[[x.__getitem__], [y.__getitem__]],
        splits=[list(range(24)), list(range(24, 32))],
    )
    plain = Learner(dsets.dataloaders(bs=8), torch.nn.Linear(3, 1), loss_func=torch.nn.MSELoss())
    return {
        "vision-bbox": bbox,
        "image-to-image": image_to_image,
        "plain-learner": plain,
    }


def build_refused_learners(store: Path, frame: pd.DataFrame) -> None:
    for name, learn in refused_learners(frame).items():
        (store / name).mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.export(store / name / "model.pkl")
