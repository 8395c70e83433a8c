"""Response bodies of the report and evaluation endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ConfusionMatrix(BaseModel):
    labels: list[str] = Field(description="Row = actual class, column = predicted class, in this order.")
    matrix: list[list[int]]


class Evaluation(BaseModel):
    """Metrics of a model on labelled data, computed from the same predictions the predict endpoints give."""

    n: int
    accuracy: float
    precision: dict[str, float] = Field(
        description="Per class present in the data or predictions, and `macro`."
    )
    recall: dict[str, float]
    f1: dict[str, float]
    confusion_matrix: ConfusionMatrix
    most_confused: list[tuple[str, str, int]] = Field(description="[actual, predicted, count], most first.")


class MultiLabelEvaluation(BaseModel):
    """multi_label: element-wise accuracy (fastai's `accuracy_multi`) and precision/recall/F1 per class,
    micro and macro, at `threshold`."""

    n: int
    threshold: float
    accuracy_multi: float
    precision: dict[str, float] = Field(description="Per class, `micro` and `macro`.")
    recall: dict[str, float]
    f1: dict[str, float]


class TargetScores(BaseModel):
    rmse: float
    mae: float
    r2: float | None = Field(description="null when the target does not vary in the data")


class RegressionEvaluation(BaseModel):
    """regression: RMSE, MAE and R² per target, in the target's units."""

    n: int
    targets: dict[str, TargetScores]


class PointsEvaluation(BaseModel):
    """points: the mean distance, in the uploaded images' pixels, between predicted and actual points."""

    n: int
    mean_pixel_error: float


class RatingEvaluation(BaseModel):
    """rating: RMSE and MAE of the predicted ratings over the pairs the learner knows; pairs with a user or
    item it does not know are counted apart (`unknown`), never scored."""

    n: int = Field(description="pairs scored")
    rmse: float | None = Field(description="null when no pair could be scored")
    mae: float | None
    unknown: int = Field(description="pairs left out: their user or item is not one the learner knows")


class SegmentationEvaluation(BaseModel):
    """segmentation: over every pixel of every image (each in its own size), the share classed right, and
    per class IoU and Dice; a class in neither the masks nor the predictions is left out, as fastai's
    `DiceMulti` does, and `mean` averages the classes present."""

    n: int
    pixel_accuracy: float
    iou: dict[str, float] = Field(description="Per class present, and `mean`.")
    dice: dict[str, float] = Field(description="Per class present, and `mean`.")


AnyEvaluation = (
    Evaluation
    | MultiLabelEvaluation
    | RegressionEvaluation
    | PointsEvaluation
    | RatingEvaluation
    | SegmentationEvaluation
)


def _artifact(description: str | None = None) -> Any:
    # Left out when absent: a report's map names only the plots it has.
    return Field(default=None, description=description, exclude_if=lambda url: url is None)


class ReportArtifacts(BaseModel):
    """URLs of the report's plots; which ones a report has depends on its task."""

    loss_curve: str | None = _artifact()
    confusion_matrix: str | None = _artifact("classification")
    top_losses: str | None = _artifact()
    per_class_scores: str | None = _artifact("multi_label: precision, recall and F1 per class, micro, macro")
    f1_vs_threshold: str | None = _artifact("multi_label: micro and macro F1 by threshold")
    predicted_vs_actual: str | None = _artifact("regression: a scatter per target")
    residuals: str | None = _artifact("regression: predicted - actual, per target")


class TrainingReport(BaseModel):
    """What `fastai-serve train` recorded about a model: history, callbacks, data and test metrics."""

    task: str | None = Field(default=None, description="the model's task; null in reports made before tasks")
    history: list[dict[str, float | int | None]]
    best_epoch: int | None
    monitor: str | None = None
    stopped_early: bool
    stopped_at_epoch: int | None = None
    epochs_planned: int | None = None
    seed: int | None
    augmented: bool | None
    train_seconds: float | None
    test: AnyEvaluation | None
    test_source: str | None = None
    datablock_summary: str | None
    top_losses_rows: list[dict[str, Any]] | None = Field(
        default=None, description="Tabular models: the test rows with the highest loss."
    )
    recipe: dict[str, Any] = Field(default_factory=dict)
    artifacts: ReportArtifacts


class ModelComparison(BaseModel):
    models: list[str]
    test: list[AnyEvaluation | None]
