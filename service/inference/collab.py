"""Collaborative-filtering learners (`collab_learner`: `EmbeddingDotBias` or `EmbeddingNN`): ratings of
(user, item) pairs, the best items for a user, and items like an item.

A learner knows the users and items of its training data: `learn.dls.classes[<column>]`, index 0 being
fastai's `#na#`, an untrained embedding that `Categorify` gives any id it has not seen. Ids are matched
here, before the model, as text (`7` and `"7"` name the same user), so an unknown user or item never gets
that embedding's number: its rating is None with a warning naming it. Known pairs go through the
learner's own model (its `y_range` sigmoid is inside it), on the runtime `select_runtime` chose.

`recommend` scores every item the learner knows in one vectorised pass: for `EmbeddingDotBias` the user's
factors against the item factor matrix plus both biases, then the `y_range` sigmoid, with the matrices
taken from the model at load; for `EmbeddingNN` one batched forward of (user, every item). `similar` is
the cosine similarity of the learner's item embeddings. An optional `items.csv` in the model folder (first
column the item id, a `title` column) gives items their titles.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.errors import (
    MSG_COLLAB_EXCLUDE_UNKNOWN,
    MSG_COLLAB_ITEMS_FILE,
    MSG_COLLAB_MISSING_ID,
    MSG_COLLAB_TWO_COLUMNS,
    MSG_COLLAB_UNKNOWN_ID,
    MSG_COLLAB_UNKNOWN_ITEM,
    MSG_COLLAB_UNKNOWN_USER,
    MSG_CSV_MISSING_COLUMNS,
    InvalidInput,
    LoadError,
    NotFound,
)
from service.inference.csvio import CsvChunk
from service.inference.predictor import ModelKind
from service.inference.runtime import ModelRuntime, TorchModel
from service.inference.tasks import AnyHead, AnyPrediction, HeadFacts, RatingHead

# The optional file of item titles in a collab model's folder.
ITEMS_FILE = "items.csv"
TITLE_COLUMN = "title"
# An id as a client sends it: JSON text or a whole number (a query parameter is always text).
Id = str | int


def _json_id(value: Any) -> Id:
    """A learner's class as a JSON id: whole numbers as numbers, anything else as its text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return str(value)


def _keys(value: Any) -> list[str]:
    """The texts a client may name a class by: its own, and a whole float's integer (1.0 is "1")."""
    keys = [str(value)]
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        keys.append(str(int(value)))
    return keys


@dataclass(frozen=True)
class IdSpace:
    """The users (or items) a learner knows: Categorify's classes of one column, `#na#` at code 0."""

    side: str  # "user" or "item"
    column: str
    ids: list[Id]  # JSON id per code; ids[0] is the `#na#` slot, never served
    lookup: dict[str, int]  # id text -> code (1 and up)
    text: pa.Array  # each known id's text, codes 1.. in order (for Arrow lookups of CSV columns)

    @classmethod
    def of(cls, side: str, column: str, classes: Sequence[Any]) -> IdSpace:
        lookup: dict[str, int] = {}
        for code, value in enumerate(classes):
            if code == 0:
                continue  # `#na#`: a client that sends "#na#" names no one
            for key in _keys(value):
                lookup.setdefault(key, code)
        text = pa.array([str(v) for v in list(classes)[1:]], type=pa.string())
        return cls(side, column, [_json_id(v) for v in classes], lookup, text)

    @property
    def count(self) -> int:
        return len(self.ids) - 1

    def code(self, value: Any) -> int:
        """The code of an id a client sent (text or whole number), 0 when the learner does not know it."""
        if value is None or isinstance(value, bool):
            return 0
        text = str(value)
        code = self.lookup.get(text)
        return code if code is not None else self.lookup.get(text.strip(), 0)

    def note(self, value: Any) -> str:
        """The warning of a pair whose id here the learner does not know."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return MSG_COLLAB_MISSING_ID.format(side=self.side, column=self.column)
        return MSG_COLLAB_UNKNOWN_ID.format(side=self.side, value=value, column=self.column)

    def codes(self, values: Sequence[Any], notes: defaultdict[int, list[str]]) -> np.ndarray:
        """Codes of ids sent as JSON (0 where unknown, with a warning in `notes` by position)."""
        codes = np.fromiter((self.code(v) for v in values), dtype=np.int64, count=len(values))
        for i in np.flatnonzero(codes == 0).tolist():
            notes[i].append(self.note(values[i]))
        return codes

    def cell_codes(self, cells: pa.Array, notes: defaultdict[int, list[str]]) -> np.ndarray:
        """Codes of a CSV column's text cells, one Arrow lookup; only the cells it misses (other spacing,
        unknown, blank) are looked at one by one."""
        found = pc.index_in(cells, value_set=self.text)
        codes = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64) + 1
        misses = np.flatnonzero(codes == 0)
        for i, raw in zip(misses.tolist(), cells.take(misses).to_pylist(), strict=True):
            codes[i] = self.code(raw)
            if not codes[i]:
                notes[i].append(self.note(raw))
        return codes


@dataclass
class PreparedPairs:
    """One request's (user, item) pairs as codes, 0 where the learner does not know the id."""

    codes: np.ndarray  # (n, 2) int64: user code, item code
    users: Sequence[Any] | pa.Array  # as sent, for the answer's echo
    items: Sequence[Any] | pa.Array
    notes: dict[int, list[str]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.codes)

    @property
    def known(self) -> np.ndarray:
        """Pairs whose user and item the learner both knows: the only ones the model rates."""
        return np.asarray((self.codes > 0).all(axis=1))

    @property
    def warnings(self) -> list[list[str]]:
        return [self.notes.get(i, []) for i in range(self.n)]


