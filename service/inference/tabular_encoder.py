"""The tabular fast path: the learner's procs applied with numpy, then the model's forward.

fastai's `test_dl` builds a `TabularPandas` and a `DataLoader` per request: most of a small request's time.
For the procs fastai's tabular recipes use (FillMissing, Categorify, Normalize) we read the learner's own
tables once at load and apply them to whole columns; anything else goes through fastai itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

# From this many rows, pandas' hash index resolves a column faster than a dict lookup per value.
HASH_INDEX_FROM = 512
SUPPORTED_PROCS = {"FillMissing", "Categorify", "Normalize", "Categorize"}


@dataclass(frozen=True)
class _Continuous:
    name: str
    fill: float | None
    mean: float
    std: float


@dataclass(frozen=True)
class _Categorical:
    name: str
    codes: dict[Any, int]  # canonical category -> code; anything else is #na# (0)
    flag_of: str | None = None  # FillMissing's `<col>_na`: the continuous column it flags

    @property
    def index(self) -> pd.Index:
        """A hash index over the classes in code order: a whole column's codes in one C call."""
        return pd.Index(list(self.codes), dtype=object)


class TabularEncoder:
    """Turns validated columns into the model's (x_cat, x_cont) tensors exactly as the procs would."""

    def __init__(self, *, categorical: list[_Categorical], continuous: list[_Continuous]) -> None:
        self.categorical = categorical
        self.continuous = continuous
        self._indexes = [cat.index for cat in categorical]

    @classmethod
    def from_learner(cls, learn: Any) -> TabularEncoder | None:
        """None when the learner uses a proc this encoder does not reproduce."""
        dls = learn.dls
        if not {type(p).__name__ for p in dls.procs} <= SUPPORTED_PROCS:
            return None
        categorify = getattr(dls.procs, "categorify", None)
        fill_missing = getattr(dls.procs, "fill_missing", None)
        normalize = getattr(dls.procs, "normalize", None)
        na_dict = dict(getattr(fill_missing, "na_dict", {}) or {})
        categorical = []
        for name in dls.cat_names:
            if categorify is None:
                return None
            classes = list(categorify.classes[name])
            flag_of = name[: -len("_na")] if name.endswith("_na") and name[: -len("_na")] in na_dict else None
            categorical.append(_Categorical(name, {c: i for i, c in enumerate(classes)}, flag_of))
        means = getattr(normalize, "means", {}) or {}
        stds = getattr(normalize, "stds", {}) or {}
        continuous = [
            _Continuous(
                name=name,
                fill=float(na_dict[name]) if name in na_dict else None,
                mean=float(means.get(name, 0.0)) if normalize is not None else 0.0,
                std=float(stds.get(name, 1.0)) if normalize is not None else 1.0,
            )
            for name in dls.cont_names
        ]
        return cls(categorical=categorical, continuous=continuous)

    def encode(self, columns: dict[str, Any], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw = {c.name: np.asarray(columns[c.name], dtype=np.float64) for c in self.continuous}
        cats = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, cat in enumerate(self.categorical):
            if cat.flag_of is not None:
                missing = np.isnan(raw[cat.flag_of])
                cats[:, j] = np.where(missing, cat.codes.get(True, 0), cat.codes.get(False, 0))
            else:
                # NaN (missing) and unknown values are not classes: #na#'s code 0, as Categorify gives.
                values = columns[cat.name]
                if n < HASH_INDEX_FROM:  # a dict lookup per value: far cheaper than pandas' call overhead
                    get = cat.codes.get
                    cats[:, j] = [get(v, 0) for v in values]
                else:
                    codes = self._indexes[j].get_indexer(np.asarray(values, dtype=object))
                    cats[:, j] = np.where(codes < 0, 0, codes)
        conts = np.empty((n, len(self.continuous)), dtype=np.float64)
        for j, cont in enumerate(self.continuous):
            values = raw[cont.name]
            if cont.fill is not None:
                values = np.where(np.isnan(values), cont.fill, values)
            conts[:, j] = (values - cont.mean) / cont.std
        return torch.from_numpy(cats), torch.from_numpy(conts.astype(np.float32))
