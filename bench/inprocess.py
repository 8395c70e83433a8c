"""In-process rows: our predictors vs fastai's learn.predict / get_preds vs the compute floor, per case."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.cases import (
    CASES,
    RECOMMENDS,
    Case,
    CollabCase,
    RecommendCase,
    TabularCase,
    TextCase,
    VisionCase,
    ratio_key,
)
from bench.timing import floor, latencies, paired, per_call
from service.inference.collab import CollabPredictor
from service.inference.csvio import CsvTable, read_csv_table
from service.inference.images import UploadedImage
from service.inference.kinds import build_predictor, recognise
from service.inference.runtime import RuntimeOptions, select_runtime
from service.inference.tabular import TabularPredictor
from service.inference.text import TextPredictor
from service.inference.vision import VisionPredictor
from service.loading import load_exported_learner, prepare_for_serving, sha256_of
from service.settings import Settings

TABULAR_ROWS = 10_000
IMAGES = 256
TEXTS = 1_000
PAIRS = 10_000
# The predictor the server must build for each kind of case.
PREDICTORS: dict[str, type] = {
    "tabular": TabularPredictor,
    "vision": VisionPredictor,
    "segmentation": VisionPredictor,
    "text": TextPredictor,
    "collab": CollabPredictor,
}


def in_process(
    device: torch.device,
    store: Path,
    cases: tuple[Case, ...] = CASES,
    recommends: tuple[RecommendCase, ...] = RECOMMENDS,
) -> dict[str, Any]:
    """Every case's rows, after loading every model as the server does (runtime chosen, heap frozen), then
    `recommend`'s latency."""
    out: dict[str, Any] = {}
    loaded: list[tuple[Any, Any, Any]] = []
    for case in (*cases, *recommends):
        folder = store / case.model
        learn = prepare_for_serving(load_exported_learner(folder / "model.pkl").learn, device)
        # The predictor the server builds for it (its kind and task recognised from the learner).
        predictor = build_predictor(recognise(learn), learn, folder=folder)
        wanted = PREDICTORS["collab" if isinstance(case, RecommendCase) else case.kind]
        if not isinstance(predictor, wanted):
            raise TypeError(f"{case.model} is a {predictor.kind} model; its case wants {wanted.kind}")  # type: ignore[attr-defined]
        loaded.append((case, learn, predictor))
    # The runtime the server would pick (FASTAI_SERVE_RUNTIME, default auto: ONNX Runtime when it matches).
    settings = Settings()
    options = RuntimeOptions(setting=settings.runtime, cache_dir=settings.onnx_cache_dir)
    for case, _, predictor in loaded:
        choice = select_runtime(predictor, options, sha256=sha256_of(store / case.model / "model.pkl"))
        # fast_path: encoded by our code (the runtime's forward); else fastai's own pipeline, per request.
        out[f"runtime_{case.model}"] = {
            "runtime": choice.name,
            "note": choice.note,
            "fast_path": bool(predictor.fast_path),
        }
    gc.collect()
    gc.freeze()  # as the server's registry does after loading
    for case, learn, predictor in loaded:
        if isinstance(case, TabularCase):
            out.update(tabular_rows(case, learn, predictor, device))
        elif isinstance(case, VisionCase):
            out[f"{case.key}_{IMAGES}_images"] = vision_row(case, learn, predictor, device)
        elif isinstance(case, TextCase):
            out.update(text_rows(case, learn, predictor))
        elif isinstance(case, CollabCase):
            out.update(collab_rows(case, learn, predictor))
        else:
            out[case.key] = recommend_row(case, predictor)
    return out


def text_rows(case: TextCase, learn: Any, predictor: TextPredictor) -> dict[str, Any]:
    """One text (ours vs learn.predict), then 1,000 texts (ours vs test_dl + get_preds)."""
    [text] = case.texts(1)
    ours_one = per_call(lambda: predictor.predict([text]))
    with learn.no_bar():
        naive_one = per_call(lambda: learn.predict(text), seconds=2.0)
    texts = case.texts(TEXTS)
    ours = per_call(lambda: predictor.predict(texts), seconds=3.0)
    fastai = per_call(lambda: get_preds(learn, texts), seconds=3.0)
    return {
        f"{case.key}_one_text": {
            "ours_ms": ours_one * 1e3,
            "learn_predict_ms": naive_one * 1e3,
            "speedup": naive_one / ours_one,
        },
        f"{case.key}_{TEXTS}_texts": {
            "input": "review sentences -> tokenised, numericalised, padded, forward -> predictions",
            "ours_texts_per_s": TEXTS / ours,
            "fastai_get_preds_texts_per_s": TEXTS / fastai,
            "ours_vs_get_preds": fastai / ours,
        },
    }


