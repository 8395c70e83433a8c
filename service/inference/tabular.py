"""Tabular learners: rows (JSON or CSV) validated against the learner's spec and predicted as one batch."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from service.errors import (
    MSG_INVALID_ROWS,
    MSG_NULL_CATEGORY,
    MSG_NULL_FILLED,
    MSG_NULL_NOT_FILLABLE,
    MSG_TOLERANT_MATCH,
    MSG_UNSEEN_CATEGORY,
    InvalidInput,
)
from service.inference.csvio import CsvChunk, rows_for
from service.inference.predictor import ModelKind, split_rows
from service.inference.runtime import FastaiPipeline, ModelRuntime, TorchModel
from service.inference.tabular_encoder import TabularEncoder
from service.inference.tabular_spec import (
    CategoricalColumn,
    TabularSpec,
    normalise_category,
    spec_from_learner,
)
from service.inference.tasks import AnyHead, AnyPrediction, Decoding, HeadFacts

_UNMATCHED = object()
_NUMBER_TYPES = {int, float, type(None)}
# Categories are text, or numbers for a learner that categorised a numeric column (e.g. amounts).
_CATEGORY_TYPES = {str, int, float, type(None)}
# A whole number written as a float ("2174.0", as pandas writes a float column): the same category as 2174.
_INTEGRAL_TEXT = re.compile(r"^\s*(-?\d+)\.0*\s*$")
CategoryValue = str | int | float
# Up to this many cells of a column that match no category exactly go straight to `_match_category`;
# more take Arrow's whole-number pass first (its regex is compiled per call: dear for a handful of cells).
FEW_MISSES = 64


def _parse_numbers(cells: pa.Array) -> np.ndarray | None:
    """Text cells as float64 with NaN where a cell is missing; None when any present cell is not a finite
    number, or is blank (the caller then takes the path that reports each bad cell or fills the blank)."""
    try:  # Arrow's C++ parser first; numpy's takes what it refuses (surrounding spaces, say)
        parsed = pc.cast(cells, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    else:
        values: np.ndarray = parsed.to_numpy(zero_copy_only=False)
        present = parsed.is_valid().to_numpy(zero_copy_only=False) if parsed.null_count else slice(None)
        if np.isfinite(values[present]).all():
            return values
        return None  # "nan" or "inf" written in a cell: refused, as for JSON rows
    text = cells.to_numpy(zero_copy_only=False)
    absent = cells.is_null().to_numpy(zero_copy_only=False)
    if absent.any():
        text = text.copy()
        text[absent] = "nan"
    try:
        values = text.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    return values if np.isfinite(values[~absent]).all() else None


def _row_type(spec: TabularSpec) -> Any:
    """A TypedDict of one row: validates to plain dicts, much cheaper than a model instance per row."""
    fields: dict[str, Any] = {c.name: float | None for c in spec.continuous}
    fields.update({c.name: CategoryValue | None for c in spec.categorical})
    make_typed_dict: Any = TypedDict
    row_type = make_typed_dict("TabularRow", fields)
    row_type.__pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)
    return row_type


@dataclass
class PreparedRows:
    columns: dict[str, Any]  # column -> list or array of resolved values
    n: int
    notes: dict[int, list[str]] = field(default_factory=dict)  # row -> its warnings (rows with none absent)
    # Categorify's codes of categorical columns, where resolving a CSV column found them anyway (the
    # encoder then skips a second lookup per value).
    codes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def warnings(self) -> list[list[str]]:
        """Every row's warnings, in order."""
        return [self.notes.get(i, []) for i in range(self.n)]


