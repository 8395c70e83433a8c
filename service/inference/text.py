"""Text classifiers (`text_classifier_learner`): tokenise with the learner's own objects, batch so that
padding never changes an answer, and decode through the task's head.

Preprocessing is the learner's: its `Tokenizer` (the tokeniser it was trained with, e.g. `SpacyTokenizer`
over spaCy's blank English, and its rules) and its `Numericalize` vocab, both read from the train dataset's
transforms (`learn.dls.train_ds.tls[0]`), never re-created. Ids are looked up in `Numericalize.o2i` without
writing to it: fastai's `o2i[token]` on its `defaultdict` would add every unknown token a client ever sends
to the learner's vocab dictionary (memory that only grows, and a dict mutated from several threads).

Batching. The reference is `learn.get_preds(dl=learn.dls.test_dl([text]))`: a text alone, no padding. fastai's
own batching (`pad_input_chunk`: pad first in whole chunks of `seq_len`, the remainder at the end, rows sorted
by length) is not neutral. Measured on the tiny AWD_LSTM classifiers of the tests (seq_len 8, max_len 40), 19
texts of 2 to 61 tokens in one `test_dl` batch differed from each text alone by up to 7.1e-3 (single-label)
and 9.1e-3 (multi-label) in probability, for 9 of the 19 texts, from three causes in `SentenceEncoder` and
`masked_concat_pool`: a text shorter than `bptt` reads its "last hidden" state from a leading pad position
(the last `bptt` positions hold leading pads too); a longer row whose remainder pads cover a chunk's first
position sits before rows still running, so `input[:real_bs]` runs the wrong rows for that chunk; and a text
near or past `max_len` has other chunks pooled, since only the last `max_len` positions of the *batch's*
length are kept. Served this way (below), the same texts in any composition differ from fastai alone by at
most 3e-8.

What is provably neutral, from `SentenceEncoder` and `masked_concat_pool`: pad each text at its end only, and
put texts in one micro-batch only when (1) the longest minus each text's length is at most `bptt` (then the
pads in the last `bptt` positions are exactly its trailing pads and `masked_concat_pool`'s "last hidden"
index lands on its last token), (2) the first chunk `SentenceEncoder` keeps under `max_len` is the same for
the batch's length as for the text's own (then exactly the same chunks are pooled), and (3) rows are sorted by
length, longest first (`SentenceEncoder` runs each chunk on the rows that have not ended). The LSTM is causal,
so trailing pads never reach a text's own positions; the mask keeps them out of the max and mean pools. A text
holding the pad token itself runs alone, exactly as fastai runs it. Every group is one forward; answers are
put back in request order.

Runtime. The forward (model + the loss's activation) is a `TorchModel` on the padded id tensors; ONNX Runtime
replaces it only through `runtime.select_runtime`'s parity gate. A traced export of AWD_LSTM's
`SentenceEncoder` unrolls its chunk loop (and `real_bs`) for the example's length, so it cannot serve other
lengths: `parity_inputs` holds two lengths, the gate refuses it, and torch serves with that reason recorded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from service.errors import (
    MSG_TEXT_EMPTY,
    MSG_TEXT_INVALID,
    MSG_TEXT_NO_ENCODER,
    MSG_TEXT_NO_TOKENIZER,
    MSG_TEXT_UNKNOWN_TOKENS,
    InvalidInput,
    LoadError,
)
from service.inference.predictor import ModelKind, split_rows
from service.inference.runtime import ModelRuntime, TorchModel
from service.inference.tasks import AnyHead, AnyPrediction, Decoding, HeadFacts

# Texts per forward at most: a micro-batch's group is cut here (the batcher already bounds a batch's items).
MAX_GROUP = 256


@dataclass(frozen=True)
class PreparedTexts:
    """One request's texts as the learner's token ids, with each text's warnings."""

    ids: list[np.ndarray]
    notes: list[list[str]]
    tokens: list[list[str]] | None = None  # fastai's tokens of each text (unknown ones as written)
    texts: list[str] | None = None  # the texts as sent (the payload log's)

    @property
    def n(self) -> int:
        return len(self.ids)


