"""Vision recipe: `vision_learner(resnet18)` on an image folder (the demo is a CIFAR-10 sample)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from service.training.common import TrainResult, export_model, held_out_accuracy, seed_everything

# CIFAR-10 statistics: with pretrained=False fastai adds no Normalize, so we add the data's own.
CIFAR_STATS = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@dataclass
class VisionRecipe:
    folder: Path  # `train/<class>/*` and optionally `test/<class>/*`
    out_dir: Path
    arch: str = "resnet18"
    pretrained: bool = False
    epochs: int = 5
    lr: float = 1e-2
    bs: int = 128
    size: int = 32
    seed: int = 42
    valid_pct: float = 0.05
    augment: bool = True
    ps: float = 0.25
    small_input_stem: bool = False
    max_per_class: int | None = None
    description: str = ""


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


def train_vision(recipe: VisionRecipe) -> TrainResult:
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import RandomSplitter, parent_label
    from fastai.metrics import Precision, Recall, accuracy
    from fastai.vision.all import FlipItem, ImageBlock, Normalize, Resize, models, vision_learner

    pretrained = recipe.pretrained and pretrained_weights_available(recipe.arch)
    stats = IMAGENET_STATS if pretrained else CIFAR_STATS
    # A per-item flip is a cheap PIL op; fastai's batch `Flip` resamples a grid, costly on CPU at this size.
    item_tfms: list[Any] = [Resize(recipe.size)] + ([FlipItem(0.5)] if recipe.augment else [])
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=lambda folder: _files(Path(folder) / "train", recipe.max_per_class),
        splitter=RandomSplitter(valid_pct=recipe.valid_pct, seed=recipe.seed),
        get_y=parent_label,
        item_tfms=item_tfms,
        batch_tfms=[Normalize.from_stats(*stats)],
    )
    seed_everything(recipe.seed)
    dls = block.dataloaders(recipe.folder, bs=recipe.bs, num_workers=0)
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
    started = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        if pretrained:
            learn.fine_tune(recipe.epochs, recipe.lr)
        else:
            learn.unfreeze()
            learn.fit_one_cycle(recipe.epochs, recipe.lr)
    seconds = time.perf_counter() - started
    metrics = evaluate_vision(learn, recipe.folder / "test", recipe.max_per_class)
    path = export_model(
        learn,
        out_dir=recipe.out_dir,
        kind="vision",
        description=recipe.description or f"vision_learner({recipe.arch}) on {recipe.folder.name}",
        metrics=metrics,
        extra={"train_seconds": round(seconds, 2), "seed": recipe.seed, "pretrained": pretrained},
    )
    return TrainResult(
        name=recipe.out_dir.name, kind="vision", learner_path=path, metrics=metrics, train_seconds=seconds
    )


def evaluate_vision(learn: Any, test_folder: Path, max_per_class: int | None) -> dict[str, float]:
    """Accuracy on the held-out `test/` folder when the data has one."""
    files = _files(test_folder, max_per_class) if test_folder.is_dir() else []
    if not files:
        return {}
    return {"test_accuracy": held_out_accuracy(learn, files), "test_images": float(len(files))}
