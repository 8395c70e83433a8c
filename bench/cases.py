"""The models the bench times and the inputs each is sent: one line in CASES adds a model's rows.

Kinds: tabular (rows), vision (images; a segmentation model is a VisionCase of kind "segmentation" with its
own images), text (sentences of the shipped rt-polarity reviews) and collab (user-item pairs of the shipped
MovieLens ratings); RECOMMEND is the recommender whose `recommend` latency is timed over all its items.

Every case gets the in-process rows (ours vs fastai's learn.predict / get_preds vs the compute floor) and the
HTTP rows (ours vs the naive server at 1, 8 and 32 clients, /v2 beside /api/v1, two workers beside one),
under keys named by its `key` ("tabular" -> tabular_one_row, ours_tabular_c32). The demo models' cases
carry the issue's targets (P1-P3); the memory, large-CSV, peer and Ray rows stay on the demo models.
A case `beside` another (the classifier of the same architecture) also gets its speed as a share of that
one's, per row (task_ratios in results.json): another task must not serve slower than classification.
The bench trains the models that are not the demo's itself, when missing (bench/models.py).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd

from bench import ROOT
from service.training import data

HOURS = "hours-per-week"
# A task's speed as a share of the classifier's of the same architecture: the "within 10%".
TASK_TARGET = 0.9


def adult_rows(n: int) -> list[dict[str, Any]]:
    """`n` rows of the shipped Adult data (repeated as needed), the label left out, numbers as floats."""
    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"])
    frame = frame[data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL].dropna()
    frame = pd.concat([frame] * (n // len(frame) + 1)).iloc[:n]
    rows = frame.astype(object).to_dict(orient="records")
    return [{k: (float(v) if k in data.ADULT_CONTINUOUS else v) for k, v in r.items()} for r in rows]


def adult_hours_rows(n: int) -> list[dict[str, Any]]:
    """`n` rows for the hours-per-week regression: adult_rows without its target."""
    return [{k: v for k, v in row.items() if k != HOURS} for row in adult_rows(n)]


def cifar_jpegs(n: int) -> list[bytes]:
    """`n` JPEGs of the shipped CIFAR-10 sample's test images (repeated as needed)."""
    files = sorted((data.demo_cifar_folder() / "test").rglob("*.jpg"))
    return [files[i % len(files)].read_bytes() for i in range(n)]


RT_POLARITY = ROOT / "data" / "rt_polarity"
MOVIELENS = ROOT / "data" / "movielens_small"


@cache
def _sentences() -> tuple[str, ...]:
    """The rt-polarity sentences, positive and negative alternating (the files are Latin-1, a line each)."""
    pos, neg = (
        gzip.decompress((RT_POLARITY / f"rt-polarity.{side}.gz").read_bytes()).decode("latin-1").splitlines()
        for side in ("pos", "neg")
    )
    mixed = [s.strip() for pair in zip(pos, neg, strict=False) for s in pair]
    return tuple(s for s in mixed if s)


def review_sentences(n: int) -> list[str]:
    """`n` movie-review sentences of the shipped rt-polarity data (repeated as needed)."""
    sentences = _sentences()
    return [sentences[i % len(sentences)] for i in range(n)]


@cache
def _ratings() -> pd.DataFrame:
    return pd.read_csv(MOVIELENS / "ratings.csv.gz")


def movielens_pairs(n: int) -> list[dict[str, Any]]:
    """`n` {"user", "item"} pairs of the shipped MovieLens ratings, in the file's order (repeated as needed)."""
    frame = _ratings()
    users, items = frame["userId"].tolist(), frame["movieId"].tolist()
    return [{"user": users[i % len(users)], "item": items[i % len(items)]} for i in range(n)]


def shapes_pngs(n: int) -> list[bytes]:
    """`n` PNGs of generated shapes (bench/shapes.py), a seed apart from any the bench trains on."""
    from bench.shapes import png, shape_pairs

    return [png(image) for image, _ in shape_pairs(n, seed=1)]


@dataclass(frozen=True)
class Aim:
    """A ratio the issue sets a target for: its name in results.json and the table ("P2"), and the target."""

    name: str
    target: float


def ratio_key(aim: Aim | None, name: str) -> str:
    """A ratio's key in results.json: its aim's name first when it has one (P2_ours_vs_floor, else ours_vs_floor)."""
    return f"{aim.name}_{name}" if aim else name


