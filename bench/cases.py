"""The models the bench times and the inputs each is sent: one line in CASES adds a model's rows.

Every case gets the in-process rows (ours vs fastai's learn.predict / get_preds vs the compute floor) and the
HTTP rows (ours vs the naive server at 1, 8 and 32 clients, /v2 beside /api/v1, two workers beside one),
under keys named by its `key` ("tabular" -> tabular_one_row, ours_tabular_c32). The demo models' cases
carry the issue's targets (P1-P3); the memory, large-CSV, peer and Ray rows stay on the demo models.
A case `beside` another (the classifier of the same architecture) also gets its speed as a share of that
one's, per row (task_ratios in results.json): another task must not serve slower than classification.
The bench trains the models that are not the demo's itself, when missing (bench/models.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

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

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


Case = TabularCase | VisionCase

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

# In this order in the tables and in results.json.
CASES: tuple[Case, ...] = (DEMO_TABULAR, TABULAR_REGRESSION, DEMO_VISION, VISION_MULTI_LABEL)


def case_by_key(key: str, cases: tuple[Case, ...] = CASES) -> Case:
    return next(case for case in cases if case.key == key)