@dataclass
class PreparedRanking:
    """A request for the best items of one known user: its forward scores every item the learner knows."""

    user: int  # code
    user_id: Id
    count: int  # how many items the answer lists
    excluded: np.ndarray  # item codes left out
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return 1  # one user: what the batcher's queue counts (the items are one vectorised pass)


@dataclass(frozen=True)
class RankedItem:
    """An item of a recommendation (`score`: the predicted rating) or of a similarity list (cosine)."""

    item: Id
    score: float
    title: str | None = None


def _plain_numpy(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().float().cpu().numpy())


def _rating_range(model: Any) -> tuple[float, float] | None:
    """The learner's `y_range`: `EmbeddingDotBias.y_range`, or `EmbeddingNN`'s final `SigmoidRange`."""
    from fastai.layers import SigmoidRange

    y_range = getattr(model, "y_range", None)
    if y_range is not None:
        return float(y_range[0]), float(y_range[1])
    ranges = [m for m in model.modules() if isinstance(m, SigmoidRange)]
    return (float(ranges[-1].low), float(ranges[-1].high)) if ranges else None


class _DotScores:
    """`EmbeddingDotBias.forward` for one user against every item, on matrices copied at load."""

    def __init__(self, model: Any, rating_range: tuple[float, float] | None) -> None:
        self.user_factors = _plain_numpy(model.u_weight.weight)
        self.user_bias = _plain_numpy(model.u_bias.weight)[:, 0]
        self.item_factors = np.ascontiguousarray(_plain_numpy(model.i_weight.weight))
        self.item_bias = _plain_numpy(model.i_bias.weight)[:, 0]
        self.rating_range = rating_range

    def all_items(self, user: int) -> np.ndarray:
        raw = _times(self.item_factors, self.user_factors[user]) + self.item_bias + self.user_bias[user]
        if self.rating_range is None:
            return np.asarray(raw, dtype=np.float32)
        low, high = self.rating_range
        return np.asarray(1.0 / (1.0 + np.exp(-raw)) * (high - low) + low, dtype=np.float32)


