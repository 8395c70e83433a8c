"""Tiny real text classifiers (fastai's `text_classifier_learner` over AWD_LSTM, a tiny config, no pretrained
weights), built as a notebook would in seconds: single-label and multi-label. A short `seq_len` (8) and
`max_len` (40) make texts of a few dozen tokens span several chunks and overflow `max_len`, so the batching
that must not change an answer is exercised. `conftest.py` builds them once per session into a store."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TEXT_CLS = "reviews-sentiment"  # text classification: pos / neg
TEXT_MULTI = "reviews-tags"  # text multi-label: pos / neg and `long`
TEXT_MODELS = [TEXT_CLS, TEXT_MULTI]
SEQ_LEN = 8
MAX_LEN = 40

POSITIVE = ["good", "great", "lovely", "excellent", "nice", "fine"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "boring", "dull"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "film", "plot", "acting", "and", "story", "it"]
LONG = 12  # words: a sentence at least this long is also tagged `long`


def sentences(n: int = 48, *, seed: int = 0) -> pd.DataFrame:
    """`n` synthetic reviews: `text`, its sentiment `label`, and `tags` (the sentiment; `long` too)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        cue = POSITIVE if label == "pos" else NEGATIVE
        words = [*rng.choice(FILLER, size=int(rng.integers(2, 16))), *rng.choice(cue, size=2)]
        rng.shuffle(words)
        text = " ".join(str(w) for w in words)
        text = text[0].upper() + text[1:] + "."
        tags = label + (";long" if len(words) >= LONG else "")
        rows.append({"text": text, "label": label, "tags": tags})
    return pd.DataFrame(rows)


def _learner(
    frame: pd.DataFrame, *, label_col: str, label_delim: str | None = None, y_block: Any = None
) -> Any:
    from fastai.callback.progress import ProgressCallback
    from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner
    from fastai.torch_core import set_seed

    set_seed(0, reproducible=True)
    dls = TextDataLoaders.from_df(
        frame,
        text_col="text",
        label_col=label_col,
        label_delim=label_delim,
        y_block=y_block,
        valid_pct=0.2,
        seed=0,
        bs=8,
        seq_len=SEQ_LEN,
    )
    config = {
        "emb_sz": 16,
        "n_hid": 16,
        "n_layers": 1,
        "pad_token": 1,
        "bidir": False,
        "output_p": 0.1,
        "hidden_p": 0.1,
        "input_p": 0.1,
        "embed_p": 0.0,
        "weight_p": 0.1,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = text_classifier_learner(
            dls, AWD_LSTM, config=config, pretrained=False, seq_len=SEQ_LEN, max_len=MAX_LEN
        )
        if ProgressCallback in [type(cb) for cb in learn.cbs]:
            learn.remove_cb(ProgressCallback)
        learn.logger = lambda *args: None
        learn.fit_one_cycle(1, 1e-2)
    return learn


def text_classifier(frame: pd.DataFrame) -> Any:
    return _learner(frame, label_col="label")


def text_multi_label(frame: pd.DataFrame) -> Any:
    from fastai.data.block import MultiCategoryBlock

    return _learner(frame, label_col="tags", label_delim=";", y_block=MultiCategoryBlock)


def build_text_learners(store: Path) -> None:
    """Both tiny text learners exported into `store/<name>/model.pkl`."""
    frame = sentences()
    for name, build in {TEXT_CLS: text_classifier, TEXT_MULTI: text_multi_label}.items():
        (store / name).mkdir(parents=True, exist_ok=True)
        build(frame).export(store / name / "model.pkl")


def varied_texts() -> list[str]:
    """Texts of 1 to ~60 tokens (shorter than `seq_len`, several chunks, past `max_len`), with words the
    vocab has and words it has not, and one in capitals (fastai's xxup/xxmaj rules)."""
    rng = np.random.default_rng(1)
    words = [*FILLER, *POSITIVE, *NEGATIVE, "zebra", "qwerty"]
    texts = [" ".join(str(w) for w in rng.choice(words, size=n)) for n in (1, 2, 3, 5, 7, 9, 12, 15, 20)]
    texts += [" ".join(str(w) for w in rng.choice(words, size=n)) for n in (30, 36, 38, 39, 41, 45, 60)]
    texts += ["GREAT film!", "Bad.", "It was a lovely, lovely film and the acting was excellent."]
    return texts
