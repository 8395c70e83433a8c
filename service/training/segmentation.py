"""Segmentation recipe: `unet_learner` (`MaskBlock` codes) on a folder of images and masks; the demo trains on
shapes generated from the seed (`shapes.py`), with a small encoder so it trains in seconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from service.errors import MSG_NO_MASKS, MSG_UNKNOWN_SEG_ARCH, TrainingInputError
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.inference.vision import VisionPredictor
from service.loading import load_exported_learner, prepare_for_serving
from service.training import shapes
from service.training.common import (
    FitOptions,
    TrainResult,
    captured_stdout,
    check_monitor,
    export_learner,
    fit,
    image_reference,
    recipe_dict,
    seeded_loaders,
    write_manifest,
    write_reference,
)
from service.training.data import CACHE_DIR, existing_folder
from service.training.reporting import write_scored_report

SAMPLES = 6  # test images in the overlays figure
# One colour per class (a class past the list takes matplotlib's tab20 colours).
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180)]
SMALL_WIDTHS = (8, 16, 32, 64)


def small_encoder(pretrained: bool = False) -> nn.Sequential:
    """A four-stage convolutional encoder (8 to 64 channels, each stage halves the size), ended by a pooling
    layer that `unet_learner` cuts off; no weights to download. Enough for shapes at 48 px, and fast on a
    CPU: the decoder `unet_learner` builds follows the encoder's widths, and at full size it costs the most
    (16 to 128 channels trained no better in the same time: fewer steps, docs/recipes.md)."""
    from fastai.layers import ConvLayer

    stages: list[nn.Module] = []
    n_in = 3
    for width in SMALL_WIDTHS:
        stages.append(nn.Sequential(ConvLayer(n_in, width, stride=2), ConvLayer(width, width)))
        n_in = width
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1))


def architectures() -> dict[str, tuple[Callable[..., nn.Module], int | None]]:
    """`--arch` choices: the small encoder, or a torchvision resnet body (no weights: offline)."""
    from torchvision.models import resnet18, resnet34

    return {"small": (small_encoder, -1), "resnet18": (resnet18, None), "resnet34": (resnet34, None)}


@dataclass
class SegmentationRecipe:
    out_dir: Path
    folder: Path | None = None  # `images/<name>` and `masks/<name>`; None: generated shapes
    codes: list[str] = field(default_factory=lambda: list(shapes.CODES))
    n_images: int = 1200  # generated shapes only
    size: int = 48
    arch: str = "small"
    epochs: int = 16
    lr: float = 1e-2
    bs: int = 8
    # unet_learner's last_cross: a ResBlock over the input and the decoder's output at full size; off, a
    # step costs half and the small demo trains better in the same seconds (docs/recipes.md).
    last_cross: bool = False
    seed: int = 42
    valid_pct: float = 0.1
    test_pct: float = 0.1
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)


@dataclass
class MaskScores:
    """Predicted and true masks of the test images, at the model's size."""

    predicted: np.ndarray  # (n, h, w) class indices
    actual: np.ndarray
    codes: list[str]

    def evaluation(self) -> dict[str, Any]:
        """API.md's segmentation `Evaluation`: `{"n", "pixel_accuracy", "iou", "dice"}` (per code and mean;
        a class absent from both masks has no IoU and is left out of the mean)."""
        iou: dict[str, float] = {}
        dice: dict[str, float] = {}
        for c, code in enumerate(self.codes):
            pred, true = self.predicted == c, self.actual == c
            inter, union = int((pred & true).sum()), int((pred | true).sum())
            if union:
                iou[code] = inter / union
                dice[code] = 2 * inter / (int(pred.sum()) + int(true.sum()))
        iou["mean"] = float(np.mean(list(iou.values()))) if iou else float("nan")
        dice["mean"] = float(np.mean([v for k, v in dice.items()])) if dice else float("nan")
        return {
            "n": int(len(self.actual)),
            "pixel_accuracy": float((self.predicted == self.actual).mean()) if self.actual.size else 0.0,
            "iou": iou,
            "dice": dice,
        }


