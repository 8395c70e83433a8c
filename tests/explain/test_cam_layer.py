"""Where Grad-CAM looks: the deepest layer of the learner's body with a map of at least 4×4 at the served
size (else the deepest with more than 1×1), found from the model itself, for several fastai bodies."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from service.explain.images import body_of, cam_layer
from tests.tiny import cifar_files


def _learner(arch: Any, size: int) -> Any:
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Resize, parent_label, vision_learner

    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=parent_label, item_tfms=Resize(size))
    dls = block.dataloaders(cifar_files(2), bs=4, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vision_learner(dls, arch, pretrained=False)


@pytest.mark.parametrize(
    ("arch", "size", "path", "side"),
    [
        ("resnet18", 32, "0.5", 4),  # layer3 is 2×2 here: layer2's 4×4 map is taken
        ("resnet18", 64, "0.6", 4),  # layer3 at 4×4 (layer4 is 2×2)
        ("resnet18", 224, "0.7", 7),  # the usual choice at ImageNet's size: layer4, 7×7
        ("squeezenet1_1", 96, "0.0", 5),  # its `features`, whose last Fire module gives the 5×5 map
    ],
)
def test_the_deepest_map_of_at_least_four_pixels_a_side_is_chosen(
    arch: str, size: int, path: str, side: int
) -> None:
    import torchvision.models

    learn = _learner(getattr(torchvision.models, arch), size)
    model = learn.model.eval()
    name, module, shape = cam_layer(model, torch.zeros(1, 3, size, size), name="test")
    assert name.split(" ")[0] == path
    assert shape == (side, side)
    assert any(m is module for m in body_of(model).modules())


def test_a_unet_looks_in_its_encoder(seg_store: Any) -> None:
    from fastai.learner import load_learner

    from tests.tiny_segmentation import IMAGE_SIZE, SEGMENTATION

    model = load_learner(seg_store / SEGMENTATION / "model.pkl").model.eval()
    name, module, shape = cam_layer(model, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), name="test")
    assert name.startswith("layers.0")
    assert any(m is module for m in model.layers[0].modules())
    assert min(shape) >= 4