def collab_rows(case: CollabCase, learn: Any, predictor: CollabPredictor) -> dict[str, Any]:
    """One pair (ours vs get_preds on a one-row frame: learn.predict fails for collab), then 10,000 pairs
    (ours vs test_dl + get_preds on their frame)."""
    users, items = predictor.users.column, predictor.items.column

    def frame(pairs: list[dict[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame({users: [p["user"] for p in pairs], items: [p["item"] for p in pairs]})

    one = case.pairs(1)
    one_pair, one_frame = [(p["user"], p["item"]) for p in one], frame(one)
    ours_one = per_call(lambda: predictor.predict(one_pair))
    naive_one = per_call(lambda: get_preds(learn, one_frame, reorder=False), seconds=2.0)
    many = case.pairs(PAIRS)
    pairs, many_frame = [(p["user"], p["item"]) for p in many], frame(many)
    ours = per_call(lambda: predictor.predict(pairs), seconds=3.0)
    fastai = per_call(lambda: get_preds(learn, many_frame), seconds=3.0)
    return {
        f"{case.key}_one_pair": {
            "ours_ms": ours_one * 1e3,
            "get_preds_one_row_ms": naive_one * 1e3,
            "speedup": naive_one / ours_one,
        },
        f"{case.key}_{PAIRS // 1000}k_pairs": {
            "input": "(user, item) ids -> codes, forward -> ratings",
            "ours_pairs_per_s": PAIRS / ours,
            "fastai_get_preds_pairs_per_s": PAIRS / fastai,
            "ours_vs_get_preds": fastai / ours,
        },
    }


def recommend_row(case: RecommendCase, predictor: CollabPredictor) -> dict[str, Any]:
    """`recommend` (every item scored for one user, the best `count` kept) for users in turn: p50 and p99."""
    known = predictor.items.count
    if known < case.items:
        raise ValueError(f"{case.model} knows {known} items; its case wants {case.items}")
    users = [predictor.users.ids[i] for i in range(1, min(case.users, predictor.users.count) + 1)]
    turn = iter(range(10**9))
    times = latencies(lambda: predictor.recommend(users[next(turn) % len(users)], count=case.count))
    return {
        "items": known,
        "count": case.count,
        "calls": len(times),
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "target_p50_ms": case.target_ms,
    }


def tabular_rows(
    case: TabularCase, learn: Any, predictor: TabularPredictor, device: torch.device
) -> dict[str, Any]:
    """One row (ours vs learn.predict), then 10k rows (ours vs get_preds vs the floor)."""
    row = case.rows(1)
    ours_row = per_call(lambda: predictor.predict(row))
    series = pd.Series(row[0])
    naive_row = per_call(lambda: learn.predict(series), seconds=2.0)
    out: dict[str, Any] = {}
    out[f"{case.key}_one_row"] = {
        "ours_ms": ours_row * 1e3,
        "learn_predict_ms": naive_row * 1e3,
        ratio_key(case.one_row_aim, "speedup"): naive_row / ours_row,
    }

    rows = case.rows(TABULAR_ROWS)
    ours_json = per_call(lambda: predictor.predict(rows), seconds=3.0)
    frame = pd.DataFrame(rows)
    # The CSV route's work between reading the upload and answering: its chunks of the reader's Arrow
    # table, each validated, resolved, encoded and forwarded.
    csv_bytes = frame.to_csv(index=False).encode()
    csv_table = read_csv_table(csv_bytes, filename="bench.csv")

    def table_outputs(table: CsvTable = csv_table) -> np.ndarray:
        parts = [
            predictor.forward_many([predictor.prepare_chunk(chunk, filename="bench.csv")])[0]
            for chunk in table.chunks()
        ]
        return np.concatenate(parts)

    ours_batch = per_call(table_outputs, seconds=3.0)
    ours_bytes = per_call(lambda: table_outputs(read_csv_table(csv_bytes, filename="bench.csv")), seconds=3.0)
    fastai_batch = per_call(lambda: get_preds(learn, frame), seconds=3.0)
    x_cat, x_cont = encoded(learn, predictor, rows, frame)
    sizes = (1024, 4096, 10_000)
    low = floor(
        len(rows),
        torch_forward=lambda s: learn.model(x_cat[s].to(device), x_cont[s].to(device)),
        torch_sizes=sizes,
        runtime_forward=(
            (lambda s: predictor.runtime.outputs(x_cat[s], x_cont[s]))
            if predictor.runtime.name != "torch"
            else None
        ),
        runtime_sizes=sizes,
    )
    # The ratio itself from alternating calls of ours and of the floor at its best batch size.
    paired_ours, paired_floor = paired(table_outputs, low.run)
    n = TABULAR_ROWS
    out[f"{case.key}_10k_rows"] = {
        "input": "CSV text cells -> validated, encoded, forward -> outputs (the CSV route without I/O)",
        "ours_rows_per_s": n / ours_batch,
        "ours_from_bytes_rows_per_s": n / ours_bytes,
        "ours_json_rows_per_s": n / ours_json,
        "fastai_get_preds_rows_per_s": n / fastai_batch,
        "floor_rows_per_s": n / low.seconds,
        "floor_batch_size": low.batch_size,
        "torch_eager_floor_rows_per_s": n / low.torch_seconds,
        ratio_key(case.batch_aim, "ours_vs_floor"): paired_floor / paired_ours,
        ratio_key(case.batch_aim, "paired_ms"): {"ours": paired_ours * 1e3, "floor": paired_floor * 1e3},
    }
    return out


def encoded(learn: Any, predictor: TabularPredictor, rows: list[dict[str, Any]], frame: pd.DataFrame) -> Any:
    """The floor's inputs (x_cat, x_cont): our encoder's, or fastai's procs' when the predictor has none
    (a proc the fast path does not reproduce: then it serves through fastai's pipeline)."""
    if predictor._encoder is not None:
        return predictor._encoder.encode(predictor.prepare(rows).columns, len(rows))
    to = learn.dls.test_dl(frame, num_workers=0).dataset
    return torch.tensor(to.cats.values).long(), torch.tensor(to.conts.values).float()


def vision_row(
    case: VisionCase, learn: Any, predictor: VisionPredictor, device: torch.device
) -> dict[str, Any]:
    """256 images: ours vs decoding + get_preds vs decoding + the floor."""
    uploads = [UploadedImage(f"{i}.jpg", b) for i, b in enumerate(case.images(IMAGES))]
    ours = per_call(lambda: predictor.predict(uploads), seconds=3.0)
    images = predictor.prepare(uploads).images
    fastai = per_call(lambda: get_preds(learn, images), seconds=3.0) + per_call(
        lambda: predictor.prepare(uploads)
    )
    decode = per_call(lambda: predictor.prepare(uploads))
    batch = predictor._after_batch(
        (torch.stack([predictor._after_item((im,))[0] for im in images]).to(device),)
    )[0]
    low = floor(
        len(images),
        torch_forward=lambda s: learn.model(batch[s]),
        torch_sizes=(32, 64, 128, 256),
        runtime_forward=(
            (lambda s: predictor.runtime.outputs(batch[s])) if predictor.runtime.name != "torch" else None
        ),
        runtime_sizes=(1, 32, 64, 256),
    )

    def decode_and_floor() -> None:
        predictor.prepare(uploads)
        low.run()

    paired_ours, paired_floor = paired(lambda: predictor.predict(uploads), decode_and_floor)
    return {
        "ours_images_per_s": IMAGES / ours,
        "fastai_get_preds_images_per_s": IMAGES / fastai,
        "floor_images_per_s": IMAGES / (low.seconds + decode),
        "floor_batch_size": low.batch_size,
        "torch_eager_floor_images_per_s": IMAGES / (low.torch_seconds + decode),
        "decode_ms_per_image": decode / IMAGES * 1e3,
        ratio_key(case.batch_aim, "ours_vs_floor"): paired_floor / paired_ours,
        ratio_key(case.batch_aim, "paired_ms"): {"ours": paired_ours * 1e3, "floor": paired_floor * 1e3},
    }


def get_preds(learn: Any, items: Any, *, reorder: bool = True) -> Any:
    """fastai's batch path: a test DataLoader over the items, then get_preds (reorder=False for a collab
    model's single row, whose 0-d output get_preds' reordering cannot index)."""
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        return learn.get_preds(dl=dl, reorder=reorder)
