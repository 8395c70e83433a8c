"""CSV in and out for tabular models: read an upload safely, write the scored copy.

Uploads are parsed column-wise by pyarrow's CSV reader into one Arrow table of text cells (about the
upload's size in memory); the model's rows then go through in bounded chunks (`CsvTable.frames`), so a
CSV is limited by its bytes, not its rows. Files pyarrow refuses (ragged rows, bad bytes) and duplicate
column names are read by pandas as before, which gives the same errors and names as always.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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
from service.inference.predictor import labels_of

# Rows per chunk of a large CSV: big enough that per-chunk costs vanish, small enough to bound memory.
CSV_CHUNK_ROWS = 8192


@dataclass
class CsvTable:
    """An uploaded CSV's text cells, column-wise (an Arrow table; a DataFrame when pandas read it)."""

    source: Any  # pyarrow.Table | pd.DataFrame
    columns: list[str]

    def __len__(self) -> int:
        return int(self.source.num_rows if not isinstance(self.source, pd.DataFrame) else len(self.source))

    def frames(self, size: int = CSV_CHUNK_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row, text cells as a DataFrame) for each run of `size` rows; blank cells are missing."""
        for start in range(0, len(self), size):
            yield start, self._frame(start, size)

    def frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table (or some of its columns) as one DataFrame."""
        if columns is None:
            return self._frame(0, len(self))
        if isinstance(self.source, pd.DataFrame):
            return self.source[columns]
        picked = self.source.select([self.columns.index(c) for c in columns])
        return CsvTable(picked, columns)._frame(0, len(self))

    def _frame(self, start: int, size: int) -> pd.DataFrame:
        if isinstance(self.source, pd.DataFrame):
            return self.source.iloc[start : start + size].reset_index(drop=True)
        frame = self.source.slice(start, size).to_pandas()
        frame.columns = self.columns
        return _blank_is_missing(frame)


def _blank_is_missing(frame: pd.DataFrame) -> pd.DataFrame:
    # Cells keep their exact text (a model trained on ", "-separated data knows " Private"); numbers parse
    # with surrounding spaces anyway, other values match tolerantly, and whitespace-only cells are missing.
    return frame.apply(lambda column: column.where(column.isna() | (column.str.strip() != ""), None))


def read_csv_upload(data: bytes, *, filename: str) -> pd.DataFrame:
    """Parse an uploaded CSV as text cells (blank = missing); 415 for binary, 400 for unparsable."""
    return read_csv_table(data, filename=filename).frame()


def read_csv_table(data: bytes, *, filename: str) -> CsvTable:
    """Parse an uploaded CSV column-wise; 415 for binary or non-UTF-8, 400 unparsable, 422 no rows."""
    if b"\x00" in data[:4096] or sniff_format(data) is not None:
        raise UnsupportedMedia(MSG_CSV_MEDIA.format(filename=filename))
    table = _read_with_arrow(data)
    if table is None:
        frame = _read_with_pandas(data, filename=filename)
        return CsvTable(frame, [str(c) for c in frame.columns])
    columns = [str(c).strip() for c in table.column_names]
    if table.num_rows == 0:
        raise InvalidInput(MSG_CSV_EMPTY.format(filename=filename))
    return CsvTable(table, columns)


def _read_with_arrow(data: bytes) -> Any:
    """The CSV as an Arrow table of strings (blank = null), or None where pandas must decide."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        header = next(csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")))
    except (StopIteration, UnicodeDecodeError, csv.Error):
        return None
    if len(set(header)) != len(header) or not all(header):
        return None  # pandas names duplicate and blank headers ("a.1", "Unnamed: 1")
    if data.count(b'"') % 2:
        return None  # an unterminated quote runs to the end of the file for pyarrow; pandas refuses it
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None  # ragged rows, bad UTF-8, ...: pandas says what is wrong, as it always has


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


def scored_csv(frame: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> str:
    """The input CSV plus `prediction` and one `p_<class>` column per class."""
    return _scored_part(frame, probs, classes, header=True)


def scored_csv_parts(table: CsvTable, probs: np.ndarray, classes: list[str]) -> Iterator[str]:
    """`scored_csv` of a whole table, a chunk of text at a time (the response streams them)."""
    for start, frame in table.frames():
        yield _scored_part(frame, probs[start : start + len(frame)], classes, header=start == 0)


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


def _scored_part(frame: pd.DataFrame, probs: np.ndarray, classes: list[str], *, header: bool) -> str:
    out = frame.apply(neutralise)
    out.columns = [str(neutralise(pd.Series([c])).iloc[0]) for c in frame.columns]
    out["prediction"] = neutralise(pd.Series(labels_of(probs, classes), index=out.index))
    for j, cls in enumerate(classes):
        out[f"p_{cls}"] = np.round(probs[:, j].astype(np.float64), 6)
    return str(out.to_csv(index=False, header=header))
