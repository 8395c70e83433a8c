"""What a learner gives back (`Task`), and how its model's outputs become predictions the learner's way.

A model's forward runs the learner's model and its loss's `activation` (softmax, sigmoid, or nothing):
`runtime.ModelRuntime.outputs`, an (n, width) float32 matrix per batch (a segmentation model's: (n, classes,
height, width), softmax over axis 1). A `Head` turns those rows into `Prediction`s of its task, exactly as
the loss's `decodes` would (argmax, `> thresh`, identity), and knows the names of its columns: the classes
of a classifier or a segmentation model (its codes), the targets of a regression, the points of a points
model. Heads know nothing about any wire format; each front door (v1 JSON, CSV, V2 tensors,
evaluation) has its own codec per `Task`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

import numpy as np


class Task(StrEnum):
    """What a learner gives back: decides its prediction item, CSV columns, V2 outputs and scores."""

    CLASSIFICATION = "classification"
    MULTI_LABEL = "multi_label"
    REGRESSION = "regression"
    POINTS = "points"
    SEGMENTATION = "segmentation"
    RATING = "rating"


# fastai's default threshold of `BCEWithLogitsLossFlat` (its `thresh`).
DEFAULT_THRESHOLD = 0.5
# Per image, the part of it (left, top, width, height, in its pixels) that became the model's input.
Boxes = Sequence[tuple[float, float, float, float]]


# -- predictions, one kind per task ---------------------------------------------------------------------
@dataclass(slots=True)
class Prediction:
    """A classifier's outcome: the winning label and a probability per class (they sum to 1)."""

    label: str
    probabilities: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    task: ClassVar[Task] = Task.CLASSIFICATION

    def top_k(self, k: int) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:k]


@dataclass(slots=True)
class MultiLabelPrediction:
    """Independent probabilities per class, and the classes over the threshold."""

    labels: list[str]
    probabilities: dict[str, float]
    threshold: float
    warnings: list[str] = field(default_factory=list)
    task: ClassVar[Task] = Task.MULTI_LABEL


@dataclass(slots=True)
class RegressionPrediction:
    """One value per target, in the target's own units."""

    values: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    task: ClassVar[Task] = Task.REGRESSION


@dataclass(slots=True)
class PointsPrediction:
    """Points as [x, y] in pixels of the uploaded image."""

    points: list[list[float]]
    warnings: list[str] = field(default_factory=list)
    task: ClassVar[Task] = Task.POINTS


@dataclass(slots=True)
class RatingPrediction:
    """A (user, item) pair's predicted rating; None when the learner does not know the user or the item
    (their warnings say which). `user`, `item` and `title` echo the pair for the front doors."""

    rating: float | None
    warnings: list[str] = field(default_factory=list)
    user: str | int | None = None
    item: str | int | None = None
    title: str | None = None  # the item's title, from the model folder's items.csv
    task: ClassVar[Task] = Task.RATING


@dataclass(slots=True)
class SegmentationPrediction:
    """A class per pixel of the uploaded image: `mask` (height, width) uint8 indices into `classes`
    (fastai's codes), and each class's share of the image's pixels."""

    classes: list[str]
    size: list[int]  # [height, width] of the uploaded image, the mask's own
    class_fractions: dict[str, float]
    mask: np.ndarray
    warnings: list[str] = field(default_factory=list)
    task: ClassVar[Task] = Task.SEGMENTATION


AnyPrediction = (
    Prediction
    | MultiLabelPrediction
    | RegressionPrediction
    | PointsPrediction
    | RatingPrediction
    | SegmentationPrediction
)


# -- heads: outputs -> predictions ------------------------------------------------------------------------
@dataclass(frozen=True)
class Decoding:
    """What one request adds to decoding: its own threshold (multi_label), its images' boxes (points)."""

    threshold: float | None = None
    boxes: Boxes | None = None
    sizes: Sequence[tuple[int, int]] | None = None  # per image, its (width, height) (segmentation)


PLAIN = Decoding()


class Head(Protocol):
    """How one task's outputs are read: their names and the learner's decoding."""

    task: ClassVar[Task]

    @property
    def classes(self) -> list[str]:
        """Class names (classification, multi_label); empty for the other tasks."""
        ...

    @property
    def targets(self) -> list[str]:
        """Target names (regression, points); empty for classifiers."""
        ...

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> Sequence[AnyPrediction]:
        """One prediction per row of `outputs`, the learner's way."""
        ...

    def check(self, outputs: np.ndarray) -> None:
        """Raise when `outputs` cannot be this head's (the self-check at load)."""
        ...


