"""The payload log: a sampled copy of what was asked and answered, as a hive-partitioned Parquet dataset.

`LOG_DIR/predictions/model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<seq>.parquet`: pandas, pyarrow, DuckDB
and Spark read the folder as one table (the partition folders give `model` and `date`). A record is one
request's items (or the sampled share of them, `LOG_SAMPLE`): `id` (`<X-Request-ID>-<k>`, as the answer
gives it), `ts`, `version`, `protocol` (v1, v2, grpc), `latency_ms` (the request's time until its model
answered), the input columns of its kind and the output columns of its task (`columns.py`).

Never on the request path: a request only appends references to a bounded queue (`LOG_QUEUE` items); a
writer thread builds the columns and writes a file per model and day every `LOG_FLUSH_S` seconds, and on
`close` (a graceful stop: SIGTERM, a reload, a worker's exit) everything queued; the columns themselves are
built every `BUILD_EVERY_S` in between, each once for all the requests queued since (`columns.log_columns`),
so the writer's Python work comes in short bursts of vectorised calls, a few microseconds per request. Files
are written under a hidden name and renamed when complete, so a reader never sees half a file; a flush
larger than `LOG_ROLL_MB` is cut into several files. A full queue or a failing write drops records and
counts them (`fastai_serve_payload_log_dropped_total{reason}`, a warning, `/health/ready`'s `payload_log`),
and a prediction never waits for the log. `LOG_RETENTION_DAYS` removes older `date=` folders.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from service.errors import MSG_PAYLOAD_LOG_DROPPED
from service.monitoring.columns import ColumnOptions, log_columns, logs
from service.telemetry import Metrics, RequestContext

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
# At most one warning per reason this often: a full disk must not flood the log it cannot write to.
WARN_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0
BUILD_EVERY_S = 0.25
DAY_S = 86_400
EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class LogOptions:
    folder: Path
    sample: float = 1.0
    flush_s: float = 10.0
    max_items: int = 100_000
    roll_mb: float = 64.0
    retention_days: int = 0  # 0: keep everything
    thumbnail_px: int = 0  # images: a JPEG thumbnail this size at most (0: none)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs the request path microseconds
class Record:
    """One request's logged items, as references (its prepared inputs, its outputs) until the writer
    builds the columns of many records at once."""

    model: str
    version: str | None
    protocol: str
    ts: float  # seconds since the epoch (UTC)
    latency_ms: float
    request_id: str
    start: int  # the request's first item's number in its ids
    rows: np.ndarray | None  # the sampled items' positions in the request (None: all)
    predictor: Any
    prepared: Any
    outputs: np.ndarray
    n: int  # items logged


class PayloadLog:
    """This process's payload log: `offer` on the request path, a writer thread for the rest."""

    def __init__(self, options: LogOptions, *, metrics: Metrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
        self._columns = ColumnOptions(thumbnail_px=options.thumbnail_px)
        self._queue: collections.deque[Record] = collections.deque()
        self._queued = 0  # items
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._seq = 0
        # Unique per log: hosts, worker processes and reloads of one app write beside each other.
        self._process = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._random = random.Random()
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self._warned: dict[str, float] = {}
        self._retention_done = 0.0
        self._built: collections.defaultdict[tuple[str, str], list[pa.Table]] = collections.defaultdict(list)
        self._built_rows = 0
        self._flush_lock = threading.Lock()  # the writer thread and a caller's flush (feedback, monitor)
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()

    # -- the request path ------------------------------------------------------------------------------
    def offer(
        self,
        *,
        entry: Any,
        predictor: Any,
        prepared: Any,
        outputs: np.ndarray,
        context: RequestContext,
        start: int,
    ) -> None:
        """Queue a request's items (its sampled share) for the writer; drops and counts them when full."""
        n = int(prepared.n)
        rows = None
        if self.options.sample < 1.0:
            chosen = [i for i in range(n) if self._random.random() < self.options.sample]
            if not chosen:
                return
            rows = np.asarray(chosen, dtype=np.int64)
        if not logs(predictor, prepared):  # not a prediction (a ranking), or a task never logged
            return
        record = Record(
            model=entry.name,
            version=entry.version,
            protocol=context.protocol,
            ts=time.time(),
            latency_ms=(time.perf_counter() - context.started) * 1000,
            request_id=context.request_id,
            start=start,
            rows=rows,
            predictor=predictor,
            prepared=prepared,
            outputs=outputs,
            n=n if rows is None else len(rows),
        )
        with self._lock:
            if self._stopping or self._queued + record.n > self.options.max_items:
                full = True
            else:
                full = False
                self._queue.append(record)
                self._queued += record.n
        if full:
            self._drop(record.n, "queue_full", "the queue is full")

    # -- the writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        last_write = time.monotonic()
        while not self._stopping:
            # Columns are built every BUILD_EVERY_S (short bursts of Python work beside the server's
            # threads), files written every LOG_FLUSH_S.
            self._wake.wait(min(self.options.flush_s, BUILD_EVERY_S))
            self._wake.clear()
            with self._flush_lock:
                self._build()
                if time.monotonic() - last_write >= self.options.flush_s:
                    self._write_built()
                    last_write = time.monotonic()

    def flush(self) -> None:
        """Write what is queued now: one file per model and day (more past `LOG_ROLL_MB`)."""
        with self._flush_lock:
            self._build()
            self._write_built()

    def _build(self) -> None:
        """The queued records as tables, one per model, day and version (a version's columns are one
        schema), kept until the next write."""
        with self._lock:
            records, self._queue = list(self._queue), collections.deque()
            self._queued = 0
        # One table per model version (one predictor: one schema) and UTC day.
        groups: dict[tuple[str, int, str | None, int], list[Record]] = collections.defaultdict(list)
        for record in records:
            key = (record.model, int(record.ts // DAY_S), record.version, id(record.predictor))
            groups[key].append(record)
        for (model, day, _, _), group in groups.items():
            try:
                table = _table(group, self._columns)
            except Exception as exc:  # a record the codecs cannot take must not stop the others
                self._drop(sum(r.n for r in group), "write_failed", f"{type(exc).__name__}: {exc}")
                continue
            self._built[(model, _day(day))].append(table)
            self._built_rows += table.num_rows

    def _write_built(self) -> None:
        built, self._built = self._built, collections.defaultdict(list)
        self._built_rows = 0
        for (model, day), parts in built.items():
            try:
                table = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
                self._write(model, day, table)
                self.written += table.num_rows
            except Exception as exc:  # a full disk, a folder we may not write: the predictions go on
                self._drop(sum(p.num_rows for p in parts), "write_failed", f"{type(exc).__name__}: {exc}")
        self._retention()

    def _write(self, model: str, day: str, table: pa.Table) -> None:
        folder = self.options.folder / PREDICTIONS / f"model={model}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        rows_per_file = max(1, int(self.options.roll_mb * 2**20 // per_row))
        for start in range(0, table.num_rows, rows_per_file):
            self._seq += 1
            name = f"{self._process}-{self._seq:06d}.parquet"
            hidden = folder / f".{name}.tmp"  # readers skip dot-files; the rename makes it whole at once
            pq.write_table(table.slice(start, rows_per_file), hidden, compression="zstd")
            os.replace(hidden, folder / name)

    def _retention(self) -> None:
        days = self.options.retention_days
        now = time.monotonic()
        if days <= 0 or now - self._retention_done < RETENTION_EVERY_S and self._retention_done:
            return
        self._retention_done = now
        oldest = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)).isoformat()
        for folder in (self.options.folder / PREDICTIONS).glob("model=*/date=*"):
            if folder.name.removeprefix("date=") < oldest:
                shutil.rmtree(folder, ignore_errors=True)

    def _drop(self, n: int, reason: str, why: str) -> None:
        self.dropped += n
        self.last_error = why
        if self._metrics is not None:
            self._metrics.payload_log_dropped.labels(reason).inc(n)
        now = time.monotonic()
        if now - self._warned.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned[reason] = now
            logger.warning(MSG_PAYLOAD_LOG_DROPPED.format(count=n, why=why, folder=self.options.folder))

    # -- state and shutdown ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What `/health/ready` says of the log: where it writes, and what it had to drop."""
        return {
            "folder": str(self.options.folder),
            "written": self.written,
            "queued": self._queued + self._built_rows,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Stop taking records, write everything queued (a graceful stop loses nothing), stop the thread."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join()
        self.flush()


def _day(days: int) -> str:
    return (EPOCH + dt.timedelta(days=days)).isoformat()


def _table(records: list[Record], options: ColumnOptions) -> pa.Table:
    """Records of one model version as one table: the header fields, then the inputs and the outputs,
    every column built once for all the records (`columns.log_columns`) and the sampled rows taken."""
    sizes = np.asarray([record.prepared.n for record in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # Each logged row's position in the records' items, and its record.
    if all(record.rows is None for record in records):
        taken = None
        of_record = np.repeat(np.arange(len(records)), sizes)
        position = np.arange(int(sizes.sum())) - offsets[of_record]
    else:
        chosen = [np.arange(r.prepared.n) if r.rows is None else r.rows for r in records]
        of_record = np.repeat(np.arange(len(records)), [len(c) for c in chosen])
        position = np.concatenate(chosen)
        taken = pa.array(offsets[of_record] + position)
    predictor = records[0].predictor
    columns = log_columns(predictor, [r.prepared for r in records], [r.outputs for r in records], options)
    starts = np.asarray([record.start for record in records], dtype=np.int64)
    request_ids = pa.array([record.request_id for record in records], type=pa.string())
    rows_of = pa.array(of_record)
    micros = (np.asarray([record.ts for record in records]) * 1e6).astype(np.int64)
    n = len(of_record)
    table: dict[str, pa.Array] = {
        "id": pc.binary_join_element_wise(
            request_ids.take(rows_of), pc.cast(pa.array(starts[of_record] + position), pa.string()), "-"
        ),
        "ts": pa.array(micros[of_record], type=pa.timestamp("us", tz="UTC")),
        "version": pa.array([records[0].version] * n, type=pa.string()),
        "protocol": pa.array([record.protocol for record in records], type=pa.string()).take(rows_of),
        "latency_ms": pa.array(np.asarray([record.latency_ms for record in records])[of_record]),
    }
    table.update({name: values if taken is None else values.take(taken) for name, values in columns.items()})
    return pa.table(table)


def log_dataset(folder: Path, *, model: str | None = None) -> Any:
    """The log (or one model's) as one pyarrow dataset, or None when nothing was written. Models have
    columns of their own: the files' schemas are unified (a column a model lacks is null there), as
    DuckDB's `union_by_name` and Spark's `mergeSchema` do."""
    import pyarrow.dataset as ds

    root = folder / PREDICTIONS
    if model is not None:
        root = root / f"model={model}"
    if not root.is_dir():
        return None
    found = ds.dataset(root, format="parquet", partitioning="hive")
    schema = pa.unify_schemas([f.physical_schema for f in found.get_fragments()] + [found.schema])
    return ds.dataset(root, format="parquet", partitioning="hive", schema=schema)


def read_log(folder: Path, *, model: str | None = None) -> pa.Table:
    """The whole log (or one model's) as one table, as any hive-aware reader sees it."""
    dataset = log_dataset(folder, model=model)
    return pa.table({}) if dataset is None else dataset.to_table()


def known_ids(folder: Path, model: str, ids: Sequence[str]) -> set[str]:
    """Which of `ids` the log holds for `model`."""
    dataset = log_dataset(folder, model=model)
    if dataset is None:
        return set()
    found = dataset.to_table(columns=["id"], filter=pc.field("id").isin(list(ids)))
    return set(found.column("id").to_pylist())
