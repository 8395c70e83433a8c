"""Text classifiers are served the learner's way: each text's probabilities equal fastai's own
`get_preds(dl=test_dl([text]), with_decoded=True)` (≤ 1e-4, decoded labels equal) whatever texts share its
micro-batch and in whatever order, on every runtime that loads; fastai's own batching would not give that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import MSG_TEXT_UNKNOWN_TOKENS, InvalidInput
from service.inference.kinds import predictor_for, recognise
from service.inference.runtime import RuntimeOptions, RuntimeSetting, select_runtime
from service.inference.tasks import Task
from service.inference.text import TextPredictor, neutral_groups
from service.loading import load_exported_learner
from tests.tiny_text import MAX_LEN, SEQ_LEN, TEXT_CLS, TEXT_MODELS, TEXT_MULTI, varied_texts

TOLERANCE = 1e-4
TASKS = {TEXT_CLS: Task.CLASSIFICATION, TEXT_MULTI: Task.MULTI_LABEL}


def _learner(store: Path, name: str) -> Any:
    return load_exported_learner(store / name / "model.pkl").learn


def _alone(learn: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """fastai's activated outputs and decoded predictions, each text in a test_dl of its own."""
    outputs, decoded = [], []
    for text in texts:
        with learn.no_bar():
            out, _, dec = learn.get_preds(dl=learn.dls.test_dl([text], num_workers=0), with_decoded=True)
        outputs.append(out.numpy()[0])
        decoded.append(dec.numpy()[0])
    return np.stack(outputs), np.stack(decoded)


def _compositions(n: int) -> list[list[list[int]]]:
    """Ways to send n texts: requests (lists of indices) that share one `forward_many`."""
    rng = np.random.default_rng(0)
    everything = list(range(n))
    ways = [[everything], [everything[::-1]], [[i] for i in everything]]
    for _ in range(4):
        order = [int(i) for i in rng.permutation(n)]
        cuts = sorted(int(c) for c in rng.choice(np.arange(1, n), size=3, replace=False))
        ways.append([order[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)])
    ways.append([[0, n - 1], [1, n - 2], [n // 2]])  # a one-token text beside the longest ones
    return ways


def _check_every_composition(
    predictor: TextPredictor, texts: list[str], reference: np.ndarray, decoded: np.ndarray
) -> None:
    for requests in _compositions(len(texts)):
        prepared = [predictor.prepare([texts[i] for i in request]) for request in requests]
        for request, part, outputs in zip(requests, prepared, predictor.forward_many(prepared), strict=True):
            gap = float(np.abs(outputs - reference[request]).max())
            assert gap <= TOLERANCE, (requests, gap)
            predictions = predictor.finish(part, outputs)
            if predictor.head.task is Task.CLASSIFICATION:
                labels = [predictor.classes[int(d)] for d in decoded[request]]
                assert [p.label for p in predictions] == labels  # type: ignore[union-attr]
            else:
                flags = [
                    [c for c, on in zip(predictor.classes, row, strict=True) if on]
                    for row in decoded[request]
                ]
                assert [p.labels for p in predictions] == flags  # type: ignore[union-attr]


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_each_text_equals_fastai_alone_in_any_batch_on_every_runtime(
    name: str, text_store: Path, tmp_path: Path
) -> None:
    learn = _learner(text_store, name)
    assert recognise(learn).task is TASKS[name]
    predictor = predictor_for(learn)
    assert isinstance(predictor, TextPredictor)
    texts = varied_texts()
    reference, decoded = _alone(learn, texts)
    assert predictor.runtime.name == "torch"
    _check_every_composition(predictor, texts, reference, decoded)
    # ONNX Runtime where its parity gate passes, torch with the reason otherwise; either way, exact.
    choice = select_runtime(predictor, RuntimeOptions(RuntimeSetting.AUTO, tmp_path / "onnx"), sha256=None)
    assert predictor.runtime.name == choice.name
    if choice.name == "torch":
        assert "ONNX" in choice.note, choice.note
    _check_every_composition(predictor, texts, reference, decoded)


def test_fastais_own_batching_is_not_neutral_which_is_why_texts_are_grouped(text_store: Path) -> None:
    """What the grouping exists for: one `test_dl` over texts of different lengths (`pad_input_chunk`)
    differs from each text alone."""
    learn = _learner(text_store, TEXT_CLS)
    texts = varied_texts()
    alone, _ = _alone(learn, texts)
    with learn.no_bar():
        together, _ = learn.get_preds(dl=learn.dls.test_dl(texts, num_workers=0, bs=64))
    assert float(np.abs(together.numpy() - alone).max()) > TOLERANCE


def test_groups_are_padding_neutral() -> None:
    lengths = [1, 2, 3, 7, 8, 9, 15, 16, 17, 39, 40, 41, 44, 47, 48, 49, 60, 61, 100]
    groups = neutral_groups(
        lengths, bptt=SEQ_LEN, pool_bptt=SEQ_LEN, max_len=MAX_LEN, alone=[False] * 18 + [True]
    )
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [18] in groups
    for group in groups:
        sizes = [lengths[i] for i in group]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[0] - sizes[-1] <= SEQ_LEN
        # Past max_len, members share the first chunk SentenceEncoder keeps: 41 (keeps from 8) never
        # travels with 40 (keeps from 0).
        assert not ({40, 41} <= set(sizes))


def test_unknown_tokens_become_a_warning_and_never_grow_the_vocab(text_store: Path) -> None:
    predictor = predictor_for(_learner(text_store, TEXT_CLS))
    assert isinstance(predictor, TextPredictor)
    before = len(predictor._o2i)
    known, unknown, half = predictor.prepare(["the movie was good", "zyzzyva qwxvbn", "the zyzzyva"]).notes
    assert known == []
    assert unknown == [MSG_TEXT_UNKNOWN_TOKENS.format(share="100%")]
    assert half == [MSG_TEXT_UNKNOWN_TOKENS.format(share="50%")]
    assert len(predictor._o2i) == before  # fastai's `o2i[token]` would have added both unknown words


def test_empty_and_whitespace_texts_are_refused_by_index(text_store: Path) -> None:
    predictor = predictor_for(_learner(text_store, TEXT_MULTI))
    with pytest.raises(InvalidInput) as refused:
        predictor.prepare(["fine", "", " \n\t"])
    assert [e["loc"] for e in refused.value.errors] == [["texts", 1], ["texts", 2]]
    assert "index 1, 2" in refused.value.detail
