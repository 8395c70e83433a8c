"""The one table of learner kinds and tasks: how each is recognised from the learner, and what serves it.

`kind` is what goes in (tabular rows, images, texts, user/item pairs), `task` what comes out. Recognition
reads fastai's own objects, never names a user chose: the model's class (`TabularModel`, the collab and text
models), the input pipeline (images: `ToTensor` and `IntToFloatTensor`), and the target's transforms
(`Categorize`, `MultiCategorize`/`EncodedMultiCategorize`, `RegressionSetup`, `PointScaler` with
`TensorPoint.create`, `AddMaskCodes`). Exactly one entry matches a servable learner; anything else is refused
with what was found and what is served — never served as another kind.

Each front door keeps its own codec per `Task` (v1 items in `api/outputs.py`, CSV columns in
`inference/csvio.py`, V2 tensors in `api/v2/kinds.py`, scores in `reports/scores.py`, the page's views in
`frontend/js/tasks.js`); `tests/unit/test_task_table.py` fails when a served task lacks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import (
    MSG_NOT_SERVED_YET,
    MSG_SEGMENTATION_CODES,
    MSG_SEGMENTATION_TOO_MANY,
    MSG_UNSUPPORTED_LEARNER,
    LoadError,
)
from service.inference.images import DEFAULT_MAX_PIXELS
from service.inference.predictor import AnyPredictor, ModelKind
from service.inference.tasks import (
    DEFAULT_THRESHOLD,
    ClassificationHead,
    MultiLabelHead,
    PointsHead,
    RegressionHead,
    SegmentationHead,
    Task,
    unnamed_targets,
)


@dataclass(frozen=True)
class LearnerFacts:
    """What a learner is, read once from fastai's objects: the facts every entry's test looks at."""

    kind: ModelKind | None  # from the model class and the input pipeline; None when neither fits
    target_tfms: frozenset[type]  # the exact classes of the target's transforms (procs, for tabular)
    target_makers: frozenset[str]  # the functions that create the target (e.g. "TensorPoint.create")
    item_tfms: frozenset[type]  # the classes of the item transforms
    n_targets: int
    loss: Any
    found: str  # what it is, in words, for the refusal

    def has(self, *tfms: type) -> bool:
        return any(t in self.target_tfms for t in tfms)


@dataclass(frozen=True)
class BuildOptions:
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    folder: Path | None = None  # the model's folder in the store, for files served beside the learner


@dataclass(frozen=True)
class LearnerType:
    """One row of the table: a kind and a task, its fastai source, its test, and what serves it."""

    kind: ModelKind
    task: Task
    source: str  # the fastai application that makes it
    matches: Callable[[LearnerFacts], bool]
    # None: recognised (so never served as something else) but not served by this version.
    build: Callable[[Any, BuildOptions], AnyPredictor] | None

    @property
    def served(self) -> bool:
        return self.build is not None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.task.value}"


# -- recognition ------------------------------------------------------------------------------------------
def _names(objects: Any) -> list[str]:
    return [type(o).__name__ for o in objects]


def _name_of(tfm: Any) -> str:
    """A transform's class, or for a plain `Transform` around a function, the function's name."""
    name = type(tfm).__name__
    return str(getattr(tfm, "name", name)) if name == "Transform" else name


def read_facts(learn: Any) -> LearnerFacts:
    """The facts of `learn`, from fastai's own objects."""
    from fastai.collab import EmbeddingDotBias, EmbeddingNN
    from fastai.tabular.model import TabularModel
    from fastai.text.models.core import PoolingLinearClassifier, SequentialRNN
    from fastai.vision.core import ToTensor

    model, dls, loss = learn.model, learn.dls, getattr(learn, "loss_func", None)
    item_fs = list(getattr(getattr(dls, "after_item", None), "fs", []) or [])
    batch_fs = list(getattr(getattr(dls, "after_batch", None), "fs", []) or [])
    kind: ModelKind | None = None
    target_fs: list[Any] = []
    n_targets = 0
    if isinstance(model, EmbeddingDotBias | EmbeddingNN):  # EmbeddingNN is a TabularModel: check first
        kind = ModelKind.COLLAB
    elif isinstance(model, TabularModel) and hasattr(dls, "procs"):
        kind = ModelKind.TABULAR
    elif isinstance(model, SequentialRNN) and isinstance(model[-1], PoolingLinearClassifier):
        kind = ModelKind.TEXT
    if kind in (ModelKind.COLLAB, ModelKind.TABULAR):
        target_fs = list(dls.procs)
        n_targets = len(getattr(dls, "y_names", []) or [])
    else:
        tls = list(getattr(getattr(dls, "train_ds", None), "tls", []) or [])
        n_inp = int(getattr(dls, "n_inp", 1) or 1)
        targets = tls[n_inp:]
        n_targets = len(targets)
        target_fs = [t for tl in targets for t in tl.tfms.fs]
        image_input = any(isinstance(t, ToTensor) for t in item_fs) and "IntToFloatTensor" in _names(batch_fs)
        if kind is None and image_input and n_inp == 1 and len(tls) > n_inp:
            kind = ModelKind.VISION
    found = (
        f"model {type(model).__name__}, loss {type(loss).__name__}, "
        f"DataLoaders {type(dls).__name__}, item transforms {_names(item_fs) or 'none'}, "
        f"target transforms {[_name_of(t) for t in target_fs] or 'none'}"
    )
    return LearnerFacts(
        kind=kind,
        target_tfms=frozenset(type(t) for t in target_fs),
        target_makers=frozenset(str(getattr(t, "name", "")) for t in target_fs),
        item_tfms=frozenset(type(t) for t in item_fs),
        n_targets=n_targets,
        loss=loss,
        found=found,
    )