class _SplitFirstLayer:
    """`EmbeddingNN.forward` for one user against every item with its first `Linear` split at load: that
    layer sees `cat(user embedding, item embedding)`, so its item half (items x width) is computed once and a
    ranking costs one user vector plus the layers after it (10,000 items: a 10,000 x 100 tensor through
    ReLU, BatchNorm and the last Linear instead of 10,000 full forwards)."""

    def __init__(self, model: Any, *, user_col: int, item_col: int) -> None:
        import torch
        from torch import nn

        first = model.layers[0]
        linear = first[0]
        widths = np.cumsum([0] + [int(e.embedding_dim) for e in model.embeds])
        weight = linear.weight.detach()
        with torch.inference_mode():
            items = model.embeds[item_col].weight.detach()
            item_part = items @ weight[:, widths[item_col] : widths[item_col + 1]].T
            self.item_part = item_part + linear.bias.detach() if linear.bias is not None else item_part
        self.user_weight = weight[:, widths[user_col] : widths[user_col + 1]]
        self.user_embeddings = model.embeds[user_col].weight.detach()
        # The same module objects (eval mode as served), after the split Linear.
        self.after = nn.Sequential(*list(first)[1:], *list(model.layers)[1:])

    @staticmethod
    def fits(model: Any) -> bool:
        """A `TabularModel` over the two embeddings alone whose first layer starts with its `Linear`
        (fastai's `lin_first`, the default); any other shape ranks by full forwards."""
        from torch import nn

        layers = getattr(model, "layers", None)
        embeds = getattr(model, "embeds", None)
        if not isinstance(layers, nn.Sequential) or not isinstance(embeds, nn.ModuleList) or len(embeds) != 2:
            return False
        first = layers[0] if len(layers) else None
        return (
            getattr(model, "n_cont", 1) == 0
            and isinstance(first, nn.Sequential)
            and len(first) > 0
            and isinstance(first[0], nn.Linear)
        )

    def all_items(self, user: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            hidden = self.item_part + self.user_weight @ self.user_embeddings[user]
            return _plain_numpy(self.after(hidden)).reshape(-1)


def _times(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector on this thread alone: BLAS's own threads (numpy's OpenBLAS) would wait for cores
    that torch's threads spin on in the same process, 100x slower under load (measured: 22 ms against
    0.2 ms for 10,000 x 50)."""
    return np.asarray(np.einsum("ij,j->i", matrix, vector))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero: similar to nothing)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0))


def _best(scores: np.ndarray, candidates: np.ndarray, count: int) -> np.ndarray:
    """The `count` candidates with the highest scores, best first (ties: lower code first)."""
    k = min(count, len(candidates))
    if k == 0:
        return candidates[:0]
    values = scores[candidates]
    top = np.argpartition(-values, k - 1)[:k] if k < len(candidates) else np.arange(len(candidates))
    order = np.lexsort((candidates[top], -values[top]))
    return np.asarray(candidates[top][order])


def read_titles(path: Path, items: IdSpace) -> dict[int, str]:
    """Titles by item code from `items.csv` (first column the item id, a `title` column; other columns and
    ids the learner does not know are ignored); LoadError saying what is wrong with the file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [h.strip() for h in next(reader, [])]
            if TITLE_COLUMN not in header[1:]:
                reason = f"no `{TITLE_COLUMN}` column after the id column (columns: {header})"
                raise LoadError(MSG_COLLAB_ITEMS_FILE.format(file=path.name, reason=reason))
            where = header.index(TITLE_COLUMN, 1)
            titles: dict[int, str] = {}
            for row in reader:
                if len(row) > where and (code := items.code(row[0])):
                    titles.setdefault(code, row[where])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = f"not a readable CSV ({type(exc).__name__}: {exc})"
        raise LoadError(MSG_COLLAB_ITEMS_FILE.format(file=path.name, reason=reason)) from None
    return titles


