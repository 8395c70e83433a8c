"""The payload log: a sampled copy of what was asked and answered, as a hive-partitioned Parquet dataset.

`LOG_DIR/predictions/model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<seq>.parquet`: pandas, pyarrow, DuckDB
and Spark read the folder as one table (the partition folders give `model` and `date`). A record is one
request's items (or the sampled share of them, `LOG_SAMPLE`): `id` (`<X-Request-ID>-<k>`, as the answer
gives it), `ts`, `version`, `protocol` (v1, v2, grpc), `latency_ms` (the request's time until its model
answered), the input columns of its kind and the output columns of its task (`columns.py`).

Never on the request path: a request only appends references to a bounded queue (`LOG_QUEUE` items); a
writer thread builds the columns and writes a file per model and day every `LOG_FLUSH_S` seconds, and on
`close` (a graceful stop: SIGTERM, a reload, a worker's exit) everything queued; the columns themselves are
built every second in between, so the writer's Python work comes in short bursts. Files are written under a
hidden name and renamed when complete, so a reader never sees half a file; a flush larger than
`LOG_ROLL_MB` is cut into several files. A full queue or a failing write drops records and counts them
(`fastai_serve_payload_log_dropped_total{reason}`, a warning, `/health/ready`'s `payload_log`), and a
prediction never waits for the log. `LOG_RETENTION_DAYS` removes older `date=` folders.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from service.errors import MSG_PAYLOAD_LOG_DROPPED
from service.monitoring.columns import LOG_INPUTS, LOG_OUTPUTS, InputsThunk, arrow_column, take
from service.telemetry import Metrics, RequestContext

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
# At most one warning per reason this often: a full disk must not flood the log it cannot write to.
WARN_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0
BUILD_EVERY_S = 1.0


@dataclass(frozen=True)
class LogOptions:
    folder: Path
    sample: float = 1.0
    flush_s: float = 10.0
    max_items: int = 100_000
    roll_mb: float = 64.0
    retention_days: int = 0  # 0: keep everything


@dataclass(frozen=True)
class Record:
    """One request's logged items, as references until the writer builds them."""

    model: str
    version: str | None
    protocol: str
    ts: dt.datetime
    latency_ms: float
    ids: list[str]
    rows: np.ndarray | None  # the sampled items' positions in the request (None: all)
    inputs: InputsThunk
    outputs: Callable[[], dict[str, Any]]

    @property
    def n(self) -> int:
        return len(self.ids)


class PayloadLog:
    """This process's payload log: `offer` on the request path, a writer thread for the rest."""

    def __init__(self, options: LogOptions, *, metrics: Metrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
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
        thunk = LOG_INPUTS[predictor.kind](predictor, prepared)
        outputs_of = LOG_OUTPUTS.get(predictor.head.task)
        if thunk is None or outputs_of is None:  # not a prediction (a ranking), or a task never logged
            return
        ids = [f"{context.request_id}-{start + i}" for i in (rows.tolist() if rows is not None else range(n))]
        record = Record(
            model=entry.name,
            version=entry.version,
            protocol=context.protocol,
            ts=dt.datetime.now(dt.UTC),
            latency_ms=(time.perf_counter() - context.started) * 1000,
            ids=ids,
            rows=rows,
            inputs=thunk,
            outputs=lambda: outputs_of(predictor, prepared, outputs),
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
        groups: dict[tuple[str, str, str | None], list[Record]] = collections.defaultdict(list)
        for record in records:
            groups[(record.model, record.ts.date().isoformat(), record.version)].append(record)
        for (model, day, _), group in groups.items():
            try:
                table = _table(group)
            except Exception as exc:  # a record the codecs cannot take must not stop the others
                self._drop(sum(r.n for r in group), "write_failed", f"{type(exc).__name__}: {exc}")
                continue
            self._built[(model, day)].append(table)
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


def _table(records: list[Record]) -> pa.Table:
    """Records of one model version as one table: the header fields, then the inputs and the outputs,
    each column concatenated over the records before it becomes one Arrow array (per-record arrays cost
    most of a flush)."""
    ids: list[str] = []
    ts: list[dt.datetime] = []
    protocols: list[str] = []
    latencies: list[float] = []
    parts: dict[str, list[Any]] = {}
    for record in records:
        n = record.n
        ids += record.ids
        ts += [record.ts] * n
        protocols += [record.protocol] * n
        latencies += [record.latency_ms] * n
        assert record.inputs is not None
        for columns in (record.inputs(), record.outputs()):
            for name, values in columns.items():
                parts.setdefault(name, []).append(
                    values if record.rows is None else take(values, record.rows)
                )
    table: dict[str, pa.Array] = {
        "id": pa.array(ids, type=pa.string()),
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "version": pa.array([records[0].version] * len(ids), type=pa.string()),
        "protocol": pa.array(protocols, type=pa.string()),
        "latency_ms": pa.array(latencies, type=pa.float64()),
    }
    table.update({name: arrow_column(values) for name, values in parts.items()})
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
    import pyarrow.compute as pc

    dataset = log_dataset(folder, model=model)
    if dataset is None:
        return set()
    found = dataset.to_table(columns=["id"], filter=pc.field("id").isin(list(ids)))
    return set(found.column("id").to_pylist())
