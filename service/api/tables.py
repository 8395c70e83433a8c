"""What every kind's CSV routes share: read the upload, take its chunks, read its targets, and answer with the
scored CSV (`Accept: text/csv`) or the JSON answer streamed a part at a time.

Parsing and scoring are the inference layer's (`inference/csvio.py`, `inference/labelled.py`); this module
only moves them off the event loop and into responses, so the tabular, text and collab routes stay thin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np
from fastapi import Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from service.api import hot
from service.inference.csvio import CsvChunk, CsvTable, read_csv_table, scored_csv_parts
from service.inference.tasks import Task
from service.registry import ModelEntry
from service.telemetry import item_ids

Columns = TypeVar("Columns")
# A 200 that is JSON or the scored CSV, as the CSV predict routes declare it in OpenAPI.
CSV_OR_JSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, "text/csv": {}}}}


async def read_table(file: UploadFile) -> CsvTable:
    """An uploaded CSV (415, 400 or 422 as `read_csv_table` says), parsed in a worker thread."""
    return await run_in_threadpool(read_csv_table, file.file, filename=file.filename or "upload.csv")


async def table_chunks(table: CsvTable) -> AsyncIterator[CsvChunk]:
    """The table's chunks in order; a large file is parsed as its chunks are taken, so off the event loop."""
    chunks = table.chunks()
    while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
        yield chunk


async def read_targets(
    targets: Mapping[Task, Callable[[CsvTable, Columns, Sequence[str]], np.ndarray]],
    table: CsvTable,
    columns: Columns,
    head: Any,
) -> np.ndarray:
    """The table's `actual` values for `head`'s task through the evaluate door's codec (`labelled.py`)."""
    return await run_in_threadpool(partial(targets[head.task], table, columns, head.classes))


def wants_csv(request: Request) -> bool:
    """The client asked for the scored CSV rather than JSON."""
    return "text/csv" in request.headers.get("accept", "")


def csv_answer(
    table: CsvTable, outputs: np.ndarray, head: Any, *, threshold: float | None = None
) -> StreamingResponse:
    """The uploaded CSV with `head`'s prediction columns, written a chunk at a time in a worker thread."""
    scored = scored_csv_parts(table, outputs, head, threshold=threshold, ids=item_ids(len(outputs)))
    parts = iterate_in_threadpool(scored)
    return StreamingResponse(parts, media_type="text/csv")


def streamed_predictions(
    schema: type[BaseModel], entry: ModelEntry, parts: Iterable[Sequence[Any]]
) -> StreamingResponse:
    """`schema(model=, version=, predictions=)` with every part's items, written a part at a time and
    serialised in a worker thread: the bytes FastAPI writes for the whole model, without ever holding an
    object per row of a large file."""
    answer = partial(schema, model=entry.name, version=entry.version)
    return StreamingResponse(iterate_in_threadpool(_spliced(answer, parts)), media_type="application/json")


def _spliced(answer: Callable[..., BaseModel], parts: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    shell = hot.json_bytes(answer(predictions=[]))  # {"model":..,"version":..,"predictions":[]}
    yield shell[:-2]
    for i, part in enumerate(parts):
        yield (b"," if i else b"") + hot.json_bytes(answer(predictions=part))[len(shell) - 2 : -2]
    yield shell[-2:]