class CollabPredictor(HeadFacts):
    """Rates (user, item) pairs with a collab learner's model, and ranks its items (a `Predictor`)."""

    kind: ClassVar[ModelKind] = ModelKind.COLLAB

    def __init__(self, learn: Any, *, items_file: Path | None = None) -> None:
        from fastai.collab import EmbeddingDotBias

        model, dls = learn.model, learn.dls
        names = [str(n) for n in dls.cat_names]
        if len(names) != 2:
            raise LoadError(MSG_COLLAB_TWO_COLUMNS.format(count=len(names), names=names))
        user, item = str(getattr(model, "user", names[0])), str(getattr(model, "item", names[1]))
        self.users = IdSpace.of("user", user, dls.classes[user])
        self.items = IdSpace.of("item", item, dls.classes[item])
        y_names = [str(n) for n in getattr(dls, "y_names", []) or []]
        # The head, typed as a rating's (the protocol's `head` is any task's).
        self.rating = RatingHead(y_names[0] if y_names else "rating", _rating_range(model))
        self.head: AnyHead = self.rating
        # The forward under the pairs: torch, until `runtime.select_runtime` puts ONNX Runtime here.
        self.runtime: ModelRuntime = TorchModel(learn, input_names=("x",))
        dot = isinstance(model, EmbeddingDotBias)
        self._dot = _DotScores(model, self.rating.rating_range) if dot else None
        split = not dot and _SplitFirstLayer.fits(model)
        self._split = (
            _SplitFirstLayer(model, user_col=names.index(user), item_col=names.index(item)) if split else None
        )
        item_embeddings = model.i_weight.weight if dot else model.embeds[names.index(item)].weight
        self._item_units = _unit_rows(_plain_numpy(item_embeddings))
        self.titles = read_titles(items_file, self.items) if items_file is not None else {}

    @property
    def fast_path(self) -> bool:
        return True

    def input_schema(self) -> dict[str, Any]:
        return {
            "user": {"name": self.users.column, "count": self.users.count},
            "item": {"name": self.items.column, "count": self.items.count, "titles": len(self.titles)},
            "rating": self.rating.target,
            "rating_range": list(self.rating.rating_range) if self.rating.rating_range else None,
        }

    def pair_json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of one (user, item) pair, with a few known ids as examples."""

        def id_schema(ids: IdSpace) -> dict[str, Any]:
            return {
                "anyOf": [{"type": "string"}, {"type": "integer"}],
                "description": f"a {ids.side} the learner knows ({ids.column}: {ids.count} of them); "
                "any other gives a null rating and a warning",
                "examples": ids.ids[1:6],
            }

        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "CollabPair",
            "type": "object",
            "properties": {"user": id_schema(self.users), "item": id_schema(self.items)},
            "required": ["user", "item"],
            "additionalProperties": False,
        }

    # -- pairs -----------------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[Any, Any]]) -> list[AnyPrediction]:
        """Rate every pair in one batch (what the routes do through the batcher)."""
        prepared = self.prepare(pairs)
        return self.finish(prepared, self.forward_many([prepared])[0])

    def prepare(self, pairs: Sequence[tuple[Any, Any]]) -> PreparedPairs:
        """Ids to codes; an id the learner does not know gets code 0 and a warning (never the model)."""
        users, items = [p[0] for p in pairs], [p[1] for p in pairs]
        notes: defaultdict[int, list[str]] = defaultdict(list)
        codes = np.stack([self.users.codes(users, notes), self.items.codes(items, notes)], axis=1)
        return PreparedPairs(codes.reshape(-1, 2), users, items, dict(notes))

    def prepare_chunk(self, chunk: CsvChunk, *, filename: str) -> PreparedPairs:
        """A run of CSV rows with the user and item columns, resolved a column at a time in Arrow."""
        missing = [c for c in (self.users.column, self.items.column) if c not in chunk.names]
        if missing:
            raise InvalidInput(
                MSG_CSV_MISSING_COLUMNS.format(filename=filename, columns=", ".join(missing)),
                [{"loc": ["file", c], "msg": "column missing", "type": "missing"} for c in missing],
            )
        users, items = chunk.column(self.users.column), chunk.column(self.items.column)
        notes: defaultdict[int, list[str]] = defaultdict(list)
        codes = np.stack([self.users.cell_codes(users, notes), self.items.cell_codes(items, notes)], axis=1)
        return PreparedPairs(codes.reshape(-1, 2), users, items, dict(notes))

    def forward_many(self, batch: list[PreparedPairs | PreparedRanking]) -> list[np.ndarray]:
        """One model call for every known pair of the batch's requests (each gets its own (n, 1) rows: 0
        for a pair the learner cannot rate, which `finish` turns into None); a ranking request gets every
        item's score, (items, 1)."""
        pairs = [p for p in batch if isinstance(p, PreparedPairs)]
        known = [p.codes[p.known] for p in pairs]
        rated = self._rate(np.concatenate(known)) if known else np.zeros(0, np.float32)
        results, start = [], 0
        for prepared in batch:
            if isinstance(prepared, PreparedRanking):
                results.append(self._all_items(prepared.user).reshape(-1, 1))
                continue
            out = np.zeros((prepared.n, 1), dtype=np.float32)
            mask = prepared.known
            count = int(mask.sum())
            out[mask, 0] = rated[start : start + count]
            start += count
            results.append(out)
        return results

    def ratings(self, prepared: PreparedPairs, outputs: np.ndarray) -> np.ndarray:
        """The request's (n, 1) ratings, NaN where the learner does not know the user or the item (the
        CSV and evaluation doors' form; the batcher itself never sees a NaN)."""
        out = np.asarray(outputs, dtype=np.float32).reshape(-1, 1).copy()
        out[~prepared.known, 0] = np.nan
        return out

    def finish(
        self, prepared: PreparedPairs, outputs: np.ndarray, *, threshold: float | None = None
    ) -> list[AnyPrediction]:
        predictions = self.rating.decode(self.ratings(prepared, outputs), prepared.warnings)
        users, items = prepared.users, prepared.items
        sent_users = users.to_pylist() if isinstance(users, pa.Array) else users
        sent_items = items.to_pylist() if isinstance(items, pa.Array) else items
        titles = self.titles
        for p, user, item, code in zip(
            predictions, sent_users, sent_items, prepared.codes[:, 1], strict=True
        ):
            p.user, p.item = user, item
            p.title = titles.get(int(code)) if titles else None
        return list(predictions)

    def _rate(self, codes: np.ndarray) -> np.ndarray:
        import torch

        if not len(codes):
            return np.zeros(0, np.float32)
        return np.asarray(self.runtime.outputs(torch.from_numpy(codes)), dtype=np.float32).reshape(-1)

    def _all_items(self, user: int) -> np.ndarray:
        """Every item's rating by `user` (code 0 included; ranking leaves it out) in one pass."""
        if self._dot is not None:
            return self._dot.all_items(user)
        if self._split is not None:
            return self._split.all_items(user)
        every = np.arange(len(self.items.ids), dtype=np.int64)
        return self._rate(np.stack([np.full_like(every, user), every], axis=1))

    # -- rankings --------------------------------------------------------------------------------------
    def prepare_recommend(self, user: Any, *, count: int, exclude: Sequence[Any] = ()) -> PreparedRanking:
        """NotFound (404) for a user the learner does not know: it has nothing to rank for them."""
        code = self.users.code(user)
        if not code:
            raise NotFound(
                MSG_COLLAB_UNKNOWN_USER.format(value=user, column=self.users.column, count=self.users.count)
            )
        excluded, notes = [], []
        for value in exclude:
            item = self.items.code(value)
            if item:
                excluded.append(item)
            else:
                notes.append(MSG_COLLAB_EXCLUDE_UNKNOWN.format(value=value))
        return PreparedRanking(code, self.users.ids[code], count, np.asarray(excluded, np.int64), notes)

    def recommended(self, prepared: PreparedRanking, scores: np.ndarray) -> list[RankedItem]:
        """The best-scored items of a ranking's forward, `#na#` and the excluded items left out."""
        values = np.asarray(scores, dtype=np.float32).reshape(-1)
        allowed = np.ones(len(values), dtype=bool)
        allowed[0] = False
        allowed[prepared.excluded] = False
        return self._ranked(values, np.flatnonzero(allowed), prepared.count)

    def recommend(self, user: Any, *, count: int, exclude: Sequence[Any] = ()) -> list[RankedItem]:
        """The `count` items with the highest predicted rating for `user` (not through a batcher)."""
        prepared = self.prepare_recommend(user, count=count, exclude=exclude)
        return self.recommended(prepared, self.forward_many([prepared])[0])

    def similar(self, item: Any, *, count: int) -> tuple[Id, list[RankedItem]]:
        """The item's id and the `count` items whose embeddings are closest to its own by cosine
        similarity (itself and `#na#` left out); NotFound (404) for an item the learner does not know."""
        code = self.items.code(item)
        if not code:
            raise NotFound(
                MSG_COLLAB_UNKNOWN_ITEM.format(value=item, column=self.items.column, count=self.items.count)
            )
        units = self._item_units
        similarity = _times(units, units[code])
        allowed = np.ones(len(similarity), dtype=bool)
        allowed[[0, code]] = False
        return self.items.ids[code], self._ranked(similarity, np.flatnonzero(allowed), count)

    def title(self, item: Any) -> str | None:
        """The item's title from items.csv, None when it has none."""
        return self.titles.get(self.items.code(item))

    def _ranked(self, values: np.ndarray, candidates: np.ndarray, count: int) -> list[RankedItem]:
        ids, titles = self.items.ids, self.titles
        return [
            RankedItem(ids[c], float(values[c]), titles.get(c))
            for c in _best(values, candidates, count).tolist()
        ]

    # -- checks at load ------------------------------------------------------------------------------------
    def _check_pair(self) -> tuple[Id, Id]:
        return self.users.ids[1], self.items.ids[1]

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """The self-check pair, then 64 random known pairs."""
        import torch

        generator = torch.Generator().manual_seed(0)
        n = 64
        users = torch.randint(1, len(self.users.ids), (n,), generator=generator)
        items = torch.randint(1, len(self.items.ids), (n,), generator=generator)
        check = torch.tensor([[1, 1]], dtype=torch.int64)
        return [(check,), (torch.stack([users, items], dim=1),)]

    def self_check(self) -> None:
        """Rate one pair (the first user and item the learner knows); the head checks it is a rating."""
        prepared = self.prepare([self._check_pair()])
        outputs = self.forward_many([prepared])[0]
        self.head.check(outputs)
        self.finish(prepared, outputs)
