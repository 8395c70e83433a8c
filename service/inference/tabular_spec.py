"""A tabular learner's inputs, read once from its procs: the columns a client sends (names, categories,
fill values, normalisation), the model's categorical columns in order, and the target columns.

The predictor validates requests against it and the encoder applies it; nothing else reads the procs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

NA_CATEGORY = "#na#"
_WHOLE_NUMBER = re.compile(r"-?\d+")


def finite_or_none(value: Any) -> float | None:
    """A number as a float, with None for absent or NaN (what JSON and reports can carry)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def normalise_category(value: Any) -> str:
    """The key tolerant matching uses: surrounding whitespace and case do not count."""
    return str(value).strip().casefold()


@dataclass(frozen=True)
class CategoricalColumn:
    """One categorical input; every lookup is built once per model, so matching is a dict lookup."""

    name: str
    categories: list[Any]  # what a client may send (Categorify's classes without #na#)
    lookup: dict[str, Any]  # str(value) -> canonical category
    tolerant: dict[str, Any]  # normalise_category(value) -> canonical category
    codes: dict[Any, int]  # canonical category -> Categorify's code; anything else is #na# (0)

    @classmethod
    def from_classes(cls, name: str, classes: list[Any]) -> CategoricalColumn:
        known = [c for c in classes if c != NA_CATEGORY]
        tolerant: dict[str, Any] = {}
        for category in known:
            tolerant.setdefault(normalise_category(category), category)
        return cls(
            name=name,
            categories=known,
            lookup={str(c): c for c in known},
            tolerant=tolerant,
            codes={c: i for i, c in enumerate(classes)},
        )

    @cached_property
    def _text_forms(self) -> list[tuple[str, Any]]:
        """(text, category) for each way a CSV cell names a category exactly: its text and, for a whole
        number, the text pandas writes for a float column too ("2174.0" for 2174)."""
        forms = list(self.lookup.items())
        forms += [
            (f"{text}.0", category)
            for text, category in self.lookup.items()
            if _WHOLE_NUMBER.fullmatch(text) and f"{text}.0" not in self.lookup
        ]
        return forms

    @cached_property
    def text_set(self) -> pa.Array:
        """Every exact text form, for Arrow's `index_in` over a column of CSV cells."""
        return pa.array([text for text, _ in self._text_forms], type=pa.string())

    @cached_property
    def position_codes(self) -> np.ndarray:
        """Categorify's code of each form in `text_set` order, plus #na#'s 0 last (no match)."""
        return np.array([*(self.codes.get(c, 0) for _, c in self._text_forms), 0], dtype=np.int64)

    @cached_property
    def canonical(self) -> np.ndarray:
        """The category of each form in `text_set` order, plus NaN last: position -1 (no match) picks it."""
        return np.array([*(c for _, c in self._text_forms), np.nan], dtype=object)

    @cached_property
    def code_index(self) -> pd.Index:
        """A hash index over the classes in code order: a whole column's codes in one C call."""
        return pd.Index(list(self.codes), dtype=object)

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "type": "categorical", "categories": [str(c) for c in self.categories]}


@dataclass(frozen=True)
class MissingFlag:
    """FillMissing's `<col>_na` column: not a client input, derived from whether `flag_of` was missing."""

    name: str
    flag_of: str
    codes: dict[Any, int]


@dataclass(frozen=True)
class ContinuousColumn:
    name: str
    mean: float | None
    std: float | None
    fill: float | None  # what FillMissing puts in for a missing value; None when it cannot

    @property
    def nullable(self) -> bool:
        return self.fill is not None

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "continuous",
            "mean": self.mean,
            "std": self.std,
            "nullable": self.nullable,
        }


@dataclass(frozen=True)
class TabularSpec:
    """Everything about a tabular learner's inputs, read once from its procs: what a client sends, and
    how the procs encode it."""

    categorical: list[CategoricalColumn]
    continuous: list[ContinuousColumn]
    targets: list[str]  # the learner's y_names
    model_categorical: list[CategoricalColumn | MissingFlag]  # the model's x_cat columns, in order
    proc_names: frozenset[str]  # the procs' class names: which of them the fast path reproduces

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.continuous] + [c.name for c in self.categorical]

    @property
    def target(self) -> str:
        """The first target column (a classifier's only one)."""
        return self.targets[0] if self.targets else ""

    def input_schema(self) -> dict[str, Any]:
        columns = [c.schema() for c in self.continuous] + [c.schema() for c in self.categorical]
        return {"columns": columns, "target": self.target, "targets": self.targets}


def _proc(dls: Any, name: str) -> Any:
    return getattr(dls.procs, name, None)


def spec_from_learner(learn: Any) -> TabularSpec:
    """Read columns, categories, codes, fill values, normalisation and classes from a tabular learner."""
    dls = learn.dls
    categorify, fill_missing, normalize = (
        _proc(dls, "categorify"),
        _proc(dls, "fill_missing"),
        _proc(dls, "normalize"),
    )
    na_dict: dict[str, Any] = dict(getattr(fill_missing, "na_dict", {}) or {})
    flags = {f"{col}_na": col for col in na_dict}
    categorical: list[CategoricalColumn] = []
    model_categorical: list[CategoricalColumn | MissingFlag] = []
    for name in dls.cat_names:
        classes = list(categorify.classes[name]) if categorify is not None else []
        if name in flags:
            model_categorical.append(MissingFlag(name, flags[name], {c: i for i, c in enumerate(classes)}))
            continue
        column = CategoricalColumn.from_classes(name, classes)
        categorical.append(column)
        model_categorical.append(column)
    means = getattr(normalize, "means", {}) or {}
    stds = getattr(normalize, "stds", {}) or {}
    continuous = [
        ContinuousColumn(
            name=name,
            mean=finite_or_none(means.get(name)),
            std=finite_or_none(stds.get(name)),
            fill=finite_or_none(na_dict.get(name)),
        )
        for name in dls.cont_names
    ]
    return TabularSpec(
        categorical=categorical,
        continuous=continuous,
        targets=[str(name) for name in dls.y_names],
        model_categorical=model_categorical,
        proc_names=frozenset(type(p).__name__ for p in dls.procs),
    )