def _tfm(name: str) -> type:
    """A fastai transform class by its place in fastai (imported on first use, so importing this module
    stays light)."""
    import fastai.data.transforms as data_tfms
    import fastai.vision.core as vision_core

    for module in (data_tfms, vision_core):
        if hasattr(module, name):
            cls: type = getattr(module, name)
            return cls
    raise LookupError(name)


def _single(facts: LearnerFacts, kind: ModelKind) -> bool:
    return facts.kind is kind and (facts.n_targets == 1 or kind is ModelKind.TABULAR)


def _classifies(facts: LearnerFacts) -> bool:
    return facts.has(_tfm("Categorize"))


def _multi_labels(facts: LearnerFacts) -> bool:
    return facts.has(_tfm("MultiCategorize"), _tfm("EncodedMultiCategorize"))


def _regresses(facts: LearnerFacts) -> bool:
    return facts.has(_tfm("RegressionSetup"))


def _locates_points(facts: LearnerFacts) -> bool:
    return _tfm("PointScaler") in facts.item_tfms and "TensorPoint.create" in facts.target_makers


def _segments(facts: LearnerFacts) -> bool:
    return _tfm("AddMaskCodes") in facts.item_tfms


# -- building ---------------------------------------------------------------------------------------------
def _classes(learn: Any) -> list[str]:
    return [str(c) for c in learn.dls.vocab]


def _text_classes(learn: Any) -> list[str]:
    """A text classifier's classes: its `dls.vocab` is [tokens, classes]."""
    return [str(c) for c in learn.dls.vocab[-1]]


def _threshold(learn: Any) -> float:
    return float(getattr(learn.loss_func, "thresh", DEFAULT_THRESHOLD))


def _codes(learn: Any, width: int) -> list[str]:
    """A segmentation learner's class names: `MaskBlock(codes)` as its `AddMaskCodes` keeps them, else
    `dls.vocab` (where some fastai versions put them), else the class indices 0 … width-1."""
    from service.inference.masks import MAX_CLASSES

    if width > MAX_CLASSES:
        raise LoadError(MSG_SEGMENTATION_TOO_MANY.format(count=width))
    add_codes = _tfm("AddMaskCodes")
    tfms: list[Any] = [t for t in learn.dls.after_item.fs if isinstance(t, add_codes)]
    found = [t.codes for t in tfms if t.codes is not None]
    if not found:
        vocab = getattr(learn.dls, "vocab", None)  # a DataLoaders without one raises, or answers None
        found = [vocab] if vocab is not None else []
    codes = [str(c) for c in found[0]] if found else [str(i) for i in range(width)]
    if len(codes) != width:
        raise LoadError(MSG_SEGMENTATION_CODES.format(codes=codes, count=len(codes), width=width))
    return codes


def _tabular(head: Callable[[Any], Any]) -> Callable[[Any, BuildOptions], AnyPredictor]:
    def build(learn: Any, options: BuildOptions) -> AnyPredictor:
        from service.inference.tabular import TabularPredictor

        return TabularPredictor(learn, head=head(learn))

    return build


def _vision(head: Callable[[Any, int], Any]) -> Callable[[Any, BuildOptions], AnyPredictor]:
    def build(learn: Any, options: BuildOptions) -> AnyPredictor:
        from service.inference.vision import VisionPredictor

        return VisionPredictor(
            learn, head=lambda width: head(learn, width), max_pixels=options.max_image_pixels
        )

    return build


def _text(head: Callable[[Any], Any]) -> Callable[[Any, BuildOptions], AnyPredictor]:
    def build(learn: Any, options: BuildOptions) -> AnyPredictor:
        from service.inference.text import TextPredictor

        return TextPredictor(learn, head=head(learn))

    return build


def _collab(learn: Any, options: BuildOptions) -> AnyPredictor:
    from service.inference.collab import ITEMS_FILE, CollabPredictor
    from service.loading import ensure_inside

    folder = options.folder
    if folder is None or not (folder / ITEMS_FILE).is_file():
        return CollabPredictor(learn)
    # Titles for the items, when the folder has them (read inside the store only, like the learner).
    return CollabPredictor(learn, items_file=ensure_inside(folder / ITEMS_FILE, folder))


TABULAR_SOURCE = "tabular_learner"
VISION_SOURCE = "vision_learner"

