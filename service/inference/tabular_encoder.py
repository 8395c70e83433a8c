"""The tabular fast path: the learner's procs applied with numpy, then the model's forward.

fastai's `test_dl` builds a `TabularPandas` and a `DataLoader` per request: most of a small request's time.
For the procs fastai's tabular recipes use (FillMissing, Categorify, Normalize) the tables read once into
the learner's `TabularSpec` are applied to whole columns; anything else goes through fastai itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from service.inference.tabular_spec import CategoricalColumn, MissingFlag, TabularSpec

# From this many rows, pandas' hash index resolves a column faster than a dict lookup per value.
HASH_INDEX_FROM = 512
# The input procs reproduced here, and the target procs of every tabular task (they touch only the targets,
# which a request does not carry).
SUPPORTED_PROCS = {
    "FillMissing",
    "Categorify",
    "Normalize",
    "Categorize",
    "EncodedMultiCategorize",
    "MultiCategorize",
    "RegressionSetup",
}


class TabularEncoder:
    """Turns validated columns into the model's (x_cat, x_cont) tensors exactly as the procs would."""

    def __init__(self, spec: TabularSpec) -> None:
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: TabularSpec) -> TabularEncoder | None:
        """None when the learner uses a proc this encoder does not reproduce."""
        if not spec.proc_names <= SUPPORTED_PROCS:
            return None
        if spec.model_categorical and "Categorify" not in spec.proc_names:
            return None
        return cls(spec)

    @staticmethod
    def codes(column: CategoricalColumn, values: Any) -> np.ndarray:
        """Categorify's code of each resolved value; NaN (missing) and unknown values are not classes:
        #na#'s code 0, as Categorify gives."""
        if len(values) < HASH_INDEX_FROM:  # a dict lookup per value: far cheaper than pandas' call overhead
            get = column.codes.get
            return np.array([get(v, 0) for v in values], dtype=np.int64)
        found = column.code_index.get_indexer(np.asarray(values, dtype=object))
        return np.where(found < 0, 0, found)

    def encode(
        self, columns: dict[str, Any], n: int, codes: dict[str, np.ndarray] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`codes`: Categorify codes some columns already have (a CSV's, resolved column-wise)."""
        spec = self.spec
        known = codes or {}
        raw = {c.name: np.asarray(columns[c.name], dtype=np.float64) for c in spec.continuous}
        cats = np.zeros((n, len(spec.model_categorical)), dtype=np.int64)
        for j, cat in enumerate(spec.model_categorical):
            if isinstance(cat, MissingFlag):
                missing = np.isnan(raw[cat.flag_of])
                cats[:, j] = np.where(missing, cat.codes.get(True, 0), cat.codes.get(False, 0))
            else:
                cats[:, j] = known[cat.name] if cat.name in known else self.codes(cat, columns[cat.name])
        conts = np.empty((n, len(spec.continuous)), dtype=np.float64)
        for j, cont in enumerate(spec.continuous):
            values = raw[cont.name]
            if cont.fill is not None:
                values = np.where(np.isnan(values), cont.fill, values)
            mean = cont.mean if cont.mean is not None else 0.0
            std = cont.std if cont.std is not None else 1.0
            conts[:, j] = (values - mean) / std
        return torch.from_numpy(cats), torch.from_numpy(conts.astype(np.float32))
