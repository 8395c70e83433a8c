"""Labelled inputs for evaluation: a CSV's target columns, per-file labels and zip archives with a folder per
class, checked against the model's task (its classes, targets or points). No model runs here: the items are
then scored by the same predictors (and the same batches) as the predict endpoints.

`TABLE_TARGETS` (a CSV's target columns) and `LABEL_TARGETS` (one `labels` text per image) are the evaluate
front door's codecs per task; both give the `actual` array `reports.scores.SCORERS` takes.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    MSG_EVAL_BAD_LABEL,
    MSG_EVAL_BAD_TARGETS,
    MSG_EVAL_MISSING_LABELS,
    MSG_EVAL_NO_TARGET,
    MSG_EVAL_UNKNOWN_LABELS,
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
)
from service.inference.csvio import CsvTable, text_cells
from service.inference.images import UploadedImage
from service.inference.masks import check_mask_size, image_size, objects, read_mask
from service.inference.tasks import Task

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


_TRUE, _FALSE = ("1", "true", "yes", "y", "t", "1.0"), ("0", "false", "no", "n", "f", "0.0", "")


def _column(table: CsvTable, target: str) -> pa.Array:
    if target not in table.columns:
        raise _no_target(target, table.filename)
    return table.column(target)


def _bad_rows(cells: pa.Array, bad: np.ndarray, *, target: str, expected: str) -> InvalidInput:
    rows = np.flatnonzero(bad).tolist()
    return InvalidInput(
        MSG_EVAL_BAD_TARGETS.format(count=len(rows), target=target, expected=expected),
        [{"loc": ["rows", i, target], "msg": f"not {expected}", "type": "bad_target"} for i in rows[:100]],
    )


def table_flags(table: CsvTable, *, targets: Sequence[str]) -> np.ndarray:
    """A multi-label model's target columns (one per class: true/false, 1/0, yes/no; blank is false) as
    (n, classes) booleans."""
    flags = []
    for target in targets:
        cells = _column(table, target)
        text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(cells, pa.string()))).fill_null("")
        yes, no = pc.is_in(text, pa.array(_TRUE)), pc.is_in(text, pa.array(_FALSE))
        bad = ~np.asarray(pc.or_(yes, no).to_numpy(zero_copy_only=False), dtype=bool)
        if bad.any():
            raise _bad_rows(cells, bad, target=target, expected="true/false (or 1/0)")
        flags.append(np.asarray(yes.to_numpy(zero_copy_only=False), dtype=bool))
    return np.stack(flags, axis=1)


def table_values(table: CsvTable, *, targets: Sequence[str]) -> np.ndarray:
    """A regression's target columns as (n, targets) float64; 422 for a blank or non-numeric cell."""
    columns = []
    for target in targets:
        cells = _column(table, target)
        text = pc.utf8_trim_whitespace(pc.cast(cells, pa.string()))
        try:
            values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = np.array([_number(v) for v in text.to_pylist()], dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise _bad_rows(cells, bad, target=target, expected="a number")
        columns.append(values)
    return np.stack(columns, axis=1)


def _number(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


# Per task: (table, the model's target columns, the head's classes) -> `actual` for `scores.SCORERS`.
TABLE_TARGETS: dict[Task, Callable[[CsvTable, Sequence[str], Sequence[str]], np.ndarray]] = {
    Task.CLASSIFICATION: lambda table, targets, classes: table_target_codes(
        table, target=targets[0], classes=classes
    ),
    Task.MULTI_LABEL: lambda table, targets, classes: table_flags(table, targets=targets),
    Task.REGRESSION: lambda table, targets, classes: table_values(table, targets=targets),
    Task.RATING: lambda table, targets, classes: table_values(table, targets=targets),
}


def table_label_sets(table: CsvTable, *, target: str, classes: Sequence[str]) -> np.ndarray:
    """One target column of labels joined by ';' (blank: none), as fastai's `MultiCategoryBlock` reads a
    `label_delim` column, as (n, classes) booleans; 422 naming every row with a label not in `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    stripped = {c.strip(): i for i, c in enumerate(classes)}
    cells = _column(table, target).to_pylist()
    flags = np.zeros((len(cells), len(classes)), dtype=bool)
    errors, unknown = [], set()
    for row, text in enumerate(cells):
        for name in (p.strip() for p in str(text or "").split(";")):
            j = index.get(name, stripped.get(name)) if name else None
            if j is not None:
                flags[row, j] = True
            elif name:
                unknown.add(name)
                errors.append(
                    {"loc": ["rows", row, target], "msg": f"unknown label {name!r}", "type": "unknown_label"}
                )
    if errors:
        raise InvalidInput(
            MSG_EVAL_UNKNOWN_LABELS.format(classes=list(classes), labels=sorted(unknown)), errors[:100]
        )
    return flags


# Per task: (table, the target column, the head's classes) -> `actual` for `scores.SCORERS`: a text model's
# one target column (its class, or its labels joined by ';').
TEXT_TARGETS: dict[Task, Callable[[CsvTable, str, Sequence[str]], np.ndarray]] = {
    Task.CLASSIFICATION: lambda table, target, classes: table_target_codes(
        table, target=target, classes=classes
    ),
    Task.MULTI_LABEL: lambda table, target, classes: table_label_sets(table, target=target, classes=classes),
}


# -- one `labels` text per image -------------------------------------------------------------------------
def _label_error(index: int, text: str, expected: str) -> InvalidInput:
    return InvalidInput(
        MSG_EVAL_BAD_LABEL.format(index=index, text=text, expected=expected),
        [{"loc": ["labels", index], "msg": f"not {expected}", "type": "bad_label"}],
    )


def class_codes(labels: Sequence[str], head: Any) -> np.ndarray:
    """Each label as its class's index (a classifier's)."""
    index = {c: i for i, c in enumerate(head.classes)}
    return np.array([index[c] for c in resolve_labels(labels, head.classes, where="labels")], dtype=np.int64)


def class_sets(labels: Sequence[str], head: Any) -> np.ndarray:
    """Each label "a;b" (blank: none) as (n, classes) booleans (a multi-label model's)."""
    classes = list(head.classes)
    index = {c: i for i, c in enumerate(classes)}
    flags = np.zeros((len(labels), len(classes)), dtype=bool)
    for i, text in enumerate(labels):
        names = [part for part in (p.strip() for p in str(text).split(";")) if part]
        for name in resolve_labels(names, classes, where="labels") if names else []:
            flags[i, index[name]] = True
    return flags


def _json(index: int, text: str, expected: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _label_error(index, text, expected) from None


def target_values(labels: Sequence[str], head: Any) -> np.ndarray:
    """Each label as the image's target values: a number (one target), a JSON list in target order, or a
    JSON object by target name; (n, targets)."""
    targets = list(head.targets)
    expected = f"{len(targets)} number(s): a JSON list or an object with keys {targets}"
    rows = []
    for i, text in enumerate(labels):
        value = _json(i, text, expected)
        if isinstance(value, dict) and sorted(value) == sorted(targets):
            value = [value[t] for t in targets]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = [value]
        ok = isinstance(value, list) and len(value) == len(targets)
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise _label_error(i, text, expected)
        if not all(math.isfinite(v) for v in value):
            raise _label_error(i, text, expected)
        rows.append([float(v) for v in value])
    return np.array(rows, dtype=np.float64).reshape(len(labels), len(targets))


def point_lists(labels: Sequence[str], head: Any) -> np.ndarray:
    """Each label as the image's points, JSON [[x, y], ...] in its pixels; (n, points, 2)."""
    k = len(head.targets)
    expected = f"{k} point(s) as JSON [[x, y], ...] in the image's pixels"
    rows = []
    for i, text in enumerate(labels):
        value = _json(i, text, expected)
        ok = isinstance(value, list) and len(value) == k
        ok = ok and all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)
            for p in value
        )
        if not ok:
            raise _label_error(i, text, expected)
        rows.append(value)
    return np.array(rows, dtype=np.float64).reshape(len(labels), k, 2)


@dataclass(frozen=True)
class LabelledMask:
    """An image and its mask (segmentation's label): the `files` and `masks` parts at one position."""

    image: UploadedImage
    mask: UploadedImage


def mask_targets(labels: Sequence[Any], head: Any) -> np.ndarray:
    """Each `LabelledMask`'s mask as (height, width) class indices, checked against the model's classes and
    its image's size (from the image file's header); an object array, one mask per image."""
    masks = []
    for pair in labels:
        mask = read_mask(pair.mask, classes=head.classes)
        size = image_size(pair.image)
        check_mask_size(mask, mask_name=pair.mask.filename, image_name=pair.image.filename, size=size)
        masks.append(mask)
    return objects(masks)


# Per task: (labels, head) -> `actual` for `scores.SCORERS`; the text says what a label looks like.
LABEL_TARGETS: dict[Task, tuple[Callable[[Sequence[str], Any], np.ndarray], str]] = {
    Task.CLASSIFICATION: (class_codes, "a class name"),
    Task.MULTI_LABEL: (class_sets, "class names joined by ';'"),
    Task.REGRESSION: (target_values, "a number, a JSON list of numbers or an object by target"),
    Task.POINTS: (point_lists, "JSON [[x, y], ...] in pixels"),
    Task.SEGMENTATION: (mask_targets, "one `masks` PNG per file: a class index per pixel, the image's size"),
}
# Tasks labelled by a mask image per image (`masks` parts, as `LabelledMask`s) rather than `labels` text.
MASK_TASKS = frozenset({Task.SEGMENTATION})


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
