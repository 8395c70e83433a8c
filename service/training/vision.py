"""Vision recipe: `vision_learner(resnet18)` on an image folder (the demo is a CIFAR-10 sample)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from service.inference.predictor import ModelKind
from service.inference.vision import VisionPredictor
from service.reports.writer import fit_outcome
from service.training.common import (
    FitOptions,
    TrainResult,
    captured_stdout,
    fit,
    publish,
    recipe_dict,
    reseed_loaders,
    score_images,
    seed_everything,
    serving_predictor,
)

# CIFAR-10 statistics: with pretrained=False fastai adds no Normalize, so we add the data's own.
CIFAR_STATS = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@dataclass
class VisionRecipe:
    folder: Path  # `train/<class>/*` (or `<class>/*`) and optionally `test/<class>/*`
    out_dir: Path
    arch: str = "resnet18"
    pretrained: bool = False
    epochs: int = 5
    lr: float = 1e-2
    bs: int = 128
    size: int = 32
    seed: int = 42
    valid_pct: float = 0.05
    test_folder: Path | None = None  # default: `folder/test`, else `test_pct` of the images held out
    test_pct: float = 0.1
    flip: bool = True  # a cheap per-item horizontal flip
    augment: bool = False  # fastai's aug_transforms (batch warps, rotation, lighting)
    ps: float = 0.25
    small_input_stem: bool = False
    max_per_class: int | None = None
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)


def pretrained_weights_available(arch: str) -> bool:
    """torchvision weights work offline only when the checkpoint is already in $TORCH_HOME."""
    import torch.hub
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    filename = Path(weights.url).name
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def _files(folder: Path, max_per_class: int | None) -> list[Path]:
    from fastai.data.transforms import get_image_files

    files = sorted(get_image_files(folder))
    if max_per_class is None:
        return files
    counts: dict[str, int] = {}
    kept = []
    for f in files:
        counts[f.parent.name] = counts.get(f.parent.name, 0) + 1
        if counts[f.parent.name] <= max_per_class:
            kept.append(f)
    return kept


def adapt_stem_for_small_images(model: nn.Module) -> None:
    """Drop the stem's max-pool: on 32x32 inputs resnet18 otherwise ends on a 1x1 feature map."""
    body: Any = model[0]  # type: ignore[index]
    if isinstance(body[3], nn.MaxPool2d):
        body[3] = nn.Identity()


def _train_and_test(recipe: VisionRecipe) -> tuple[list[Path], list[Path], str | None]:
    train_root = recipe.folder / "train" if (recipe.folder / "train").is_dir() else recipe.folder
    files = [f for f in _files(train_root, recipe.max_per_class) if f.parent.parent == train_root]
    test_root = recipe.test_folder or (recipe.folder / "test" if (recipe.folder / "test").is_dir() else None)
    if test_root is not None:
        return files, _files(test_root, recipe.max_per_class), str(test_root.name)
    if recipe.test_pct <= 0:
        return files, [], None
    # Held out before fastai sees the data: never trained on, never used to pick an epoch.
    order = np.random.default_rng(recipe.seed).permutation(len(files))
    cut = int(round(len(files) * recipe.test_pct))
    test = sorted(files[i] for i in order[:cut])
    held = set(test)
    source = f"{len(test)} images held out of {train_root.name} (seed {recipe.seed})"
    return [f for f in files if f not in held], test, source


def train_vision(recipe: VisionRecipe) -> TrainResult:
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import RandomSplitter, parent_label
    from fastai.metrics import Precision, Recall, accuracy
    from fastai.vision.all import (
        FlipItem,
        ImageBlock,
        Normalize,
        Resize,
        aug_transforms,
        models,
        vision_learner,
    )

    pretrained = recipe.pretrained and pretrained_weights_available(recipe.arch)
    stats = IMAGENET_STATS if pretrained else CIFAR_STATS
    train_files, test_files, test_source = _train_and_test(recipe)
    # A per-item flip is a cheap PIL op; fastai's batch `Flip` resamples a grid, costly on CPU at this size.
    item_tfms: list[Any] = [Resize(recipe.size)] + ([FlipItem(0.5)] if recipe.flip else [])
    batch_tfms: list[Any] = aug_transforms(size=recipe.size) if recipe.augment else []
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=lambda _: train_files,
        splitter=RandomSplitter(valid_pct=recipe.valid_pct, seed=recipe.seed),
        get_y=parent_label,
        item_tfms=item_tfms,
        batch_tfms=[*batch_tfms, Normalize.from_stats(*stats)],
    )
    with captured_stdout() as summary:
        block.summary(recipe.folder, bs=min(recipe.bs, 4))
    seed_everything(recipe.seed)
    dls = block.dataloaders(recipe.folder, bs=recipe.bs, num_workers=0)
    reseed_loaders(dls, recipe.seed)
    learn = vision_learner(
        dls,
        getattr(models, recipe.arch),
        pretrained=pretrained,
        normalize=False,
        ps=recipe.ps,
        metrics=[accuracy, Precision(average="macro"), Recall(average="macro")],
    )
    if recipe.small_input_stem and recipe.size <= 64:
        adapt_stem_for_small_images(learn.model)
    if not pretrained:
        learn.unfreeze()
    seconds = fit(learn, epochs=recipe.epochs, lr=recipe.lr, options=recipe.fit, fine_tune=pretrained)
    outcome = fit_outcome(
        learn, epochs=recipe.epochs, monitor=recipe.fit.monitor, min_delta=recipe.fit.min_delta
    )
    return publish(
        learn,
        kind=ModelKind.VISION,
        out_dir=recipe.out_dir,
        outcome=outcome,
        seconds=seconds,
        seed=recipe.seed,
        score=lambda path: (
            score_images(serving_predictor(path, VisionPredictor), test_files, source=test_source)
            if test_files and test_source is not None
            else None
        ),
        description=recipe.description or f"vision_learner({recipe.arch}) on {recipe.folder.name}",
        augmented=recipe.augment,
        datablock_summary="".join(summary),
        recipe=recipe_dict(recipe, pretrained_used=pretrained),
        manifest_extra={"pretrained": pretrained},
    )