def _notes(warnings: Sequence[list[str]] | None, n: int) -> Sequence[list[str]]:
    return warnings if warnings else [[] for _ in range(n)]


@dataclass(frozen=True)
class ClassificationHead:
    """Softmax probabilities; the label is their argmax (`CrossEntropyLossFlat.decodes`)."""

    classes: list[str]
    targets: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.CLASSIFICATION

    def labels(self, outputs: np.ndarray) -> list[str]:
        classes = self.classes
        return [classes[i] for i in outputs.argmax(axis=1).tolist()]

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[Prediction]:
        rows, classes = outputs.tolist(), self.classes
        return [
            Prediction(label, dict(zip(classes, row, strict=True)), note)
            for label, row, note in zip(self.labels(outputs), rows, _notes(warnings, len(rows)), strict=True)
        ]

    def check(self, outputs: np.ndarray) -> None:
        _check_width(outputs, len(self.classes))
        if not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("the learner's outputs are not probabilities that sum to 1")


@dataclass(frozen=True)
class MultiLabelHead:
    """Sigmoid probabilities, one per class; a class is predicted above the loss's `thresh`
    (`BCEWithLogitsLossFlat.decodes`), or above the request's own threshold."""

    classes: list[str]
    threshold: float = DEFAULT_THRESHOLD
    targets: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.MULTI_LABEL

    def predicted(self, outputs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(n, classes) booleans: fastai's `x > thresh`."""
        return np.asarray(outputs > (self.threshold if threshold is None else threshold))

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[MultiLabelPrediction]:
        used = self.threshold if how.threshold is None else how.threshold
        classes, rows = self.classes, outputs.tolist()
        chosen = self.predicted(outputs, used).tolist()
        return [
            MultiLabelPrediction(
                labels=[c for c, on in zip(classes, flags, strict=True) if on],
                probabilities=dict(zip(classes, row, strict=True)),
                threshold=used,
                warnings=note,
            )
            for row, flags, note in zip(rows, chosen, _notes(warnings, len(rows)), strict=True)
        ]

    def check(self, outputs: np.ndarray) -> None:
        _check_width(outputs, len(self.classes))
        if ((outputs < 0) | (outputs > 1)).any():
            raise ValueError("the learner's outputs are not probabilities in [0, 1]")


@dataclass(frozen=True)
class RegressionHead:
    """Values as the model gives them (`MSELossFlat` has no activation and decodes nothing)."""

    targets: list[str]
    classes: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.REGRESSION

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[RegressionPrediction]:
        targets, rows = self.targets, outputs.tolist()
        return [
            RegressionPrediction(dict(zip(targets, row, strict=True)), note)
            for row, note in zip(rows, _notes(warnings, len(rows)), strict=True)
        ]

    def check(self, outputs: np.ndarray) -> None:
        _check_width(outputs, len(self.targets))


@dataclass(frozen=True)
class PointsHead:
    """K points, the model's 2K outputs in [-1, 1] of the resized image (fastai's `PointScaler`)."""

    n_points: int
    classes: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.POINTS

    @property
    def targets(self) -> list[str]:
        return [f"point_{i}" for i in range(self.n_points)]

    def pixels(self, outputs: np.ndarray, boxes: Boxes) -> np.ndarray:
        """(n, points, 2) [x, y] in each image's pixels (`PointScaler.decodes` of the box, then the box's
        place in the image)."""
        scaled = outputs.reshape(len(outputs), self.n_points, 2).astype(np.float64)
        box = np.asarray(boxes, dtype=np.float64).reshape(len(outputs), 1, 4)
        return np.asarray(box[..., :2] + (scaled + 1.0) / 2.0 * box[..., 2:])

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[PointsPrediction]:
        """Each image's points in its own pixels: `how.boxes[i]` = (left, top, width, height), the part of
        image i (in its pixels) that the learner's resize turned into the model's input."""
        if how.boxes is None:
            raise ValueError("points are decoded with their images' boxes")
        return [
            PointsPrediction(points.tolist(), note)
            for points, note in zip(
                self.pixels(outputs, how.boxes), _notes(warnings, len(outputs)), strict=True
            )
        ]

    def check(self, outputs: np.ndarray) -> None:
        _check_width(outputs, 2 * self.n_points)


@dataclass(frozen=True)
class RatingHead:
    """A rating per (user, item) pair as the model gives it: a collab model's `y_range` sigmoid is inside
    the model and `MSELossFlat` decodes nothing. A NaN row is a pair the learner cannot rate (an unknown
    user or item, found before the model ever saw it): its prediction is None."""

    target: str = "rating"
    rating_range: tuple[float, float] | None = None
    classes: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.RATING

    @property
    def targets(self) -> list[str]:
        return [self.target]

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[RatingPrediction]:
        rows = outputs[:, 0].astype(np.float64).tolist()
        return [
            RatingPrediction(None if value != value else value, note)
            for value, note in zip(rows, _notes(warnings, len(rows)), strict=True)
        ]

    def check(self, outputs: np.ndarray) -> None:
        _check_width(outputs, 1)
        if self.rating_range is not None:
            low, high = self.rating_range
            if ((outputs < low - 1e-3) | (outputs > high + 1e-3)).any():
                raise ValueError(f"the learner's ratings are outside its y_range {list(self.rating_range)}")


@dataclass(frozen=True)
class SegmentationHead:
    """Per pixel, softmax probabilities over the classes on axis 1 of the model's (n, classes, H, W)
    outputs; the mask is their argmax (`CrossEntropyLossFlat(axis=1).decodes`), taken back to each uploaded
    image's pixels through the learner's resize box, nearest neighbour."""

    classes: list[str]
    targets: list[str] = field(default_factory=list, init=False)
    task: ClassVar[Task] = Task.SEGMENTATION

    def masks(self, outputs: np.ndarray) -> np.ndarray:
        """(n, H, W) uint8 class indices on the model's input (fastai's decoded masks)."""
        return np.asarray(outputs.argmax(axis=1).astype(np.uint8))

    def decode(
        self, outputs: np.ndarray, warnings: Sequence[list[str]] | None = None, how: Decoding = PLAIN
    ) -> list[SegmentationPrediction]:
        """Each image's mask in its own pixels: `how.boxes[i]` is the part of image i that became the model's
        input, `how.sizes[i]` its (width, height)."""
        from service.errors import MSG_MASK_CROPPED
        from service.inference.masks import crops, to_image_pixels

        if how.boxes is None or how.sizes is None:
            raise ValueError("masks are decoded with their images' boxes and sizes")
        classes, count = self.classes, len(self.classes)
        predictions = []
        for small, box, size, note in zip(
            self.masks(outputs), how.boxes, how.sizes, _notes(warnings, len(outputs)), strict=True
        ):
            mask = to_image_pixels(small, box, size)
            shares = np.bincount(mask.ravel(), minlength=count)[:count] / max(mask.size, 1)
            if crops(box, size):  # the model never saw those pixels: say so rather than pass them off
                seen_w, seen_h = int(box[2]), int(box[3])
                note = [
                    *note,
                    MSG_MASK_CROPPED.format(seen_w=seen_w, seen_h=seen_h, width=size[0], height=size[1]),
                ]
            predictions.append(
                SegmentationPrediction(
                    classes=list(classes),
                    size=[int(size[1]), int(size[0])],
                    class_fractions=dict(zip(classes, shares.tolist(), strict=True)),
                    mask=mask,
                    warnings=note,
                )
            )
        return predictions

    def check(self, outputs: np.ndarray) -> None:
        count = len(self.classes)
        if outputs.ndim != 4 or outputs.shape[1] != count:
            shape = tuple(outputs.shape)
            raise ValueError(f"the learner's outputs have shape {shape}, expected (n, {count}, H, W)")
        if not np.isfinite(outputs).all():
            raise ValueError("the learner's outputs are not finite")
        if not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("the learner's per-pixel outputs are not probabilities that sum to 1")


def _check_width(outputs: np.ndarray, width: int) -> None:
    if outputs.ndim != 2 or outputs.shape[1] != width:
        raise ValueError(f"the learner's outputs have shape {tuple(outputs.shape)}, expected (n, {width})")
    if not np.isfinite(outputs).all():
        raise ValueError("the learner's outputs are not finite")


def unnamed_targets(count: int) -> list[str]:
    """Names for targets a learner does not name (an image regression): target_0, target_1, …"""
    return [f"target_{i}" for i in range(count)]


AnyHead = ClassificationHead | MultiLabelHead | RegressionHead | PointsHead | RatingHead | SegmentationHead
# Tasks decoded with their images' resize boxes (and sizes): their outputs live in the model's input.
BOXED_TASKS = frozenset({Task.POINTS, Task.SEGMENTATION})


class HeadFacts:
    """What a predictor's `head` says about it, for the front doors and the runtime's parity check."""

    head: AnyHead

    @property
    def classes(self) -> list[str]:
        return self.head.classes

    @property
    def classifies(self) -> bool:
        """Whether its outputs are one label's probabilities (single-label classification)."""
        return self.head.task is Task.CLASSIFICATION