class TabularPredictor(HeadFacts):
    """Validates rows against the learner's schema and predicts them as one batch (a `Predictor`)."""

    kind: ClassVar[ModelKind] = ModelKind.TABULAR

    def __init__(self, learn: Any, *, head: AnyHead) -> None:
        self.spec = spec_from_learner(learn)
        self.head = head
        self._pipeline = FastaiPipeline(learn)
        self._encoder = TabularEncoder.from_spec(self.spec)
        # The forward under the fast path: torch, until `runtime.select_runtime` puts ONNX Runtime here.
        # The learner's model in torch: what serves until `runtime.select_runtime` puts ONNX Runtime under
        # the fast path, and what explanations differentiate (`service/explain`) whatever serves.
        self.torch_model = TorchModel(learn, input_names=("x_cat", "x_cont"))
        self.runtime: ModelRuntime = self.torch_model
        rows_type: Any = list[_row_type(self.spec)]  # type: ignore[misc]
        self._rows_adapter: TypeAdapter[list[Any]] = TypeAdapter(rows_type)
        self._column_keys = dict.fromkeys(self.spec.column_names).keys()

    def input_schema(self) -> dict[str, Any]:
        return self.spec.input_schema()

    def row_json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of one input row."""
        row_schema = self._rows_adapter.json_schema()["$defs"]["TabularRow"]
        for column in self.spec.categorical:
            row_schema["properties"][column.name]["examples"] = column.schema()["categories"][:20]
        row_schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return dict(row_schema)

    def predict(self, rows: list[dict[str, Any]], *, strict: bool = True) -> list[AnyPrediction]:
        """Predict every row in one batch; `strict=False` lets numeric strings through (CSV)."""
        prepared = self.prepare(rows, strict=strict)
        return self.finish(prepared, self.forward_many([prepared])[0])

    def prepare(self, rows: list[dict[str, Any]], *, strict: bool = True) -> PreparedRows:
        """Validate and resolve one request's rows (4xx errors belong to this request alone)."""
        columns, notes = self._preprocess(rows, strict=strict)
        return PreparedRows(columns=columns, n=len(rows), notes=notes)

    def prepare_frame(self, frame: pd.DataFrame, *, filename: str) -> PreparedRows:
        """A DataFrame of cells (text, as a CSV gives them, or typed) validated and resolved column-wise."""
        return self.prepare_chunk(CsvChunk.of_frame(frame), filename=filename)

    def prepare_chunk(self, chunk: CsvChunk, *, filename: str) -> PreparedRows:
        """A run of CSV rows validated and resolved a column at a time, in Arrow.

        Same outcome as `prepare(rows_for(chunk.frame()), strict=False)`, which is what runs whenever a
        cell is invalid, so that errors name their cells exactly as for JSON rows; valid chunks never build
        an object per row, which is most of the cost of a large batch.
        """
        missing = [c for c in self.spec.column_names if c not in chunk.names]
        if missing:
            rows_for(chunk.frame(), self.spec.column_names, filename=filename)  # raises the error

        def per_row() -> PreparedRows:
            return self.prepare(
                rows_for(chunk.frame(), self.spec.column_names, filename=filename), strict=False
            )

        return self.prepare_arrays(chunk.column, len(chunk), per_row=per_row)

    def prepare_arrays(
        self, column: Callable[[str], pa.Array], n: int, *, per_row: Callable[[], PreparedRows]
    ) -> PreparedRows:
        """`n` rows given column by column as Arrow arrays (`column(name)`: text, or numbers for a
        continuous column; nulls missing), resolved a column at a time. `per_row` is the caller's
        row-by-row path, taken whenever a continuous cell is invalid or missing without a fill, so that
        its errors name their cells."""
        notes: defaultdict[int, list[str]] = defaultdict(list)
        columns: dict[str, Any] = {}
        codes: dict[str, np.ndarray] = {}
        for cont in self.spec.continuous:
            values = _parse_numbers(column(cont.name))
            absent = np.isnan(values) if values is not None else None
            if absent is None or (cont.fill is None and absent.any()):
                return per_row()
            for i in np.flatnonzero(absent).tolist():
                notes[i].append(MSG_NULL_FILLED.format(column=cont.name, fill=cont.fill))
            columns[cont.name] = values
        # With the encoder, codes are all the forward needs; fastai's own pipeline takes the categories.
        with_values = self._encoder is None
        for cat in self.spec.categorical:
            categories, codes[cat.name] = self._resolve_column(
                cat, column(cat.name), notes, values=with_values
            )
            if categories is not None:
                columns[cat.name] = categories
        return PreparedRows(columns=columns, n=n, notes=dict(notes), codes=codes)

    def forward_many(self, batch: list[PreparedRows]) -> list[np.ndarray]:
        """One forward pass for several requests' rows; each gets its own slice back."""
        if len(batch) == 1:
            return [self._forward(batch[0].columns, batch[0].n, batch[0].codes)]
        codes: dict[str, np.ndarray] = {}
        if self._encoder is not None:  # a CSV chunk brings codes only; JSON rows bring their categories
            for cat in self.spec.categorical:
                parts = [
                    p.codes[cat.name]
                    if cat.name in p.codes
                    else self._encoder.codes(cat, p.columns[cat.name])
                    for p in batch
                ]
                codes[cat.name] = np.concatenate(parts)
        names = [name for name in batch[0].columns if name not in codes]
        merged = {
            name: np.concatenate([np.asarray(p.columns[name], dtype=object) for p in batch]) for name in names
        }
        sizes = [p.n for p in batch]
        return split_rows(self._forward(merged, sum(sizes), codes), sizes)

    def finish(
        self, prepared: PreparedRows, outputs: np.ndarray, *, threshold: float | None = None
    ) -> list[AnyPrediction]:
        return list(self.head.decode(outputs, prepared.warnings, Decoding(threshold=threshold)))

    @property
    def fast_path(self) -> bool:
        return self._encoder is not None

    def _forward(self, columns: dict[str, Any], n: int, codes: dict[str, np.ndarray]) -> np.ndarray:
        if self._encoder is None:  # procs we do not reproduce: fastai's own pipeline
            frame = pd.DataFrame(columns)
            for cont in self.spec.continuous:
                frame[cont.name] = frame[cont.name].astype("float64")
            return self._pipeline.outputs(frame)
        return self.runtime.outputs(*self._encoder.encode(columns, n, codes))

    def encoded(self, prepared: PreparedRows) -> tuple[Any, Any]:
        """The model's (x_cat, x_cont) tensors for these rows: the fast path's encoder, or fastai's own
        `test_dl` for procs it does not reproduce (what the forward would have been given)."""
        if self._encoder is not None:
            return self._encoder.encode(prepared.columns, prepared.n, prepared.codes)
        frame = pd.DataFrame(prepared.columns)
        for cont in self.spec.continuous:
            frame[cont.name] = frame[cont.name].astype("float64")
        x_cat, x_cont = self._pipeline.inputs(frame)[:2]
        return x_cat, x_cont

    def _check_row(self) -> dict[str, Any]:
        """One row built from the schema itself (training means, first categories)."""
        row: dict[str, Any] = {c.name: c.mean if c.mean is not None else 0.0 for c in self.spec.continuous}
        row.update({c.name: c.categories[0] if c.categories else None for c in self.spec.categorical})
        return row

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """The self-check row encoded, then 64 random rows (any code of each column, normal values)."""
        import torch

        if self._encoder is None:
            return []
        prepared = self.prepare([self._check_row()], strict=False)
        check = self._encoder.encode(prepared.columns, prepared.n)
        generator = torch.Generator().manual_seed(0)
        n = 64
        highs = [max(c.codes.values(), default=0) + 1 for c in self.spec.model_categorical]
        cats = (
            torch.stack([torch.randint(0, h, (n,), generator=generator) for h in highs], dim=1)
            if highs
            else torch.zeros((n, 0), dtype=torch.int64)
        )
        conts = torch.randn((n, len(self.spec.continuous)), generator=generator)
        return [check, (cats, conts)]

    def self_check(self) -> None:
        """Predict one row built from the schema itself (training means, first categories)."""
        prepared = self.prepare([self._check_row()], strict=False)
        outputs = self.forward_many([prepared])[0]
        self.head.check(outputs)
        self.finish(prepared, outputs)

    def _preprocess(
        self, rows: list[dict[str, Any]], *, strict: bool
    ) -> tuple[dict[str, list[Any]], dict[int, list[str]]]:
        raw_columns = self._plain_columns(rows) if strict else None
        if raw_columns is None:
            raw_columns = self._validated_columns(rows, strict=strict)
        return self._resolve_values(raw_columns)

    def prepare_columns(
        self, values: dict[str, list[Any]], n: int, *, rows: Callable[[], list[dict[str, Any]]]
    ) -> PreparedRows:
        """`prepare(rows())` for rows given as `n` values per model column (no other keys): when the values
        are plainly valid (`_plain_columns`) they are resolved as they are, without a dict per row; else
        `rows()` goes through `prepare`, whose errors name each bad cell."""
        plain = self._plain_values({name: values[name] for name in self.spec.column_names})
        if plain is None:
            return self.prepare(rows())
        columns, notes = self._resolve_values(plain)
        return PreparedRows(columns=columns, n=n, notes=notes)

    def _resolve_values(
        self, raw_columns: dict[str, list[Any]]
    ) -> tuple[dict[str, list[Any]], dict[int, list[str]]]:
        """Validated columns resolved: missing numbers filled (or refused), categories matched (warned)."""
        errors: list[dict[str, Any]] = []
        notes: defaultdict[int, list[str]] = defaultdict(list)
        columns: dict[str, list[Any]] = {}
        # Column at a time with comprehensions: the common case (no gaps, exact categories) stays cheap,
        # and only unusual values take the per-value path that writes warnings.
        for cont in self.spec.continuous:
            values = raw_columns[cont.name]
            if None in values:
                for i, value in enumerate(values):
                    if value is not None:
                        continue
                    if cont.fill is None:
                        errors.append(
                            {"loc": ["rows", i, cont.name], "msg": MSG_NULL_NOT_FILLABLE, "type": "null"}
                        )
                    else:
                        notes[i].append(MSG_NULL_FILLED.format(column=cont.name, fill=cont.fill))
                    values[i] = np.nan
            columns[cont.name] = values
        if errors:
            raise InvalidInput(MSG_INVALID_ROWS.format(count=len(errors)), errors)
        for cat in self.spec.categorical:
            lookup = cat.lookup
            raw = raw_columns[cat.name]
            values = [lookup.get(v, _UNMATCHED) if v.__class__ is str else _UNMATCHED for v in raw]
            for i, value in enumerate(values):
                if value is _UNMATCHED:
                    values[i] = self._match_category(cat, raw[i], notes[i])
            columns[cat.name] = values
        return columns, dict(notes)

    def _validated_columns(self, rows: list[dict[str, Any]], *, strict: bool) -> dict[str, list[Any]]:
        """pydantic's validation of every row, with an error located at each bad cell."""
        try:
            validated = self._rows_adapter.validate_python(rows, strict=strict)
        except ValidationError as exc:
            errors = [
                {"loc": ["rows", *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors()
            ]
            raise InvalidInput(MSG_INVALID_ROWS.format(count=len(errors)), errors) from None
        return {name: [row[name] for row in validated] for name in self.spec.column_names}

    def _plain_columns(self, rows: list[dict[str, Any]]) -> dict[str, list[Any]] | None:
        """The rows as columns when they are plainly valid: exactly the model's keys, JSON numbers for
        continuous columns (finite), strings or nulls for categorical ones. That is what almost every
        request sends, and checking it a column at a time costs a fraction of validating each row as an
        object. Anything else returns None and goes through pydantic, which says exactly what is wrong."""
        keys = self._column_keys
        if not all(row.__class__ is dict and row.keys() == keys for row in rows):
            return None
        return self._plain_values({name: [row[name] for row in rows] for name in keys})

    def _plain_values(self, given: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
        """`_plain_columns`' check on values already in columns (each model column's, in order)."""
        columns: dict[str, list[Any]] = {}
        for cont in self.spec.continuous:
            values = given[cont.name]
            kinds = set(map(type, values))
            if not kinds <= _NUMBER_TYPES:
                return None
            numbers = values if type(None) not in kinds else [v for v in values if v is not None]
            try:
                if numbers and not np.isfinite(np.asarray(numbers, dtype=np.float64)).all():
                    return None
            except OverflowError:
                return None
            columns[cont.name] = values
        for cat in self.spec.categorical:
            values = given[cat.name]
            kinds = set(map(type, values))
            if not kinds <= _CATEGORY_TYPES:
                return None
            if float in kinds and not all(math.isfinite(v) for v in values if type(v) is float):
                return None
            columns[cat.name] = values
        return columns

    @classmethod
    def _resolve_column(
        cls, column: CategoricalColumn, cells: pa.Array, notes: defaultdict[int, list[str]], *, values: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """A column of text cells as Categorify's codes (and, when `values`, the categories themselves), by
        one hash lookup in Arrow; the few cells it misses (other case or spacing, unseen, missing, a whole
        number written "2174.00") go through `_match_category`, which warns, as for JSON rows."""
        found = pc.index_in(cells, value_set=column.text_set)
        positions = found.fill_null(-1).to_numpy() if found.null_count else found.to_numpy()
        codes = column.position_codes[positions]
        categories = column.canonical[positions] if values else None
        if not found.null_count:
            return categories, codes
        misses = np.flatnonzero(positions < 0)
        text = cells.take(misses)
        if len(misses) <= FEW_MISSES:
            # `_match_category` finds the whole numbers too ("2174.00" is 2174, without a warning): the pass
            # below only saves it the work when many cells need it.
            left = np.arange(len(misses))
        else:
            whole = pc.replace_substring_regex(text, pattern=_INTEGRAL_TEXT.pattern, replacement=r"\1")
            again = pc.index_in(whole, value_set=column.text_set).fill_null(-1).to_numpy()
            hit = again >= 0  # whole numbers still, and no warning
            codes[misses[hit]] = column.position_codes[again[hit]]
            if categories is not None:
                categories[misses[hit]] = column.canonical[again[hit]]
            left = np.flatnonzero(~hit)
        for i, raw in zip(misses[left].tolist(), text.take(left).to_pylist(), strict=True):
            cell = None if raw is None or not raw.strip() else raw  # whitespace only: missing
            warnings: list[str] = []
            category = cls._match_category(column, cell, warnings)
            if warnings:  # a row gets an entry only when it has something to say
                notes[i].extend(warnings)
            codes[i] = column.codes.get(category, 0)
            if categories is not None:
                categories[i] = category
        return categories, codes

    @staticmethod
    def _match_category(column: CategoricalColumn, raw: Any, warnings: list[str]) -> Any:
        if raw is None:
            warnings.append(MSG_NULL_CATEGORY.format(column=column.name))
            return np.nan
        key = (
            str(int(raw))
            if isinstance(raw, float) and raw.is_integer()
            else _INTEGRAL_TEXT.sub(r"\1", str(raw))
        )
        if key in column.lookup:  # "2174", 2174 and 2174.0 all name category 2174
            return column.lookup[key]
        canonical = column.tolerant.get(normalise_category(key))
        if canonical is not None:
            warnings.append(MSG_TOLERANT_MATCH.format(column=column.name, value=raw, category=canonical))
            return canonical
        warnings.append(MSG_UNSEEN_CATEGORY.format(column=column.name, value=raw))
        return np.nan
