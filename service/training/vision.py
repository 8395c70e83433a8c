"""Vision recipe: `vision_learner(resnet18)` on an image folder (the demo is a CIFAR-10 sample)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from service.errors import (
    MSG_ARCH_UNUSABLE,
    MSG_EMPTY_CLASS,
    MSG_NO_CLASS_FOLDERS,
    MSG_ONE_CLASS,
    MSG_UNKNOWN_ARCH,
    MSG_UNKNOWN_TEST_CLASSES,
    TrainingInputError,
)
from service.inference.vision import VisionPredictor
from service.training.common import (
    FitOptions,
    TrainResult,
    captured_stdout,
    check_monitor,
    fit,
    image_reference,
    publish,
    recipe_dict,
    score_images,
    seeded_loaders,
)
from service.training.data import existing_folder, first_line

# CIFAR-10 statistics: with pretrained=False fastai adds no Normalize, so we add the data's own.
CIFAR_STATS = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
# Shipped by fastai or torchvision, but vision_learner cannot cut a body out of them (no pooling layer it
# finds, auxiliary outputs) or, for xsenet154, fastai's constructor is broken: checked with fastai 2.8.12
# and torchvision 0.29 by building each one.
UNUSABLE_ARCHS = ("xsenet154", "googlenet", "inception_v3", "maxvit_t", "mnasnet", "mobilenet_v2", "vit_")


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
    label_smoothing: float = 0.0  # fastai's LabelSmoothingCrossEntropyFlat(eps) when > 0
    small_input_stem: bool = False
    max_per_class: int | None = None
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)


def architectures() -> dict[str, Callable[..., nn.Module]]:
    """Every architecture `--arch` takes: fastai's xresnets (`fastai.vision.models.xresnet`) and
    torchvision's image classifiers (resnets included), by name."""
    import torchvision
    from fastai.vision.models import xresnet

    found = {n: getattr(xresnet, n) for n in xresnet.__all__ if n.startswith("x")}
    found |= {
        n: getattr(torchvision.models, n) for n in torchvision.models.list_models(module=torchvision.models)
    }
    natural = sorted(found, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])
    return {n: found[n] for n in natural if not n.startswith(UNUSABLE_ARCHS)}


def resolve_arch(name: str) -> Callable[..., nn.Module]:
    choices = architectures()
    if name not in choices:
        raise TrainingInputError(MSG_UNKNOWN_ARCH.format(arch=name, choices=", ".join(choices)))
    return choices[name]


def check_arch_fits(model: nn.Module, *, arch: str, size: int) -> None:
    """One forward pass of a blank batch: an architecture too deep for tiny images (alexnet at 32x32)
    fails here, in a line, instead of in the first training batch. No RNG is drawn: numbers stay the same."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, size, size, device=device))
    except (RuntimeError, ValueError) as exc:
        reason = first_line(exc)
        raise TrainingInputError(MSG_ARCH_UNUSABLE.format(arch=arch, size=size, reason=reason)) from exc
    finally:
        model.train(was_training)


def pretrained_weights_available(arch: str) -> bool:
    """torchvision weights work offline only when the checkpoint is already in $TORCH_HOME (fastai's
    xresnets have none)."""
    import torch.hub
    from torchvision import models

    try:
        weights = models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        return False
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
    if len(body) > 3 and isinstance(body[3], nn.MaxPool2d):
        body[3] = nn.Identity()


def _class_files(
    root: Path, *, what: str, max_per_class: int | None, skip: Path | None = None
) -> dict[str, list[Path]]:
    """The images of each class folder of `root` (`root/<class>/<image>`); a class folder without images
    is refused: training without it would silently drop a class."""
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d != skip)
    by_class: dict[str, list[Path]] = {d.name: [] for d in folders}
    for f in _files(root, max_per_class):
        if f.parent.parent == root and f.parent.name in by_class:
            by_class[f.parent.name].append(f)
    if empty := [name for name, files in by_class.items() if not files]:
        raise TrainingInputError(MSG_EMPTY_CLASS.format(what=what, path=root, empty=", ".join(empty)))
    return by_class


def _train_and_test(recipe: VisionRecipe) -> tuple[list[Path], list[Path], str | None]:
    existing_folder(recipe.folder, what="--data")
    train_root = recipe.folder / "train" if (recipe.folder / "train").is_dir() else recipe.folder
    test_root = recipe.test_folder or (recipe.folder / "test" if (recipe.folder / "test").is_dir() else None)
    if recipe.test_folder is not None:
        existing_folder(recipe.test_folder, what="--test")
    by_class = _class_files(train_root, what="--data", max_per_class=recipe.max_per_class, skip=test_root)
    if not by_class:
        raise TrainingInputError(MSG_NO_CLASS_FOLDERS.format(what="--data", path=train_root))
    if len(by_class) == 1:
        raise TrainingInputError(
            MSG_ONE_CLASS.format(what="--data", path=train_root, name=next(iter(by_class)))
        )
    files = sorted(f for class_files in by_class.values() for f in class_files)
    if test_root is not None:
        what = "--test" if recipe.test_folder is not None else "--data"
        test_classes = _class_files(test_root, what=what, max_per_class=recipe.max_per_class)
        if unknown := sorted(set(test_classes) - set(by_class)):
            raise TrainingInputError(
                MSG_UNKNOWN_TEST_CLASSES.format(what=what, path=test_root, unknown=", ".join(unknown))
            )
        if not test_classes:
            raise TrainingInputError(MSG_NO_CLASS_FOLDERS.format(what=what, path=test_root))
        test_files = sorted(f for class_files in test_classes.values() for f in class_files)
        return files, test_files, str(test_root.name)
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
        LabelSmoothingCrossEntropyFlat,
        Normalize,
        Resize,
        aug_transforms,
        vision_learner,
    )

    arch = resolve_arch(recipe.arch)
    metrics = [accuracy, Precision(average="macro"), Recall(average="macro")]
    recipe = replace(recipe, fit=recipe.fit.resolved("accuracy"))  # a classifier: accuracy by default
    check_monitor(recipe.fit.watched, metrics)
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
    dls = seeded_loaders(block, recipe.folder, bs=recipe.bs, seed=recipe.seed, items="images")
    learn = vision_learner(
        dls,
        arch,
        pretrained=pretrained,
        normalize=False,
        ps=recipe.ps,
        metrics=metrics,
        loss_func=LabelSmoothingCrossEntropyFlat(eps=recipe.label_smoothing)
        if recipe.label_smoothing
        else None,
    )
    if recipe.small_input_stem and recipe.size <= 64:
        adapt_stem_for_small_images(learn.model)
    check_arch_fits(learn.model, arch=recipe.arch, size=recipe.size)
    if not pretrained:
        learn.unfreeze()
    seconds, outcome = fit(
        learn, epochs=recipe.epochs, lr=recipe.lr, options=recipe.fit, fine_tune=pretrained
    )
    return publish(
        learn,
        predictor_type=VisionPredictor,
        out_dir=recipe.out_dir,
        outcome=outcome,
        seconds=seconds,
        seed=recipe.seed,
        score_test=lambda predictor: (
            score_images(predictor, test_files, source=test_source)
            if test_files and test_source is not None
            else None
        ),
        description=recipe.description or f"vision_learner({recipe.arch}) on {recipe.folder.name}",
        augmented=recipe.augment,
        datablock_summary="".join(summary),
        recipe=recipe_dict(recipe, pretrained_used=pretrained),
        manifest_extra={"pretrained": pretrained},
        reference=lambda predictor: image_reference(predictor, train_files),
    )
