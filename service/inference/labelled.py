"""Labelled inputs for evaluation: a CSV's target column, per-file labels and zip archives with a folder per
class, checked against the model's classes. No model runs here: the items are then scored by the same
predictors (and the same batches) as the predict endpoints."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.errors import (
    MSG_ARCHIVE_NO_CLASS_FOLDERS,
    MSG_ARCHIVE_NOT_ZIP,
    MSG_ARCHIVE_TOO_LARGE,
    MSG_ARCHIVE_TOO_MANY,
    MSG_ARCHIVE_UNSAFE_PATH,
    MSG_EVAL_MISSING_LABELS,
    MSG_EVAL_NO_TARGET,
    MSG_EVAL_UNKNOWN_LABELS,
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
)
from service.inference.csvio import CsvTable, text_cells
from service.inference.images import UploadedImage

# Images are decoded and scored this many at a time, so a large archive never holds every decoded image.
EVAL_CHUNK = 256
# Folders and files that archivers add and that are never training data.
_IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


def resolve_labels(labels: Sequence[Any], classes: Sequence[str], *, where: str) -> list[str]:
    """Each label as one of `classes` (surrounding whitespace ignored); 422 naming every unknown label."""
    known = set(classes)
    stripped = {c.strip(): c for c in classes}
    resolved, unknown = [], []
    for i, label in enumerate(labels):
        text = str(label)
        match = text if text in known else stripped.get(text.strip())
        if match is None:
            unknown.append((i, text))
        resolved.append(match or text)
    if unknown:
        names = sorted({text for _, text in unknown})
        raise InvalidInput(
            MSG_EVAL_UNKNOWN_LABELS.format(classes=list(classes), labels=names),
            [
                {"loc": [where, i], "msg": f"unknown label {text!r}", "type": "unknown_label"}
                for i, text in unknown
            ],
        )
    return resolved


def target_labels(frame: pd.DataFrame, *, target: str, classes: Sequence[str], filename: str) -> list[str]:
    """The target column of a CSV as a DataFrame, checked against the model's classes."""
    if target not in frame.columns:
        raise _no_target(target, filename)
    codes = target_codes(text_cells(frame[target]), target=target, classes=classes)
    return [classes[i] for i in codes.tolist()]


def table_target_codes(table: CsvTable, *, target: str, classes: Sequence[str]) -> np.ndarray:
    """`target_codes` of an uploaded CSV's target column (a large file's is streamed, that column only)."""
    if target not in table.columns:
        raise _no_target(target, table.filename)
    return target_codes(table.column(target), target=target, classes=classes)


def target_codes(cells: pa.Array, *, target: str, classes: Sequence[str]) -> np.ndarray:
    """The index in `classes` of each cell of a CSV's target column (text; surrounding whitespace ignored),
    resolved column-wise in Arrow: a large file's labels never become Python objects. 422 for missing
    (blank) labels, then for unknown ones, as `resolve_labels` says them."""
    trimmed = pc.utf8_trim_whitespace(cells)
    missing = pc.or_kleene(pc.is_null(cells), pc.equal(trimmed, "")).fill_null(True)
    if pc.any(missing).as_py():
        rows = np.flatnonzero(missing.to_numpy(zero_copy_only=False)).tolist()
        raise InvalidInput(
            MSG_EVAL_MISSING_LABELS.format(count=len(rows), target=target),
            [{"loc": ["rows", i, target], "msg": "missing label", "type": "missing"} for i in rows[:100]],
        )
    exact = pc.index_in(cells, value_set=pa.array(list(classes), type=pa.string()))
    if not exact.null_count:
        return np.asarray(exact.to_numpy(), dtype=np.int64)
    loose = pc.index_in(trimmed, value_set=pa.array([c.strip() for c in classes], type=pa.string()))
    codes = pc.coalesce(exact, loose)
    if codes.null_count:  # the per-label path names every unknown label exactly as for image folders
        resolve_labels(cells.to_pylist(), classes, where="rows")
    return np.asarray(codes.to_numpy(), dtype=np.int64)


def _no_target(target: str, filename: str) -> InvalidInput:
    return InvalidInput(
        MSG_EVAL_NO_TARGET.format(filename=filename, target=target),
        [{"loc": ["file", target], "msg": "column missing", "type": "missing"}],
    )


def read_class_archive(
    data: bytes, *, filename: str, max_files: int, max_bytes: int
) -> tuple[list[UploadedImage], list[str]]:
    """Images and their labels from a zip with a folder per class (`cat/1.jpg`, or `test/cat/1.jpg`).

    Sizes are checked from the zip's directory before anything is decompressed, and each member is read
    with a cap, so a zip bomb that lies in its directory still stops at the limit.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise BadRequest(MSG_ARCHIVE_NOT_ZIP.format(filename=filename)) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not _ignored(m.filename)]
        for member in members:
            path = PurePosixPath(member.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
                raise InvalidInput(
                    MSG_ARCHIVE_UNSAFE_PATH.format(path=member.filename),
                    [{"loc": ["archive", member.filename], "msg": "unsafe path", "type": "unsafe_path"}],
                )
        if len(members) > max_files:
            raise PayloadTooLarge(MSG_ARCHIVE_TOO_MANY.format(count=len(members), limit=max_files))
        if sum(m.file_size for m in members) > max_bytes:
            raise PayloadTooLarge(MSG_ARCHIVE_TOO_LARGE.format(limit_mb=max_bytes / 2**20))
        if not members or any(len(PurePosixPath(m.filename).parts) < 2 for m in members):
            raise InvalidInput(MSG_ARCHIVE_NO_CLASS_FOLDERS.format(filename=filename))
        uploads, labels, total = [], [], 0
        for member in sorted(members, key=lambda m: m.filename):
            with archive.open(member) as stream:
                content = stream.read(max_bytes - total + 1)
            total += len(content)
            if total > max_bytes:
                raise PayloadTooLarge(MSG_ARCHIVE_TOO_LARGE.format(limit_mb=max_bytes / 2**20))
            path = PurePosixPath(member.filename)
            uploads.append(UploadedImage(filename=member.filename, data=content))
            labels.append(path.parent.name)
    return uploads, labels


def _ignored(name: str) -> bool:
    return (
        name.startswith(_IGNORED[0])
        or PurePosixPath(name).name in _IGNORED[1:]
        or PurePosixPath(name).name.startswith("._")
    )
