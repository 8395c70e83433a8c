"""A tiny real segmentation learner (`unet_learner` over `MaskBlock`), built as a notebook would in seconds:
generated images of a square and a disc on a dark ground, their masks, one short fit. `conftest.py` builds it
once per session into a store of its own."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SEGMENTATION = "shapes-unet"  # store name of the tiny segmentation learner
CODES = ["background", "square", "disc"]
IMAGE_SIZE = 32  # the learner's Resize
# Raw sizes of the generated images (width, height): the centre crop cuts the non-square ones.
SIZES = [(32, 32), (40, 28), (28, 40)]
N_IMAGES = 24
EPOCHS, LR = 4, 1e-2


def shapes(index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of `size` (width, height) with a red square and a blue disc on a dark ground, and its
    mask (0 background, 1 square, 2 disc); `index` seeds where they are."""
    width, height = size
    rng = np.random.default_rng(index)
    pixels = np.full((height, width, 3), 30, dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    side = int(rng.integers(8, 13))
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    pixels[y0 : y0 + side, x0 : x0 + side] = (220, 40, 40)
    mask[y0 : y0 + side, x0 : x0 + side] = 1
    cx, cy = int(rng.integers(width // 2, width)), int(rng.integers(height // 2, height))
    yy, xx = np.mgrid[:height, :width]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 25
    pixels[disc] = (40, 40, 220)
    mask[disc] = 2
    return pixels, mask


def write_shapes(folder: Path, n: int = N_IMAGES) -> list[Path]:
    """`n` generated images in `folder/images` and their masks (8-bit PNG, class index per pixel) under the
    same names in `folder/masks`."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        pixels, mask = shapes(i, SIZES[i % len(SIZES)])
        Image.fromarray(pixels).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
        files.append(folder / "images" / f"{i}.png")
    return files


# fastai reads a `get_y`'s return annotation as the type to keep: none here.
def mask_path(path: Path):  # type: ignore[no-untyped-def]
    """An image's mask: the file of the same name in the sibling `masks` folder."""
    return path.parent.parent / "masks" / path.name


def tiny_body(pretrained: bool = False) -> Any:
    """A three-stage convolutional body, as `unet_learner` takes an `arch`: it cuts at the pooling layer and
    builds the decoder on the rest (nothing pretrained, nothing downloaded)."""
    from fastai.layers import ConvLayer
    from torch import nn

    return nn.Sequential(
        ConvLayer(3, 16, stride=2),
        ConvLayer(16, 32, stride=2),
        ConvLayer(32, 64, stride=2),
        nn.AdaptiveAvgPool2d(1),
    )


def segmentation_learner(folder: Path) -> Any:
    """`unet_learner` (a tiny custom body, no pretrained weights) on the generated shapes."""
    from fastai.callback.progress import ProgressCallback
    from fastai.vision.all import (
        DataBlock,
        ImageBlock,
        MaskBlock,
        RandomSplitter,
        Resize,
        set_seed,
        unet_learner,
    )

    set_seed(0, reproducible=True)
    block = DataBlock(
        blocks=(ImageBlock, MaskBlock(codes=list(CODES))),
        get_y=mask_path,
        item_tfms=Resize(IMAGE_SIZE),
        splitter=RandomSplitter(0.25, seed=0),
    )
    dls = block.dataloaders(write_shapes(folder), bs=4, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = unet_learner(dls, tiny_body, pretrained=False, n_out=len(CODES))
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *args: None
        learn.fit_one_cycle(EPOCHS, LR)
    return learn


def build_segmentation_learners(store: Path, data: Path) -> None:
    """The tiny segmentation learner exported into `store/<name>/model.pkl` (its data in `data`)."""
    (store / SEGMENTATION).mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmentation_learner(data).export(store / SEGMENTATION / "model.pkl")