def _first_output(model: Any) -> Any:
    """The classifier's logits: fastai's text model returns (logits, raw outputs, outputs), which its
    `RNNCallback` cuts to the first for `get_preds`; a runtime wants one tensor."""
    import torch

    module: Any = torch.nn.Module

    class FirstOutput(module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            return out[0] if isinstance(out, tuple | list) else out

    return FirstOutput(model).train(model.training)


def _text_tfms(learn: Any) -> tuple[Any, Any]:
    """The learner's own `Tokenizer` and `Numericalize` (the TextBlock's transforms of its input)."""
    from fastai.text.core import Tokenizer
    from fastai.text.data import Numericalize

    tls = list(getattr(getattr(learn.dls, "train_ds", None), "tls", []) or [])
    fs = list(tls[0].tfms.fs) if tls else []
    tokenizers = [f for f in fs if isinstance(f, Tokenizer)]
    numericalizers = [f for f in fs if isinstance(f, Numericalize) and getattr(f, "o2i", None) is not None]
    if len(tokenizers) != 1 or len(numericalizers) != 1:
        raise LoadError(MSG_TEXT_NO_TOKENIZER.format(found=[type(f).__name__ for f in fs] or "none"))
    return tokenizers[0], numericalizers[0]


# The target column an evaluation CSV names when the learner's own `ColReader` does not say.
DEFAULT_TARGET = "label"


def _target_column(learn: Any) -> str:
    """The column the learner read its target from (`ColReader('label')` of `TextDataLoaders.from_df`)."""
    from fastai.data.transforms import ColReader

    tls = list(getattr(getattr(learn.dls, "train_ds", None), "tls", []) or [])
    for tfm in tls[-1].tfms.fs if len(tls) > 1 else []:
        if isinstance(tfm, ColReader):
            cols = [tfm.cols] if isinstance(tfm.cols, str | int) else list(tfm.cols)
            if len(cols) == 1 and isinstance(cols[0], str):
                return cols[0]
    return DEFAULT_TARGET


def _first_kept(length: int, *, bptt: int, max_len: int | None) -> int:
    """The first chunk (its start) `SentenceEncoder` pools for a sequence of `length`: chunks start at
    multiples of `bptt` and are kept when `length - start <= max_len`."""
    if max_len is None or length <= max_len:
        return 0
    return math.ceil((length - max_len) / bptt) * bptt


def neutral_groups(
    lengths: Sequence[int],
    *,
    bptt: int,
    pool_bptt: int,
    max_len: int | None,
    alone: Sequence[bool] = (),
    max_group: int = MAX_GROUP,
) -> list[list[int]]:
    """Indices of `lengths` in micro-batches whose trailing padding changes no member's answer (see the
    module's docstring), each longest first; `alone[i]` puts text i in a group of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    slack = min(bptt, pool_bptt)
    groups: list[list[int]] = []
    for i in order:
        if alone and alone[i]:
            groups.append([i])
            continue
        group = groups[-1] if groups else None
        if group is not None and len(group) < max_group and not (alone and alone[group[0]]):
            longest = lengths[group[0]]
            same_chunks = _first_kept(longest, bptt=bptt, max_len=max_len) == _first_kept(
                lengths[i], bptt=bptt, max_len=max_len
            )
            if longest - lengths[i] <= slack and same_chunks:
                group.append(i)
                continue
        groups.append([i])
    return groups


def unknown_share(share: float) -> str:
    """A share as a warning says it: whole percent, or "<1%" for a few tokens among many."""
    percent = share * 100
    return f"{percent:.0f}%" if percent >= 1 else "<1%"


class TextPredictor(HeadFacts):
    """Tokenises texts with the learner's own objects and predicts them in padding-neutral micro-batches
    (a `Predictor`)."""

    kind: ClassVar[ModelKind] = ModelKind.TEXT
    fast_path = True  # the learner's tokeniser and vocab run here; only the forward is the runtime's

    def __init__(self, learn: Any, *, head: AnyHead) -> None:
        self.head: AnyHead = head
        self._tokenizer, numericalize = _text_tfms(learn)
        self._rules: Callable[[str], str] = _compose(self._tokenizer.rules)
        # spaCy does not promise a thread-safe tokenizer (it caches as it goes); requests prepare in threads.
        self._tokenizer_lock = threading.Lock()
        self.vocab: list[str] = [str(t) for t in numericalize.vocab]
        self._o2i: dict[str, int] = numericalize.o2i
        factory = getattr(self._o2i, "default_factory", None)
        self.unk_idx = int(factory()) if factory is not None else 0
        self.target_column = _target_column(learn)
        from fastai.text.models.core import SentenceEncoder

        encoder, classifier = learn.model[0], learn.model[-1]
        if len(learn.model) != 2 or not isinstance(encoder, SentenceEncoder):
            found = " -> ".join(type(m).__name__ for m in learn.model)
            raise LoadError(MSG_TEXT_NO_ENCODER.format(found=found))
        self.pad_idx = int(getattr(encoder, "pad_idx", 1))
        self.bptt = int(encoder.bptt)
        self.pool_bptt = int(getattr(classifier, "bptt", self.bptt))
        max_len = getattr(encoder, "max_len", None)
        self.max_len = None if max_len is None else int(max_len)
        # fastai's special tokens (xxbos, xxmaj, ...) are always known: they are not counted as the text's.
        from fastai.text.core import UNK, defaults

        special = set(getattr(numericalize, "special_toks", None) or defaults.text_spec_tok) - {UNK}
        self._special_ids = np.array(sorted(self._o2i[t] for t in special if t in self._o2i), dtype=np.int64)
        forward = SimpleNamespace(model=_first_output(learn.model), loss_func=learn.loss_func)
        self._torch = TorchModel(forward, input_names=("x",))
        # The forward under the learner's preprocessing: torch, until `runtime.select_runtime` puts ONNX
        # Runtime here.
        self.runtime: ModelRuntime = self._torch

    # -- what a client sends -------------------------------------------------------------------------------
    def input_schema(self) -> dict[str, Any]:
        tok = self._tokenizer.tok
        return {
            "task": self.head.task.value,
            "tokenizer": type(tok).__name__,
            "lang": getattr(getattr(getattr(tok, "pipe", None), "__self__", None), "lang", None),
            "vocab_size": len(self.vocab),
            "max_len": self.max_len,
            "seq_len": self.bptt,
        }

    def text_json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of one input: a text with something besides whitespace."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "text",
            "type": "string",
            "minLength": 1,
            "pattern": "\\S",
            "description": (
                f"one text, tokenised by the learner's {type(self._tokenizer.tok).__name__} into its "
                f"{len(self.vocab)}-token vocabulary (unknown tokens become xxunk, with a warning)"
            ),
        }

    # -- the three steps -----------------------------------------------------------------------------------
    def prepare(self, texts: Sequence[Any], *, where: Sequence[Any] = ("texts",)) -> PreparedTexts:
        """Each text as the learner's token ids; 422 naming every empty, whitespace-only or non-text item
        (`where`: the location its errors start with)."""
        errors = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                errors.append({"loc": [*where, i], "msg": "not a text", "type": "string_type"})
            elif not text.strip():
                errors.append({"loc": [*where, i], "msg": "empty or whitespace-only text", "type": "empty"})
        if errors:
            indices = ", ".join(str(e["loc"][-1]) for e in errors[:20])
            empty = all(e["type"] == "empty" for e in errors)
            message = MSG_TEXT_EMPTY if empty else MSG_TEXT_INVALID
            raise InvalidInput(message.format(count=len(errors), indices=indices), errors)
        return self.encode(list(texts))

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """The learner's `Tokenizer`: its rules, then its tokeniser, as `Tokenizer.encodes` runs them."""
        ruled = [self._rules(t) for t in texts]
        with self._tokenizer_lock:
            return [list(tokens) for tokens in self._tokenizer.tok(ruled)]

    def special(self, ids: np.ndarray) -> np.ndarray:
        """Which of these ids are fastai's special tokens (xxbos, xxmaj, ...), xxunk aside."""
        return np.isin(ids, self._special_ids)

    @property
    def torch_model(self) -> TorchModel:
        """The learner's model in torch, whatever runtime serves: what explanations differentiate."""
        return self._torch

    def encode(self, texts: list[str]) -> PreparedTexts:
        """The learner's `Tokenizer` (its rules, then its tokeniser, as `Tokenizer.encodes` runs them), then
        its vocab's ids, as `Numericalize.encodes` gives them."""
        o2i, unk = self._o2i, self.unk_idx
        ids, notes = [], []
        tokenized = self.tokenize(texts)
        for tokens in tokenized:
            encoded = np.fromiter((o2i.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))
            ids.append(encoded)
            notes.append(self._warnings(encoded))
        return PreparedTexts(ids, notes, tokenized, texts)

    def _warnings(self, ids: np.ndarray) -> list[str]:
        own = ids[~self.special(ids)]
        unknown = int((own == self.unk_idx).sum())
        if not unknown:
            return []
        return [MSG_TEXT_UNKNOWN_TOKENS.format(share=unknown_share(unknown / len(own)))]

    def forward_many(self, batch: list[PreparedTexts]) -> list[np.ndarray]:
        """One call for several requests: their texts in padding-neutral groups, each group one forward,
        answers back in order."""
        ids = [x for prepared in batch for x in prepared.ids]
        outputs = self._forward(ids)
        return split_rows(outputs, [prepared.n for prepared in batch])

    def finish(
        self, prepared: PreparedTexts, outputs: np.ndarray, *, threshold: float | None = None
    ) -> list[AnyPrediction]:
        return list(self.head.decode(outputs, prepared.notes, Decoding(threshold=threshold)))

    def predict(self, texts: list[str]) -> list[AnyPrediction]:
        """prepare → forward → finish in the calling thread (in-process use; the server batches)."""
        prepared = self.prepare(texts)
        return self.finish(prepared, self.forward_many([prepared])[0])

    def groups(self, ids: Sequence[np.ndarray]) -> list[list[int]]:
        """How `forward_many` cuts these texts into forwards (indices, longest first)."""
        pad = self.pad_idx
        return neutral_groups(
            [len(x) for x in ids],
            bptt=self.bptt,
            pool_bptt=self.pool_bptt,
            max_len=self.max_len,
            alone=[bool((x == pad).any()) for x in ids],
        )

    def _forward(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        outputs: np.ndarray | None = None
        for group in self.groups(ids):
            out = self.runtime.outputs(self.padded([ids[i] for i in group]))
            if outputs is None:
                outputs = np.empty((len(ids), out.shape[1]), dtype=np.float32)
            outputs[group] = out
        assert outputs is not None
        return outputs

    def padded(self, ids: Sequence[np.ndarray]) -> Any:
        """Texts (longest first) as one (n, longest) int64 tensor, padded at their ends."""
        import torch

        width = max(len(x) for x in ids)
        rows = np.full((len(ids), width), self.pad_idx, dtype=np.int64)
        for row, x in zip(rows, ids, strict=True):
            row[: len(x)] = x
        return torch.from_numpy(rows)

    # -- load-time checks ----------------------------------------------------------------------------------
    def _check_text(self) -> str:
        """A text of the learner's own words: the first few non-special tokens of its vocab."""
        words = [t for t in self.vocab if not t.startswith("xx")][:6]
        return " ".join(words) or "text"

    def self_check(self) -> None:
        """Predict one text made of the learner's own vocabulary."""
        prepared = self.encode([self._check_text()])
        outputs = self.forward_many([prepared])[0]
        self.head.check(outputs)
        self.finish(prepared, outputs)

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """The self-check text encoded, then a seeded random micro-batch of another length, spanning several
        `bptt` chunks with rows that end in different chunks: a runtime must handle every length and the
        rows `SentenceEncoder` drops as they end, not the one shape it was exported with (a traced export
        unrolls the chunk loop for its example's length, so it fails here and torch serves)."""
        import torch

        check = self.padded(self.encode([self._check_text()]).ids)
        longest = 2 * self.bptt + 3
        if longest == check.shape[1]:
            longest += 1
        lengths = sorted({longest, longest - self.bptt // 2, longest - self.bptt}, reverse=True)
        generator = torch.Generator().manual_seed(0)
        low = min(2, len(self.vocab) - 1)  # past xxunk and xxpad, fastai's first two tokens
        rows = [torch.randint(low, len(self.vocab), (n,), generator=generator).numpy() for n in lengths]
        rows = [np.where(r == self.pad_idx, self.unk_idx, r).astype(np.int64) for r in rows]
        return [(check,), (self.padded(rows),)]


def _compose(rules: Sequence[Callable[[str], str]]) -> Callable[[str], str]:
    """fastai's `compose(*rules)`: each rule in order (what `Tokenizer._tokenize1` applies)."""
    from fastcore.basics import compose

    composed: Callable[[str], str] = compose(*rules)
    return composed