@dataclass(frozen=True)
class TabularCase:
    """A tabular model: its folder in the store (its name in the API), its rows' key, the rows it is sent."""

    model: str
    key: str
    rows: Callable[[int], list[dict[str, Any]]] = adult_rows
    # The columns /v2 sends as FP64, every other one as BYTES: the model's continuous columns (the demo's
    # capital gain and loss are categories, though adult_rows gives them as numbers).
    numbers: tuple[str, ...] = tuple(data.DEMO_ADULT_CONTINUOUS)
    one_row_aim: Aim | None = None  # ours vs learn.predict on one row
    batch_aim: Aim | None = None  # ours vs the floor on 10k rows
    beside: str | None = None  # the key of the case whose speed this one's is a share of
    kind: str = "tabular"

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


@dataclass(frozen=True)
class VisionCase:
    """A vision model: its folder in the store (its name in the API), its rows' key, the images it is sent."""

    model: str
    key: str
    images: Callable[[int], list[bytes]] = cifar_jpegs
    batch_aim: Aim | None = None  # ours vs the floor on 256 images
    beside: str | None = None  # the key of the case whose speed this one's is a share of
    kind: str = "vision"  # or "segmentation": the same routes, a mask for an answer
    image_type: str = "image/jpeg"

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


@dataclass(frozen=True)
class TextCase:
    """A text classifier: its folder in the store, its rows' key, the texts it is sent."""

    model: str
    key: str
    texts: Callable[[int], list[str]] = review_sentences
    beside: None = None  # no classifier of another task to be a share of
    kind: str = "text"

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


@dataclass(frozen=True)
class CollabCase:
    """A recommender: its folder in the store, its rows' key, the (user, item) pairs it is sent."""

    model: str
    key: str
    pairs: Callable[[int], list[dict[str, Any]]] = movielens_pairs
    beside: None = None
    kind: str = "collab"

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


@dataclass(frozen=True)
class RecommendCase:
    """`recommend` timed on a recommender: every call scores all its items for one user and keeps `count`.
    `users`: how many of its users the calls cycle through; `target_ms`: the issue's p50 aim."""

    model: str
    key: str
    items: int
    use_nn: bool = False  # EmbeddingNN instead of the dot product
    count: int = 10
    users: int = 100
    target_ms: float = 20.0

    @property
    def variant(self) -> str:
        return "EmbeddingNN" if self.use_nn else "EmbeddingDotBias"


Case = TabularCase | VisionCase | TextCase | CollabCase

DEMO_TABULAR = TabularCase("adult-income", "tabular", one_row_aim=Aim("P1", 100), batch_aim=Aim("P2", 0.75))
DEMO_VISION = VisionCase("cifar10", "vision", batch_aim=Aim("P3", 0.85))

# The other tasks, each on its demo classifier's architecture (built by bench/models.py).
TABULAR_REGRESSION = TabularCase(
    "adult-hours",
    "tabular_regression",
    rows=adult_hours_rows,
    numbers=tuple(c for c in data.DEMO_ADULT_CONTINUOUS if c != HOURS),
    beside=DEMO_TABULAR.key,
)
VISION_MULTI_LABEL = VisionCase("cifar10-tags", "vision_multilabel", beside=DEMO_VISION.key)

# The kinds of issue #22: the demo models when the demo store has them, else the bench builds its own
# (bench/models.py; results.json's `models` says which was timed).
TEXT = TextCase("reviews-sentiment", "text")
COLLAB = CollabCase("movie-recommender", "collab")
SEGMENTATION = VisionCase(
    "shapes-segmentation", "segmentation", images=shapes_pngs, kind="segmentation", image_type="image/png"
)
# MovieLens has about 9,000 items: the latency aim is for 10,000, so recommenders with synthetic ids, one of
# each collab_learner variant.
RECOMMEND = RecommendCase("bench-recommender-10k", "recommend_10k_items", items=10_000)
RECOMMEND_NN = RecommendCase("bench-recommender-10k-nn", "recommend_10k_items_nn", items=10_000, use_nn=True)
RECOMMENDS: tuple[RecommendCase, ...] = (RECOMMEND, RECOMMEND_NN)

# In this order in the tables and in results.json.
CASES: tuple[Case, ...] = (
    DEMO_TABULAR,
    TABULAR_REGRESSION,
    DEMO_VISION,
    VISION_MULTI_LABEL,
    TEXT,
    COLLAB,
    SEGMENTATION,
)


def case_by_key(key: str, cases: tuple[Case, ...] = CASES) -> Case:
    return next(case for case in cases if case.key == key)