# The table. Order does not matter: the tests are disjoint (a test asserts exactly one entry matches).
LEARNER_TYPES: list[LearnerType] = [
    LearnerType(
        ModelKind.TABULAR,
        Task.CLASSIFICATION,
        f"{TABULAR_SOURCE} (CategoryBlock)",
        lambda f: _single(f, ModelKind.TABULAR) and _classifies(f),
        _tabular(lambda learn: ClassificationHead(_classes(learn))),
    ),
    LearnerType(
        ModelKind.TABULAR,
        Task.MULTI_LABEL,
        f"{TABULAR_SOURCE} (MultiCategoryBlock, one or several y_names)",
        lambda f: _single(f, ModelKind.TABULAR) and _multi_labels(f),
        _tabular(lambda learn: MultiLabelHead(_classes(learn), _threshold(learn))),
    ),
    LearnerType(
        ModelKind.TABULAR,
        Task.REGRESSION,
        f"{TABULAR_SOURCE} (RegressionBlock, one or several y_names)",
        lambda f: _single(f, ModelKind.TABULAR) and _regresses(f),
        _tabular(lambda learn: RegressionHead([str(n) for n in learn.dls.y_names])),
    ),
    LearnerType(
        ModelKind.VISION,
        Task.CLASSIFICATION,
        f"{VISION_SOURCE} (CategoryBlock)",
        lambda f: _single(f, ModelKind.VISION) and _classifies(f),
        _vision(lambda learn, width: ClassificationHead(_classes(learn))),
    ),
    LearnerType(
        ModelKind.VISION,
        Task.MULTI_LABEL,
        f"{VISION_SOURCE} (MultiCategoryBlock)",
        lambda f: _single(f, ModelKind.VISION) and _multi_labels(f),
        _vision(lambda learn, width: MultiLabelHead(_classes(learn), _threshold(learn))),
    ),
    LearnerType(
        ModelKind.VISION,
        Task.REGRESSION,
        f"{VISION_SOURCE} (RegressionBlock)",
        lambda f: _single(f, ModelKind.VISION) and _regresses(f),
        _vision(lambda learn, width: RegressionHead(unnamed_targets(width))),
    ),
    LearnerType(
        ModelKind.VISION,
        Task.POINTS,
        f"{VISION_SOURCE} (PointBlock)",
        lambda f: _single(f, ModelKind.VISION) and _locates_points(f),
        _vision(lambda learn, width: PointsHead(width // 2)),
    ),
    LearnerType(
        ModelKind.VISION,
        Task.SEGMENTATION,
        "unet_learner (MaskBlock)",
        lambda f: _single(f, ModelKind.VISION) and _segments(f),
        _vision(lambda learn, width: SegmentationHead(_codes(learn, width))),
    ),
    LearnerType(
        ModelKind.TEXT,
        Task.CLASSIFICATION,
        "text_classifier_learner (TextBlock, CategoryBlock)",
        lambda f: f.kind is ModelKind.TEXT and _classifies(f),
        _text(lambda learn: ClassificationHead(_text_classes(learn))),
    ),
    LearnerType(
        ModelKind.TEXT,
        Task.MULTI_LABEL,
        "text_classifier_learner (TextBlock, MultiCategoryBlock)",
        lambda f: f.kind is ModelKind.TEXT and _multi_labels(f),
        _text(lambda learn: MultiLabelHead(_text_classes(learn), _threshold(learn))),
    ),
    LearnerType(
        ModelKind.COLLAB,
        Task.RATING,
        "collab_learner (EmbeddingDotBias or EmbeddingNN)",
        lambda f: f.kind is ModelKind.COLLAB,
        _collab,
    ),
]


def served_types() -> list[LearnerType]:
    return [t for t in LEARNER_TYPES if t.served]


def _supported() -> str:
    return "; ".join(f"{t} ({t.source})" for t in served_types())


def recognise(learn: Any) -> LearnerType:
    """The one entry `learn` matches; LoadError naming what was found when none (or several) does."""
    facts = read_facts(learn)
    matched = [t for t in LEARNER_TYPES if t.matches(facts)]
    if len(matched) != 1:
        raise LoadError(MSG_UNSUPPORTED_LEARNER.format(found=facts.found, supported=_supported()))
    return matched[0]


def build_predictor(
    learner_type: LearnerType, learn: Any, *, max_image_pixels: int | None = None, folder: Path | None = None
) -> AnyPredictor:
    """The predictor for a learner already prepared for serving (device, eval mode); LoadError when its
    type is recognised but not served."""
    if learner_type.build is None:
        raise LoadError(
            MSG_NOT_SERVED_YET.format(
                learner=learner_type, source=learner_type.source, supported=_supported()
            )
        )
    return learner_type.build(learn, BuildOptions(max_image_pixels or DEFAULT_MAX_PIXELS, folder=folder))


def predictor_for(learn: Any, *, max_image_pixels: int | None = None) -> AnyPredictor:
    """`recognise` then `build_predictor`: the predictor the server would build for `learn`."""
    return build_predictor(recognise(learn), learn, max_image_pixels=max_image_pixels)
