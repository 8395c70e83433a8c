"""CSV in and out for tabular models: read an upload safely, write the scored copy."""

from __future__ import annotations

import csv
import io
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


def read_csv_upload(data: bytes, *, filename: str) -> pd.DataFrame:
    """Parse an uploaded CSV as text cells (blank = missing); 415 for binary, 400 for unparsable."""
    if b"\x00" in data[:4096] or sniff_format(data) is not None:
        raise UnsupportedMedia(MSG_CSV_MEDIA.format(filename=filename))
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
    # Cells keep their exact text (a model trained on ", "-separated data knows " Private"); numbers parse
    # with surrounding spaces anyway, other values match tolerantly, and whitespace-only cells are missing.
    frame = frame.apply(lambda column: column.where(column.isna() | (column.str.strip() != ""), None))
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
    out = frame.copy()
    out["prediction"] = labels_of(probs, classes)
    for j, cls in enumerate(classes):
        out[f"p_{cls}"] = np.round(probs[:, j].astype(np.float64), 6)
    return str(out.to_csv(index=False))