def _files(recipe: SegmentationRecipe) -> tuple[Path, list[Path]]:
    if recipe.folder is None:
        name = f"shapes-v{shapes.GENERATOR_VERSION}-{recipe.seed}-{recipe.n_images}-{recipe.size}"
        folder = CACHE_DIR / name
        shapes.write_shapes(folder, n=recipe.n_images, size=recipe.size, seed=recipe.seed)
    else:
        folder = existing_folder(recipe.folder, what="--data")
    images = folder / shapes.IMAGES
    files = sorted(p for p in images.glob("*") if p.is_file()) if images.is_dir() else []
    with_masks = [f for f in files if shapes.mask_of(f).is_file()]
    if not with_masks:
        raise TrainingInputError(MSG_NO_MASKS.format(path=folder))
    return folder, with_masks


def split_test(files: list[Path], *, pct: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Held out before fastai sees the data; the same files for the same seed."""
    order = np.random.default_rng(seed).permutation(len(files))
    cut = int(round(len(files) * pct))
    test = sorted(files[i] for i in order[:cut])
    held = set(test)
    return [f for f in files if f not in held], test


def score_masks(learn: Any, files: list[Path], codes: list[str]) -> MaskScores:
    """The learner's masks for `files` (its own pipeline, masks resized as in training)."""
    dl = learn.dls.test_dl(files, with_labels=True, num_workers=0)
    with learn.no_bar(), learn.no_logging():
        preds, targets = learn.get_preds(dl=dl)
    return MaskScores(predicted=preds.argmax(dim=1).numpy(), actual=np.asarray(targets), codes=codes)


def _colour(mask: np.ndarray, n: int) -> np.ndarray:
    from matplotlib import colormaps

    extra = [tuple(int(255 * v) for v in colormaps["tab20"](i)[:3]) for i in range(max(0, n - len(PALETTE)))]
    colours = np.array(PALETTE[:n] + extra, dtype=np.uint8)
    return np.asarray(colours[np.clip(mask, 0, n - 1)])


def plot_per_class_iou(scores: MaskScores, path: Path) -> None:
    evaluation = scores.evaluation()
    names = list(evaluation["iou"])
    fig = Figure(figsize=(max(5.0, 0.9 * len(names) + 2), 4))
    ax = fig.subplots()
    values = [evaluation["iou"][n] for n in names]
    bars = ax.bar(names, values, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.3f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("IoU")
    ax.set_title(
        f"IoU per class (n={evaluation['n']} test images, pixel accuracy {evaluation['pixel_accuracy']:.3f})"
    )
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def plot_sample_overlays(scores: MaskScores, files: list[Path], path: Path, *, size: int) -> None:
    """A few test images: the image, its true mask and the predicted mask, coloured by class."""
    from PIL import Image

    n = min(SAMPLES, len(files))
    fig = Figure(figsize=(7.5, 2.5 * max(n, 1)))
    axes = np.atleast_2d(fig.subplots(max(n, 1), 3))
    for row, ax_row in enumerate(axes[:n]):
        with Image.open(files[row]) as img:
            shown = np.asarray(img.convert("RGB").resize(scores.actual[row].shape[::-1]))
        panels = (
            (shown, "image"),
            (_colour(scores.actual[row], len(scores.codes)), "true mask"),
            (_colour(scores.predicted[row], len(scores.codes)), "predicted mask"),
        )
        for ax, (picture, title) in zip(ax_row, panels, strict=True):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title if row == 0 else "", fontsize=9)
            ax.axis("off")
    legend = ", ".join(f"{code}: rgb{PALETTE[i]}" for i, code in enumerate(scores.codes[: len(PALETTE)]))
    fig.suptitle(f"test images ({size} px); {legend}", fontsize=8)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def train_segmentation(recipe: SegmentationRecipe) -> TrainResult:
    from fastai.data.block import DataBlock
    from fastai.data.transforms import RandomSplitter
    from fastai.metrics import DiceMulti, foreground_acc
    from fastai.vision.all import ImageBlock, MaskBlock, Normalize, Resize, imagenet_stats, unet_learner

    choices = architectures()
    if recipe.arch not in choices:
        raise TrainingInputError(MSG_UNKNOWN_SEG_ARCH.format(arch=recipe.arch, choices=", ".join(choices)))
    arch, cut = choices[recipe.arch]
    metrics = [foreground_acc, DiceMulti()]
    recipe = replace(recipe, fit=recipe.fit.resolved("dice_multi"))
    check_monitor(recipe.fit.watched, metrics)
    folder, files = _files(recipe)
    train_files, test_files = split_test(files, pct=recipe.test_pct, seed=recipe.seed)
    block = DataBlock(
        blocks=(ImageBlock, MaskBlock(codes=list(recipe.codes))),
        get_items=lambda _: train_files,
        get_y=shapes.mask_of,
        splitter=RandomSplitter(valid_pct=recipe.valid_pct, seed=recipe.seed),
        item_tfms=[Resize(recipe.size)],
        batch_tfms=[Normalize.from_stats(*imagenet_stats)],
    )
    with captured_stdout() as summary:
        block.summary(folder, bs=min(recipe.bs, 4))
    dls = seeded_loaders(block, folder, bs=recipe.bs, seed=recipe.seed, items="images")
    learn = unet_learner(
        dls,
        arch,
        pretrained=False,
        normalize=False,
        n_out=len(recipe.codes),
        cut=cut,
        metrics=metrics,
        last_cross=recipe.last_cross,
    )
    seconds, outcome = fit(learn, epochs=recipe.epochs, lr=recipe.lr, options=recipe.fit)
    out_dir = recipe.out_dir
    path = export_learner(learn, out_dir)
    write_reference(out_dir, path, VisionPredictor, lambda p: image_reference(p, train_files))
    served = prepare_for_serving(load_exported_learner(path).learn, torch.device("cpu"))
    scores = score_masks(served, test_files, list(recipe.codes))
    evaluation = scores.evaluation()
    metrics_out = {
        "test_mean_iou": round(evaluation["iou"]["mean"], 4),
        "test_pixel_accuracy": round(evaluation["pixel_accuracy"], 4),
        "test_mean_dice": round(evaluation["dice"]["mean"], 4),
        "test_items": float(evaluation["n"]),
    }
    data = "generated shapes" if recipe.folder is None else recipe.folder.name
    write_manifest(
        out_dir,
        kind=ModelKind.VISION,
        description=recipe.description or f"unet_learner({recipe.arch}) on {data}, {recipe.size} px",
        metrics=metrics_out,
        extra={
            "task": Task.SEGMENTATION.value,
            "classes": list(recipe.codes),
            "targets": [],
            "train_seconds": round(seconds, 2),
            "seed": recipe.seed,
            "pretrained": False,
        },
    )
    source = f"{len(test_files)} images held out of {data} (seed {recipe.seed})"
    report_dir = write_scored_report(
        out_dir,
        learn=learn,
        outcome=outcome,
        task=Task.SEGMENTATION,
        seed=recipe.seed,
        train_seconds=seconds,
        test=evaluation,
        test_source=source,
        plots={
            "per_class_iou": lambda p: plot_per_class_iou(scores, p),
            "sample_overlays": lambda p: plot_sample_overlays(scores, test_files, p, size=recipe.size),
        },
        recipe=recipe_dict(recipe, data=data),
        datablock_summary="".join(summary),
    )
    return TrainResult(
        name=out_dir.name,
        kind=ModelKind.VISION,
        learner_path=path,
        metrics=metrics_out,
        train_seconds=seconds,
        report_dir=report_dir,
        learn=learn,
    )
