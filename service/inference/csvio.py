"""CSV in and out for tabular models: read an upload safely, write the scored copy.

Uploads are parsed column-wise by pyarrow's CSV reader into one Arrow table of text cells (about the
upload's size in memory); the model's rows then go through in bounded chunks (`CsvTable.chunks`: Arrow
slices, no copy, no object per row), so a CSV is limited by its bytes, not its rows. Files pyarrow
refuses (ragged rows, bad bytes) and duplicate column names are read by pandas as before, which gives
the same errors and names as always.
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from service.errors import (
    MSG_CSV_EMPTY,
    MSG_CSV_MEDIA,
    MSG_CSV_MISSING_COLUMNS,
    MSG_CSV_UNREADABLE,
    BadRequest,
    InvalidInput,
    UnsupportedMedia,
)
from service.inference.images import sniff_format
from service.inference.tasks import Task

# A file up to this size is parsed whole (every core, one call); a larger one streams a block at a time.
CSV_WHOLE_BYTES = 4 << 20
# A streamed file's block: its rows are what the reader holds at a time.
CSV_BLOCK_BYTES = 1 << 18
# Rows per chunk of a streamed file: its working set is what a large file adds to the server's memory.
CSV_STREAM_CHUNK_ROWS = 8192
# Rows per chunk of a large CSV: big enough that per-chunk costs vanish, small enough to bound memory.
CSV_CHUNK_ROWS = 16384


def text_cells(cells: pd.Series) -> pa.Array:
    """A column of cells as an Arrow string array, nulls where missing (no copy for the Arrow-backed text
    columns pandas makes; typed or mixed columns, as a DataFrame from code may hold, as text)."""
    try:
        return pa.array(cells, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    try:
        return pc.cast(pa.array(cells, from_pandas=True), pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = [None if _is_missing(v) else str(v) for v in cells.to_numpy(dtype=object)]
        return pa.array(text, type=pa.string())


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class SharedFile:
    """An upload's file, read by several passes that each keep their own position.

    pyarrow's reader reads ahead on its own IO threads (some 8 MiB), and a reader given up early (the
    first-block check, a pass stopped by a bad row) can still be reading when the next pass starts: with
    the file's one position shared, that pass would begin mid-file (CI: "Column 'Salary' in
    include_columns does not exist in CSV file"). Reads from all views take turns at the file.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._lock = threading.Lock()

    def view(self) -> _FileView:
        """A reader of the whole file from its start, with a position of its own."""
        return _FileView(self)

    def read_at(self, position: int, size: int) -> bytes:
        with self._lock:
            self._raw.seek(position)
            return self._raw.read(size)

    def size(self) -> int:
        with self._lock:
            return self._raw.seek(0, io.SEEK_END)


class _FileView(io.RawIOBase):
    def __init__(self, shared: SharedFile) -> None:
        super().__init__()
        self._shared = shared
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._shared.read_at(self._position, -1 if size is None else size)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._shared.size()}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


@dataclass(frozen=True)
class CsvChunk:
    """A run of a table's rows, column by column as Arrow text.

    From an upload the columns are slices of the reader's arrays (whitespace-only cells are still text
    there: whoever reads a column treats them as missing, as `frame` does); from a DataFrame (one pandas
    read, or one a caller built) each column is converted when asked for.
    """

    start: int
    source: pa.Table | pd.DataFrame
    names: list[str]

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> CsvChunk:
        return cls(0, frame, [str(c) for c in frame.columns])

    def __len__(self) -> int:
        return len(self.source) if isinstance(self.source, pd.DataFrame) else int(self.source.num_rows)

    def column(self, name: str) -> pa.Array:
        """One column's cells as an Arrow string array (a KeyError for a column the chunk lacks)."""
        if isinstance(self.source, pd.DataFrame):
            return text_cells(self.source[name])
        cells = self.source.column(self.names.index(name))
        return cells.chunk(0) if cells.num_chunks == 1 else cells.combine_chunks()

    def frame(self) -> pd.DataFrame:
        """The chunk as a DataFrame of text cells, blank and whitespace-only cells missing."""
        if isinstance(self.source, pd.DataFrame):
            return self.source
        frame = self.source.to_pandas()
        frame.columns = self.names
        return _blank_is_missing(frame)


