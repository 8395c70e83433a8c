"""The payload log's writer builds each column once for many requests (`columns.log_columns`): for every
kind and task, what it writes for several requests of different sizes, whole or sampled, is row for row what
each request gives alone, under the ids the answers carried."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from service.inference.images import UploadedImage
from service.inference.kinds import predictor_for
from service.loading import load_exported_learner
from service.monitoring.columns import log_columns
from service.monitoring.payload import LogOptions, PayloadLog, read_log
from service.registry import ModelEntry
from service.telemetry import RequestContext
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes
from tests.tiny import TAB_MULTI, TAB_REGRESSION, TAB_REGRESSION_2, TASK_MODELS
from tests.tiny_collab import COLLAB_DOT, COLLAB_NN
from tests.tiny_segmentation import SEGMENTATION
from tests.tiny_text import TEXT_MODELS

TABULAR_TASKS = {TAB_REGRESSION, TAB_REGRESSION_2, TAB_MULTI}
SIZES = [1, 3, 2]  # three requests, so that a column is built over requests of different sizes

Items = Callable[[Any, int, int], Any]  # (predictor, request number, size) -> prepared


@pytest.fixture(scope="module")
def every_model(
    trained_store: Path, task_store: Path, text_store: Path, collab_store: Path, seg_store: Path
) -> dict[str, Path]:
    folders = [trained_store / TABULAR, trained_store / VISION, *(task_store / n for n in TASK_MODELS)]
    folders += [text_store / n for n in TEXT_MODELS] + [collab_store / n for n in (COLLAB_DOT, COLLAB_NN)]
    return {f.name: f for f in [*folders, seg_store / SEGMENTATION]}


def _items(adult_frame: pd.DataFrame, name: str) -> Items:
    if name in {TABULAR, *TABULAR_TASKS}:

        def rows(p: Any, r: int, n: int) -> Any:
            spec = p.spec
            frame = adult_frame.dropna().iloc[sum(SIZES[:r]) : sum(SIZES[:r]) + n]
            return p.prepare(
                [
                    {c.name: float(row[c.name]) for c in spec.continuous}
                    | {c.name: str(row[c.name]) for c in spec.categorical}
                    for row in frame.to_dict(orient="records")
                ]
            )

        return rows
    if name in TEXT_MODELS:
        words = ["good", "bad", "the plot was dull", "a lovely film and a great story", "it was fine"]
        return lambda p, r, n: p.prepare([words[(r + i) % len(words)] * (i + 1) for i in range(n)])
    if name == COLLAB_DOT:
        return lambda p, r, n: p.prepare([(i, f"m{r}") for i in range(n - 1)] + [(999, "m1")])
    if name == COLLAB_NN:
        return lambda p, r, n: p.prepare([(f"u{i}", r) for i in range(n - 1)] + [("nobody", 1)])
    return lambda p, r, n: p.prepare(
        [UploadedImage(f"{i}.png", image_bytes(size=(30 + i, 28 + r), seed=10 * r + i)) for i in range(n)]
    )


def _log(tmp_path: Path, name: str, predictor: Any, prepared: list[Any], sample: float) -> pa.Table:
    log = PayloadLog(LogOptions(folder=tmp_path, flush_s=60, sample=sample))
    log._random = random.Random(3)  # the sampled rows, the same every run
    entry = ModelEntry(name=name, folder=tmp_path)
    for r, p in enumerate(prepared):
        outputs = predictor.forward_many([p])[0]
        log.offer(
            entry=entry,
            predictor=predictor,
            prepared=p,
            outputs=outputs,
            context=RequestContext(f"req{r}", "v1"),
            start=10 * r,  # a request's earlier passes (a CSV's chunks) numbered its first items
        )
    log.close()
    return read_log(tmp_path, model=name)


@pytest.mark.parametrize("sample", [1.0, 0.5])
def test_every_kind_logs_several_requests_as_each_alone(
    every_model: dict[str, Path], adult_frame: pd.DataFrame, tmp_path: Path, sample: float
) -> None:
    checked = 0
    for name, folder in every_model.items():
        predictor = predictor_for(load_exported_learner(folder / "model.pkl").learn)
        items = _items(adult_frame, name)
        prepared = [items(predictor, r, n) for r, n in enumerate(SIZES)]
        table = _log(tmp_path / name, name, predictor, prepared, sample)
        # Each request alone, as the codecs give it, row by row under the id its answer gave.
        alone: dict[str, dict[str, Any]] = {}
        for r, p in enumerate(prepared):
            columns = log_columns(predictor, [p], [predictor.forward_many([p])[0]])
            for i in range(p.n):
                alone[f"req{r}-{10 * r + i}"] = {k: v[i].as_py() for k, v in columns.items()}
        logged = table.to_pylist()
        ids = [row["id"] for row in logged]
        assert len(set(ids)) == len(ids) and set(ids) <= set(alone), name
        if sample == 1.0:
            assert sorted(ids) == sorted(alone), name
        else:
            assert 0 < len(ids) < len(alone), name
        for row in logged:
            expected = alone[row["id"]]
            assert {k: row[k] for k in expected} == pytest.approx(expected, nan_ok=True), (name, row["id"])
            assert row["protocol"] == "v1" and row["latency_ms"] >= 0
        checked += 1
    assert checked == len(every_model) >= 12


def test_json_rows_and_a_csv_chunks_codes_in_one_table(
    trained_store: Path, adult_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """A CSV chunk resolves its categories to codes only; logged beside JSON rows (one table, one build),
    its categories come back as text, an unknown one (`#na#`) as null."""
    predictor = predictor_for(load_exported_learner(trained_store / TABULAR / "model.pkl").learn)
    rows = adult_rows(adult_frame, 4)
    frame = pd.DataFrame(rows[2:])[predictor.spec.column_names]
    frame.loc[frame.index[0], "workclass"] = "Astronaut"  # not a category the learner knows
    chunk = predictor.prepare_frame(frame, filename="rows.csv")
    assert "workclass" not in chunk.columns and "workclass" in chunk.codes  # the codes-only form
    table = _log(tmp_path, TABULAR, predictor, [predictor.prepare(rows[:2]), chunk], 1.0)
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert [by_id[i]["workclass"] for i in ("req0-0", "req0-1", "req1-10", "req1-11")] == [
        rows[0]["workclass"],
        rows[1]["workclass"],
        None,
        rows[3]["workclass"],
    ]
    assert np.allclose([by_id[i]["age"] for i in ("req0-0", "req1-11")], [rows[0]["age"], rows[3]["age"]])
