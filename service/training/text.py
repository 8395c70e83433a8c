"""Text recipe: ULMFiT on a CSV of texts and labels (the demo: the shipped rt-polarity review sentences).

The book's recipe without pretrained weights (fastai's WT103 model needs the internet): an AWD_LSTM language
model is trained on the training sentences first, its encoder is copied into a `text_classifier_learner`
with the same vocabulary, and the classifier is fine-tuned with discriminative learning rates (gradual
unfreezing optional). The test sentences are cut off before fastai sees any text: neither the language
model nor the classifier trains on them, and they pick no epoch.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.cli import DEMO_TEXT
from service.errors import (
    MSG_OPTION_RANGE,
    MSG_TEXT_NO_ROWS,
    MSG_TEXT_ONE_CLASS,
    MSG_TEXT_REFIT_FROM_SCRATCH,
    MSG_TEXT_SAME_COLUMN,
    MSG_UNKNOWN_TEST_LABELS,
    MSG_UNREADABLE_CSV,
    TrainingInputError,
)
from service.inference.csvio import CsvTable
from service.inference.labelled import TEXT_TARGETS
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.inference.text import TextPredictor
from service.reports.writer import FitOutcome, TestScores, write_report
from service.training.common import (
    FitOptions,
    TrainResult,
    check_monitor,
    export_learner,
    fit,
    recipe_dict,
    reference_parts,
    sampled,
    scored_test,
    seeded_loaders,
    serving_predictor,
    show_progress,
    summary_metrics,
    write_manifest,
    write_reference,
)
from service.training.data import DATA_DIR, check_columns, existing_file, first_line

logger = logging.getLogger(__name__)

DEMO_FOLDER = DATA_DIR / "rt_polarity"
DEMO_LABELS = ("neg", "pos")  # rt-polarity.<label>.gz, one sentence a line
TEXT_COL, LABEL_COL = "text", "label"
VALID_COL = "is_valid"
# ULMFiT's factor between the learning rates of successive layer groups (Howard & Ruder 2018, 3.2).
LR_FACTOR = 2.6**4


@dataclass
class TextRecipe:
    out_dir: Path
    csv: Path | None = None  # a CSV with a text and a label column; None: the shipped rt-polarity sentences
    text_col: str = TEXT_COL
    label_col: str = LABEL_COL
    test_csv: Path | None = None  # labelled test texts; otherwise `test_pct` of the rows are held out
    # The defaults are the `reviews-sentiment` demo (with --save-best): docs/recipes.md has the table.
    epochs: int = 4  # the classifier's epochs (after the unfreezing steps when `gradual`)
    lr: float = 1e-2
    lm_epochs: int = 0  # ULMFiT's first step: 0 trains the classifier from scratch
    lm_lr: float = 1e-2
    gradual: bool = False  # ULMFiT's gradual unfreezing: head, then one more layer group, then all
    bs: int = 64
    seq_len: int = 72
    emb_sz: int = 100  # AWD_LSTM sizes: fastai's defaults (400, 1152, 3) suit WT103, not 10k sentences
    n_hid: int = 256
    n_layers: int = 2
    drop_mult: float = 1.0  # scales every AWD_LSTM dropout (input, embedding, weight, hidden, output)
    wd: float = 0.01
    label_smoothing: float = 0.1
    min_freq: int = 1  # every token of the training texts (2: 0.758 held out, 1: 0.763; docs/recipes.md)
    max_vocab: int = 60000
    seed: int = 42
    valid_pct: float = 0.1
    test_pct: float = 0.1
    max_rows: int | None = None
    # torch's intra-op threads while training and scoring: the thread count changes the order of float
    # sums, so the same seed gave 0.7625 on one thread and 0.7552 on two (docs/recipes.md rows 28, 33).
    # Pinned (the demo: 1), the result is the same on any machine; 0 keeps torch's default (one per core).
    threads: int = 0
    # Train once more on the training and validation texts together, as many epochs as the first fit's
    # best (with --save-best) or all of them: the validation texts only chose the epoch count.
    refit: bool = False
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)


# -- data -------------------------------------------------------------------------------------------------
def demo_frame() -> pd.DataFrame:
    """The shipped sentences as a frame: `text`, `label` (neg, then pos, in file order)."""
    rows = []
    for label in DEMO_LABELS:
        with gzip.open(DEMO_FOLDER / f"rt-polarity.{label}.gz", "rt", encoding="utf-8") as lines:
            rows += [(line.strip(), label) for line in lines if line.strip()]
    return pd.DataFrame(rows, columns=[TEXT_COL, LABEL_COL])


def _read_csv(path: Path, *, what: str, recipe: TextRecipe) -> pd.DataFrame:
    existing_file(path, what=what)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainingInputError(
            MSG_UNREADABLE_CSV.format(what=what, path=path, reason=first_line(exc))
        ) from exc
    columns = [str(c) for c in frame.columns]
    check_columns(
        path, columns, what=what, needed={"--text-col": [recipe.text_col], "--label-col": [recipe.label_col]}
    )
    text, label = frame[recipe.text_col].str.strip(), frame[recipe.label_col].str.strip()
    # A row without a text or a label teaches nothing: dropped, not refused (CSV exports often end blank).
    kept = (text != "") & (label != "")
    if not kept.any():
        raise TrainingInputError(
            MSG_TEXT_NO_ROWS.format(what=what, path=path, text=recipe.text_col, label=recipe.label_col)
        )
    return pd.DataFrame({TEXT_COL: text[kept], LABEL_COL: label[kept]}).reset_index(drop=True)


def check_options(recipe: TextRecipe) -> None:
    """Numbers fastai would fail on deep inside (or silently ignore), refused before any data is read."""
    checks = [
        ("--epochs", recipe.epochs, recipe.epochs >= 1, "at least 1"),
        ("--lm-epochs", recipe.lm_epochs, recipe.lm_epochs >= 0, "0 or more"),
        ("--bs", recipe.bs, recipe.bs >= 1, "at least 1"),
        ("--seq-len", recipe.seq_len, recipe.seq_len >= 2, "at least 2"),
        ("--emb-sz", recipe.emb_sz, recipe.emb_sz >= 1, "at least 1"),
        ("--n-hid", recipe.n_hid, recipe.n_hid >= 1, "at least 1"),
        ("--n-layers", recipe.n_layers, recipe.n_layers >= 1, "at least 1"),
        ("--drop-mult", recipe.drop_mult, recipe.drop_mult >= 0, "0 or more"),
        ("--min-freq", recipe.min_freq, recipe.min_freq >= 1, "at least 1"),
        ("--label-smoothing", recipe.label_smoothing, 0 <= recipe.label_smoothing < 1, "in [0, 1)"),
        ("--valid-pct", recipe.valid_pct, 0 < recipe.valid_pct < 1, "in (0, 1)"),
        ("--test-pct", recipe.test_pct, 0 <= recipe.test_pct < 1, "in [0, 1)"),
        ("--threads", recipe.threads, recipe.threads >= 0, "0 (torch's default) or more"),
    ]
    for option, value, ok, expected in checks:
        if not ok:
            raise TrainingInputError(MSG_OPTION_RANGE.format(option=option, expected=expected, value=value))
    if recipe.text_col == recipe.label_col:
        raise TrainingInputError(MSG_TEXT_SAME_COLUMN.format(column=recipe.text_col))
    if recipe.refit and (recipe.lm_epochs or recipe.gradual):
        raise TrainingInputError(MSG_TEXT_REFIT_FROM_SCRATCH)


@dataclass
class TextData:
    train: pd.DataFrame  # text, label, is_valid
    test: pd.DataFrame | None
    test_source: str | None
    source: str


def split_indices(n: int, *, pct: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) positions: a seeded permutation, so the same seed holds out the same rows."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * pct))
    return np.sort(order[cut:]), np.sort(order[:cut])


def load_data(recipe: TextRecipe) -> TextData:
    """The training rows (with the validation flag) and the test rows, held out before fastai sees any."""
    if recipe.csv is None:
        frame, source = demo_frame(), "rt-polarity"
    else:
        frame, source = _read_csv(recipe.csv, what="--data", recipe=recipe), recipe.csv.name
    if recipe.max_rows and recipe.max_rows < len(frame):
        # A seeded sample, not the first rows: the demo's rows are sorted by label.
        picked = np.sort(np.random.default_rng(recipe.seed).permutation(len(frame))[: recipe.max_rows])
        frame = frame.iloc[picked].reset_index(drop=True)
    path = recipe.csv or DEMO_FOLDER
    classes = sorted(frame[LABEL_COL].unique())
    if len(classes) < 2:
        raise TrainingInputError(
            MSG_TEXT_ONE_CLASS.format(what="--data", path=path, label=recipe.label_col, name=classes[0])
        )
    test: pd.DataFrame | None = None
    test_source: str | None = None
    if recipe.test_csv is not None:
        test, test_source = _read_csv(recipe.test_csv, what="--test", recipe=recipe), recipe.test_csv.name
        if unknown := sorted(set(test[LABEL_COL]) - set(classes)):
            raise TrainingInputError(
                MSG_UNKNOWN_TEST_LABELS.format(
                    what="--test", path=recipe.test_csv, target=recipe.label_col, unknown=", ".join(unknown)
                )
            )
    elif recipe.test_pct > 0:
        keep, held = split_indices(len(frame), pct=recipe.test_pct, seed=recipe.seed)
        test = frame.iloc[held].reset_index(drop=True)
        test_source = f"{len(held)} texts held out of {source} (seed {recipe.seed})"
        frame = frame.iloc[keep].reset_index(drop=True)
    _, valid = split_indices(len(frame), pct=recipe.valid_pct, seed=recipe.seed + 1)
    frame[VALID_COL] = False
    frame.loc[valid, VALID_COL] = True
    return TextData(train=frame, test=test, test_source=test_source, source=source)


# -- the two learners -------------------------------------------------------------------------------------
def _encoder_config(recipe: TextRecipe, base: dict[str, Any]) -> dict[str, Any]:
    return base | {"emb_sz": recipe.emb_sz, "n_hid": recipe.n_hid, "n_layers": recipe.n_layers}


def _tokenizer() -> Any:
    """spaCy's blank English tokenizer (nothing downloaded) with fastai's default rules."""
    from fastai.text.core import SpacyTokenizer

    return SpacyTokenizer(lang="en")


def _text_block(recipe: TextRecipe, *, is_lm: bool, vocab: Any = None) -> Any:
    from fastai.text.data import TextBlock

    return TextBlock.from_df(
        TEXT_COL,
        tok=_tokenizer(),
        is_lm=is_lm,
        vocab=vocab,
        seq_len=recipe.seq_len,
        min_freq=recipe.min_freq,
        max_vocab=recipe.max_vocab,
    )


def _quiet(learn: Any, options: FitOptions) -> Iterator[Any]:
    return iter(() if show_progress(options) else (learn.no_bar(), learn.no_logging()))


def train_language_model(recipe: TextRecipe, frame: pd.DataFrame) -> tuple[Any, float]:
    """ULMFiT step 1: an AWD_LSTM language model on the training texts (the validation texts measure it;
    the test texts are not in `frame`). Returns the learner and the seconds it took."""
    import contextlib

    from fastai.data.block import DataBlock
    from fastai.data.transforms import ColReader, ColSplitter
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.learner import language_model_learner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config

    started = time.perf_counter()
    block = DataBlock(
        blocks=_text_block(recipe, is_lm=True),
        get_x=ColReader(TEXT_COL),
        splitter=ColSplitter(VALID_COL),
    )
    dls = seeded_loaders(block, frame, bs=recipe.bs, seed=recipe.seed, items="texts")
    lm = language_model_learner(
        dls,
        AWD_LSTM,
        config=_encoder_config(recipe, dict(awd_lstm_lm_config)),
        pretrained=False,
        drop_mult=recipe.drop_mult,
        wd=recipe.wd,
        metrics=[accuracy, Perplexity()],
        path=recipe.out_dir,
    )
    with contextlib.ExitStack() as stack:
        for ctx in _quiet(lm, recipe.fit):
            stack.enter_context(ctx)
        lm.fit_one_cycle(recipe.lm_epochs, recipe.lm_lr)
    values = dict(zip(lm.recorder.metric_names[1:-1], lm.recorder.values[-1], strict=False))
    logger.info(
        "language model: %d epochs, %s",
        recipe.lm_epochs,
        ", ".join(f"{k}={float(v):.4f}" for k, v in values.items()),
    )
    return lm, time.perf_counter() - started


def _classifier(recipe: TextRecipe, frame: pd.DataFrame, *, vocab: Any, metrics: list[Any]) -> Any:
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import ColReader, ColSplitter
    from fastai.losses import LabelSmoothingCrossEntropyFlat
    from fastai.text.learner import text_classifier_learner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_config

    block = DataBlock(
        blocks=(_text_block(recipe, is_lm=False, vocab=vocab), CategoryBlock),
        get_x=ColReader(TEXT_COL),
        get_y=ColReader(LABEL_COL),
        splitter=ColSplitter(VALID_COL),
    )
    dls = seeded_loaders(block, frame, bs=recipe.bs, seed=recipe.seed, items="texts")
    return text_classifier_learner(
        dls,
        AWD_LSTM,
        config=_encoder_config(recipe, dict(awd_lstm_clas_config)),
        pretrained=False,
        drop_mult=recipe.drop_mult,
        wd=recipe.wd,
        metrics=metrics,
        seq_len=recipe.seq_len,
        loss_func=LabelSmoothingCrossEntropyFlat(eps=recipe.label_smoothing)
        if recipe.label_smoothing
        else None,
        path=recipe.out_dir,
    )


def load_encoder(classifier: Any, lm: Any) -> None:
    """ULMFiT step 2: the language model's AWD_LSTM into the classifier's `SentenceEncoder` (what
    `save_encoder`/`load_encoder` do, without the file)."""
    classifier.model[0].module.load_state_dict(lm.model[0].state_dict())


def unfreeze_gradually(learn: Any, recipe: TextRecipe) -> None:
    """ULMFiT step 3's first part: one epoch on the head alone, one with the last LSTM layer too, with
    discriminative rates; `fit` then trains everything."""
    import contextlib

    lr = recipe.lr
    with contextlib.ExitStack() as stack:
        for ctx in _quiet(learn, recipe.fit):
            stack.enter_context(ctx)
        learn.freeze()
        learn.fit_one_cycle(1, lr)
        learn.freeze_to(-2)
        learn.fit_one_cycle(1, slice(lr / LR_FACTOR, lr))
    learn.unfreeze()


def datablock_summary(learn: Any, data: TextData, *, lm_vocab: int | None) -> str:
    dls = learn.dls
    tokens, classes = dls.vocab
    x, y = dls.one_batch()
    counts = data.train[LABEL_COL].value_counts().sort_index()
    lines = [
        f"texts from {data.source}: {len(dls.train_ds)} training, {len(dls.valid_ds)} validation"
        + (f", {len(data.test)} test" if data.test is not None else ""),
        "labels (all training rows): " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"tokenizer: {type(_tokenizer()).__name__} (spaCy blank 'en') with fastai's default rules",
        f"vocabulary: {len(tokens)} tokens (first: {' '.join(map(str, tokens[:12]))})",
        f"classes: {list(map(str, classes))}",
        "language model: " + (f"trained first, {lm_vocab} tokens" if lm_vocab else "none (from scratch)"),
        f"batch size {dls.bs}; one batch: x {tuple(x.shape)}, y {tuple(y.shape)}",
    ]
    return "\n".join(lines)


# -- scoring and publishing -------------------------------------------------------------------------------
def score_texts(learner_path: Path, test: pd.DataFrame, *, source: str) -> TestScores:
    """The exported file served as the server serves it (`TextPredictor`: the learner's own tokenizer and
    vocab, padding-neutral batches, equal to fastai's `get_preds` per text), its test texts scored as the
    evaluate endpoint scores a CSV (the same target codec per task), as `common.score_table` does rows."""
    predictor = serving_predictor(learner_path, TextPredictor)
    head = predictor.head
    table = CsvTable(source=test, columns=[str(c) for c in test.columns], filename=source)
    actual = TEXT_TARGETS[head.task](table, LABEL_COL, head.classes)
    texts = test[TEXT_COL].tolist()
    outputs = predictor.forward_many([predictor.prepare(texts)])[0]
    return scored_test(
        source=source, head=head, actual=actual, outputs=outputs, items=[{TEXT_COL: t} for t in texts]
    )


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count pinned for the block (0: left as it is), restored after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def refit_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every training and validation row as training rows. fastai needs a validation set to run its
    epochs, so the validation rows come again flagged as such: its numbers are then training numbers,
    which is why the report keeps the first fit's history."""
    everything = frame.assign(**{VALID_COL: False})
    return pd.concat([everything, frame[frame[VALID_COL]]], ignore_index=True)


def train_text(recipe: TextRecipe) -> TrainResult:
    check_options(recipe)
    with torch_threads(recipe.threads):
        return _train_text(recipe)


def _train_text(recipe: TextRecipe) -> TrainResult:
    import fastai.callback.schedule  # noqa: F401 (adds Learner.fit_one_cycle, as fastai.text.all would)
    from fastai.metrics import F1Score, accuracy

    metrics = [accuracy, F1Score(average="macro")]
    recipe = replace(recipe, fit=recipe.fit.resolved("accuracy"))
    check_monitor(recipe.fit.watched, metrics)
    data = load_data(recipe)
    lm_seconds, vocab, lm_vocab = 0.0, None, None
    if recipe.lm_epochs:
        lm, lm_seconds = train_language_model(recipe, data.train)
        vocab = lm.dls.vocab
        lm_vocab = len(vocab)
    started = time.perf_counter()
    learn = _classifier(recipe, data.train, vocab=vocab, metrics=metrics)
    if recipe.lm_epochs:
        load_encoder(learn, lm)
        del lm
    if recipe.gradual:
        unfreeze_gradually(learn, recipe)
    else:
        learn.unfreeze()
    # Discriminative rates (ULMFiT) only over an encoder the language model trained: from scratch every
    # layer group needs the full rate.
    lr: Any = slice(recipe.lr / LR_FACTOR, recipe.lr) if recipe.lm_epochs else recipe.lr
    fit_seconds, outcome = fit(learn, epochs=recipe.epochs, lr=lr, options=recipe.fit)
    if recipe.refit:
        learn = refit_text(recipe, data, outcome=outcome, metrics=metrics)
    seconds = lm_seconds + time.perf_counter() - started
    logger.info(
        "trained in %.1f s (language model %.1f s, classifier fit %.1f s)", seconds, lm_seconds, fit_seconds
    )
    return publish_text(learn, recipe=recipe, data=data, outcome=outcome, seconds=seconds, lm_vocab=lm_vocab)


def refit_epochs(recipe: TextRecipe, outcome: FitOutcome) -> int:
    """The epochs the first fit chose: its best with --save-best, else all it ran (early stopping too)."""
    if recipe.fit.save_best and outcome.best_epoch is not None:
        return outcome.best_epoch + 1
    return len(outcome.history)


def refit_text(recipe: TextRecipe, data: TextData, *, outcome: FitOutcome, metrics: list[Any]) -> Any:
    """A new classifier, same seed, trained from scratch on the training and validation texts for the
    epochs the first fit chose (its best epoch with --save-best, else all it ran). From scratch only: a
    language model start would need its own refit too."""
    chosen = refit_epochs(recipe, outcome)
    learn = _classifier(recipe, refit_frame(data.train), vocab=None, metrics=metrics)
    learn.unfreeze()
    logger.info("refit on training and validation texts: %d epochs", chosen)
    # No save-best or early stopping: the validation rows are training rows now.
    fit(
        learn, epochs=chosen, lr=recipe.lr, options=replace(recipe.fit, save_best=False, early_stopping=False)
    )
    return learn


def publish_text(
    learn: Any,
    *,
    recipe: TextRecipe,
    data: TextData,
    outcome: FitOutcome,
    seconds: float,
    lm_vocab: int | None,
) -> TrainResult:
    """Export, score the held-out texts with the exported file, write the manifest and the report."""
    summary = datablock_summary(learn, data, lm_vocab=lm_vocab)
    if recipe.refit:
        # The loaders above are the refit's: its validation texts are training texts as well.
        summary += f"\nrefit on the training and validation texts: {refit_epochs(recipe, outcome)} epochs"
    path = export_learner(learn, recipe.out_dir)
    texts = sampled(data.train[TEXT_COL].astype(str).tolist())
    write_reference(recipe.out_dir, path, TextPredictor, lambda p: reference_parts(p, p.prepare(texts)))
    scores = (
        score_texts(path, data.test, source=data.test_source)
        if data.test is not None and data.test_source is not None and len(data.test)
        else None
    )
    metrics = summary_metrics(scores, outcome.history, outcome.best_epoch)
    classes = [str(c) for c in learn.dls.vocab[1]]
    description = recipe.description or (
        f"text_classifier_learner(AWD_LSTM) on {data.source} predicting {recipe.label_col}"
        + (" (ULMFiT: language model first)" if recipe.lm_epochs else "")
    )
    write_manifest(
        recipe.out_dir,
        kind=ModelKind.TEXT,
        description=description,
        metrics=metrics,
        extra={
            "task": Task.CLASSIFICATION.value,
            "classes": classes,
            "targets": [],
            "train_seconds": round(seconds, 2),
            "seed": recipe.seed,
            "text_column": TEXT_COL,
        },
    )
    report_dir = write_report(
        recipe.out_dir,
        learn=learn,
        outcome=outcome,
        scores=scores,
        kind=ModelKind.TEXT,
        task=Task.CLASSIFICATION,
        seed=recipe.seed,
        augmented=False,
        train_seconds=seconds,
        datablock_summary=summary,
        recipe=recipe_dict(recipe, source=data.source, lm_vocab=lm_vocab),
    )
    return TrainResult(
        name=recipe.out_dir.name,
        kind=ModelKind.TEXT,
        learner_path=path,
        metrics=metrics,
        train_seconds=seconds,
        report_dir=report_dir,
        learn=learn,
    )


def demo_recipe(out_dir: Path, *, seed: int = 42, fit: FitOptions | None = None) -> TextRecipe:
    """The `reviews-sentiment` recipe: `TextRecipe`'s defaults on one pinned torch thread, keeping the
    epoch with the best validation accuracy (docs/recipes.md has the table it was chosen from)."""
    return TextRecipe(
        out_dir=out_dir,
        seed=seed,
        threads=1,
        description="movie-review sentiment (rt-polarity sentences): AWD_LSTM text classifier",
        # min_delta 0: any better validation accuracy counts. With the default 0.01 an annealed last epoch
        # 0.005-0.009 above an earlier one lost to it (recipes rows 9 and 16), which one-cycle rarely earns.
        fit=fit or FitOptions(save_best=True, min_delta=0.0, quiet=True),
    )


def build_demo(store: Path, *, seed: int = 42) -> TrainResult:
    """Train the `reviews-sentiment` demo into `store/reviews-sentiment/` (model.pkl, model.json, report/)."""
    return train_text(demo_recipe(store / DEMO_TEXT, seed=seed))