@dataclass
class CsvTable:
    """An uploaded CSV's text cells, column-wise, served a bounded chunk at a time.

    `source`: the Arrow table of a small file, read whole; for a large one, the file itself, which each
    pass streams through pyarrow's reader again from a view of its own, so it is never held whole; or the
    DataFrame pandas read.
    """

    source: Any  # pa.Table | SharedFile | pd.DataFrame
    columns: list[str]  # as served: the header's names, stripped
    filename: str = "upload.csv"
    header: list[str] = field(default_factory=list)  # the file's own names, for a streamed file

    def chunks(self, size: int = CSV_CHUNK_ROWS) -> Iterator[CsvChunk]:
        """The table a run of `size` rows at a time (a streamed file's parsing happens here, at most
        `CSV_STREAM_CHUNK_ROWS` at a time)."""
        if isinstance(self.source, pd.DataFrame):
            yield from _frame_chunks(self.source, start=0, size=size)
        elif isinstance(self.source, pa.Table):
            for start in range(0, self.source.num_rows, size):
                yield CsvChunk(start, self.source.slice(start, size), self.columns)
        else:
            yield from self._streamed_chunks(min(size, CSV_STREAM_CHUNK_ROWS))

    def frames(self, size: int = CSV_CHUNK_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row, text cells as a DataFrame) for each run of `size` rows; blank cells are missing."""
        for chunk in self.chunks(size):
            yield chunk.start, chunk.frame()

    def column(self, name: str) -> pa.Array:
        """One column of the whole table as Arrow text (a large file's is streamed, that column only)."""
        cells = self._columns([name])
        return (
            text_cells(cells[name]) if isinstance(cells, pd.DataFrame) else cells.column(0).combine_chunks()
        )

    def frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table (or some of its columns) as one DataFrame."""
        names = self.columns if columns is None else columns
        cells = self._columns(names)
        return cells if isinstance(cells, pd.DataFrame) else CsvChunk(0, cells, names).frame()

    def _columns(self, names: list[str]) -> pa.Table | pd.DataFrame:
        """`names` of every row: an Arrow table, or a DataFrame where pandas read the file."""
        if isinstance(self.source, pd.DataFrame):
            return self.source[names]
        if isinstance(self.source, pa.Table):
            return self.source.select([self.columns.index(c) for c in names])
        try:
            return _open(
                self.source, self.header, include=[self.header[self.columns.index(c)] for c in names]
            )
        except pa.ArrowInvalid:
            return self._pandas_instead()[names]

    def _pandas_instead(self) -> pd.DataFrame:
        """A bad row beyond the first block (ragged, bad UTF-8): pandas says what is wrong, as for any
        file it reads; where it does read the file, its frame serves instead."""
        return _pandas_table(self.source, filename=self.filename).source

    def _streamed_chunks(self, size: int) -> Iterator[CsvChunk]:
        start, pending = 0, None
        try:
            with _open(self.source, self.header, streamed=True) as reader:  # closed if the pass stops early
                for batch in reader:
                    part = pa.Table.from_batches([batch])
                    pending = part if pending is None else pa.concat_tables([pending, part])
                    while pending.num_rows >= size:
                        yield CsvChunk(start, pending.slice(0, size), self.columns)
                        pending, start = pending.slice(size), start + size
        except pa.ArrowInvalid:
            yield from _frame_chunks(self._pandas_instead(), start=start, size=size)
            return
        if pending is not None and pending.num_rows:
            yield CsvChunk(start, pending, self.columns)


def _frame_chunks(frame: pd.DataFrame, *, start: int, size: int) -> Iterator[CsvChunk]:
    names = [str(c) for c in frame.columns]
    for first in range(start, len(frame), size):
        yield CsvChunk(first, frame.iloc[first : first + size].reset_index(drop=True), names)


def _blank_is_missing(frame: pd.DataFrame) -> pd.DataFrame:
    # Cells keep their exact text (a model trained on ", "-separated data knows " Private"); numbers parse
    # with surrounding spaces anyway, other values match tolerantly, and whitespace-only cells are missing.
    return frame.apply(lambda column: column.where(column.isna() | (column.str.strip() != ""), None))


def read_csv_upload(data: bytes, *, filename: str) -> pd.DataFrame:
    """Parse an uploaded CSV as text cells (blank = missing); 415 for binary, 400 for unparsable."""
    return read_csv_table(data, filename=filename).frame()


def read_csv_table(data: bytes | BinaryIO, *, filename: str) -> CsvTable:
    """Parse an uploaded CSV column-wise; 415 for binary or non-UTF-8, 400 unparsable, 422 no rows.

    `data`: the bytes, or a seekable binary file (an upload's spooled file): a file up to
    `CSV_WHOLE_BYTES` is parsed at once, a larger one is checked here (its header and first block) and
    streamed a block at a time by each pass over its chunks, so memory stays bounded by the chunk."""
    source = SharedFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    start = source.view()
    head = start.read(_HEAD_BYTES)
    if b"\x00" in head[:4096] or sniff_format(head) is not None:
        raise UnsupportedMedia(MSG_CSV_MEDIA.format(filename=filename))
    header = _arrow_header(start, head)
    rows = _first_rows(source, header) if header is not None else None
    if header is None or rows is None:
        return _pandas_table(source, filename=filename)
    if rows == 0:
        raise InvalidInput(MSG_CSV_EMPTY.format(filename=filename))
    columns = [c.strip() for c in header]
    if source.size() > CSV_WHOLE_BYTES:
        return CsvTable(source, columns, filename, header)
    try:
        return CsvTable(_open(source, header), columns, filename)
    except pa.ArrowException:  # ragged rows, bad UTF-8 beyond the first block: pandas says what is wrong
        return _pandas_table(source, filename=filename)


def _pandas_table(source: SharedFile, *, filename: str) -> CsvTable:
    """The file as pandas reads it (its errors, its names for duplicate and blank headers)."""
    frame = _read_with_pandas(source.view().read(), filename=filename)
    return CsvTable(frame, [str(c) for c in frame.columns], filename)


_PARSE = pacsv.ParseOptions(newlines_in_values=True)
# The header must be within the first block read (else pandas reads the file, as for any other oddity).
_HEAD_BYTES = 1 << 20


def _arrow_header(source: _FileView, head: bytes) -> list[str] | None:
    """The header, when pyarrow can read the file as it is; None where pandas must decide."""
    first_line = head.split(b"\n", 1)
    if len(first_line) == 1 and len(head) == _HEAD_BYTES:
        return None
    try:
        header = next(csv.reader(io.StringIO(first_line[0].decode("utf-8-sig"))))
    except (StopIteration, UnicodeDecodeError, csv.Error):
        return None
    if len(set(header)) != len(header) or not all(header):
        return None  # pandas names duplicate and blank headers ("a.1", "Unnamed: 1")
    quotes = head.count(b'"') + sum(block.count(b'"') for block in iter(partial(source.read, 1 << 20), b""))
    if quotes % 2:
        return None  # an unterminated quote runs to the end of the file for pyarrow; pandas refuses it
    return header


def _first_rows(source: SharedFile, header: list[str]) -> int | None:
    """Rows in the first block pyarrow parses (0: none at all), or None where it cannot read the file
    or reads another header (a quoted newline in a name) than the first line's."""
    try:
        with _open(source, header, streamed=True, threads=False) as reader:
            if reader.schema.names != header:
                return None
            return next((batch.num_rows for batch in reader if batch.num_rows), 0)
    except pa.ArrowException:
        return None


def _open(
    source: SharedFile,
    header: list[str],
    *,
    include: list[str] | None = None,
    streamed: bool = False,
    threads: bool = True,
) -> Any:
    """The file from its start (a view of its own), every cell as text (blank = null, so a cell keeps its
    exact text: " Private", "007"): one `pa.Table` parsed on every core; with `streamed`, a reader of
    `CSV_BLOCK_BYTES` record batches; with `include`, those columns' table, read a block at a time."""
    file = source.view()
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
        include_columns=include or [],
    )
    if not streamed and include is None:
        read = pacsv.ReadOptions(use_threads=threads, block_size=1 << 22)
        return pacsv.read_csv(
            file,
            read_options=read,
            parse_options=_PARSE,
            convert_options=convert,
            memory_pool=_memory_pool(),
        )
    read = pacsv.ReadOptions(use_threads=threads, block_size=CSV_BLOCK_BYTES)
    reader = pacsv.open_csv(
        file, read_options=read, parse_options=_PARSE, convert_options=convert, memory_pool=_memory_pool()
    )
    return reader if streamed else reader.read_all()


@cache
def _memory_pool() -> pa.MemoryPool:
    """jemalloc where the wheel has it, handing freed pages back at once (Arrow's own setting waits a
    second): Arrow's default pool (mimalloc) keeps a large file's parse buffers for the life of the
    process, and with the delay a first 100,000-row file's peak RSS growth was 3.1x its size, 2.2x
    without."""
    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return pa.system_memory_pool()
    pa.jemalloc_set_decay_ms(0)
    return pool


def _read_with_pandas(data: bytes, *, filename: str) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedMedia(MSG_CSV_MEDIA.format(filename=filename)) from None
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="error",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(MSG_CSV_UNREADABLE.format(filename=filename, reason=reason)) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = _blank_is_missing(frame)
    if frame.empty:
        raise InvalidInput(MSG_CSV_EMPTY.format(filename=filename))
    return frame


def rows_for(frame: pd.DataFrame, columns: list[str], *, filename: str) -> list[dict[str, Any]]:
    """The model's columns of every CSV row as dicts (missing cells as None); other columns are kept aside."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        detail = MSG_CSV_MISSING_COLUMNS.format(filename=filename, columns=", ".join(missing))
        raise InvalidInput(
            detail, [{"loc": ["file", c], "msg": "column missing", "type": "missing"} for c in missing]
        )
    return cells_as_rows(frame, columns)


def cells_as_rows(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """`columns` of each row as a dict, blank cells as None (what a JSON client sends for them)."""
    subset = frame[columns].astype(object).where(frame[columns].notna(), None)
    rows: list[dict[str, Any]] = subset.to_dict(orient="records")
    return rows


# The CSV front door's codec per task: (head, outputs, threshold) -> the prediction columns, by name.
def _classified(head: Any, outputs: np.ndarray, threshold: float | None) -> dict[str, Any]:
    columns: dict[str, Any] = {"prediction": head.labels(outputs)}
    columns.update(_probabilities(head.classes, outputs))
    return columns


def _multi_labelled(head: Any, outputs: np.ndarray, threshold: float | None) -> dict[str, Any]:
    classes = head.classes
    chosen = head.predicted(outputs, threshold).tolist()
    joined = [";".join(c for c, on in zip(classes, flags, strict=True) if on) for flags in chosen]
    return {"prediction": joined, **_probabilities(classes, outputs)}


def _regressed(head: Any, outputs: np.ndarray, threshold: float | None) -> dict[str, Any]:
    targets = head.targets
    if len(targets) == 1:
        return {"prediction": outputs[:, 0].astype(np.float64)}
    return {f"prediction_{t}": outputs[:, j].astype(np.float64) for j, t in enumerate(targets)}


def _rated(head: Any, outputs: np.ndarray, threshold: float | None) -> dict[str, Any]:
    # NaN (an unknown user or item) is an empty cell.
    return {"prediction": outputs[:, 0].astype(np.float64)}


def _probabilities(classes: list[str], outputs: np.ndarray) -> dict[str, Any]:
    return {f"p_{c}": np.round(outputs[:, j].astype(np.float64), 6) for j, c in enumerate(classes)}


CSV_COLUMNS: dict[Task, Callable[[Any, np.ndarray, float | None], dict[str, Any]]] = {
    Task.CLASSIFICATION: _classified,
    Task.MULTI_LABEL: _multi_labelled,
    Task.REGRESSION: _regressed,
    Task.RATING: _rated,
}


def scored_csv(frame: pd.DataFrame, outputs: np.ndarray, head: Any, *, threshold: float | None = None) -> str:
    """One frame with the prediction columns of `head`'s task (see `scored_csv_parts`)."""
    return _scored_part(frame, CSV_COLUMNS[head.task](head, outputs, threshold), header=True)


def scored_csv_parts(
    table: CsvTable,
    outputs: np.ndarray,
    head: Any,
    *,
    threshold: float | None = None,
    ids: list[str] | None = None,
) -> Iterator[str]:
    """The input CSV plus the prediction columns of `head`'s task, a chunk of text at a time (the response
    streams them): classification `prediction` + `p_<class>`, multi_label `prediction` (labels joined by
    `;`) + `p_<class>`, regression `prediction` (one target) or `prediction_<target>` (several)."""
    for start, frame in table.frames():
        part = outputs[start : start + len(frame)]
        predicted = CSV_COLUMNS[head.task](head, part, threshold)
        if ids is not None:  # each row's prediction id (as the JSON answer's `id`), before its columns
            predicted = {"prediction_id": ids[start : start + len(frame)], **predicted}
        yield _scored_part(frame, predicted, header=start == 0)


# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralise(column: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula get a leading `'`; numbers (-1.5) stay numbers."""
    text = column.astype(object)
    present = text.notna()
    cells = text[present].astype(str)
    risky = cells.str.match(_FORMULA_START) & ~cells.str.match(_NUMBER)
    if not risky.any():
        return column
    out = text.copy()
    out[risky[risky].index] = "'" + cells[risky]
    return out


def _scored_part(frame: pd.DataFrame, predicted: dict[str, Any], *, header: bool) -> str:
    out = frame.apply(neutralise)
    out.columns = [str(neutralise(pd.Series([c])).iloc[0]) for c in frame.columns]
    for name, values in predicted.items():  # labels are text a spreadsheet might run; numbers are not
        out[name] = neutralise(pd.Series(values, index=out.index)) if isinstance(values, list) else values
    return str(out.to_csv(index=False, header=header))
