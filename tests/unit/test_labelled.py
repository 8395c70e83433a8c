"""Labelled inputs for evaluation, without a model: class-folder zips (zip-slip, limits, junk files),
labels and target columns checked against the classes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from service.errors import (
    MSG_ARCHIVE_NO_CLASS_FOLDERS,
    MSG_ARCHIVE_NOT_ZIP,
    MSG_ARCHIVE_TOO_LARGE,
    MSG_ARCHIVE_TOO_MANY,
    MSG_ARCHIVE_UNSAFE_PATH,
    MSG_EVAL_MISSING_LABELS,
    MSG_EVAL_NO_TARGET,
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
)
from service.inference.labelled import read_class_archive, resolve_labels, target_codes, target_labels

LIMITS = {"max_files": 10, "max_bytes": 10_000}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_labels_come_from_each_files_class_folder_in_name_order() -> None:
    data = _zip({"test/dog/2.png": b"d", "cat/1.png": b"c", "cat/0.png": b"c0"})
    uploads, labels = read_class_archive(data, filename="a.zip", **LIMITS)
    assert [u.filename for u in uploads] == ["cat/0.png", "cat/1.png", "test/dog/2.png"]
    assert labels == ["cat", "cat", "dog"]
    assert [u.data for u in uploads] == [b"c0", b"c", b"d"]


def test_archiver_junk_is_ignored() -> None:
    data = _zip({"cat/1.png": b"c", "__MACOSX/cat/._1.png": b"x", "cat/.DS_Store": b"x", "cat/._2.png": b"x"})
    uploads, labels = read_class_archive(data, filename="a.zip", **LIMITS)
    assert [u.filename for u in uploads] == ["cat/1.png"] and labels == ["cat"]


@pytest.mark.parametrize("path", ["../evil/x.png", "cat/../../x.png", "/abs/cat/x.png", "C:/cat/x.png"])
def test_zip_slip_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        read_class_archive(_zip({"cat/1.png": b"c", path: b"x"}), filename="a.zip", **LIMITS)
    assert refused.value.detail == MSG_ARCHIVE_UNSAFE_PATH.format(path=path)
    assert refused.value.errors[0]["type"] == "unsafe_path"


def test_files_outside_class_folders_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        read_class_archive(_zip({"cat/1.png": b"c", "loose.png": b"x"}), filename="a.zip", **LIMITS)
    assert refused.value.detail == MSG_ARCHIVE_NO_CLASS_FOLDERS.format(filename="a.zip")


def test_an_empty_archive_has_no_class_folders() -> None:
    with pytest.raises(InvalidInput):
        read_class_archive(_zip({}), filename="a.zip", **LIMITS)


def test_too_many_files_is_413() -> None:
    members = {f"cat/{i}.png": b"c" for i in range(11)}
    with pytest.raises(PayloadTooLarge) as refused:
        read_class_archive(_zip(members), filename="a.zip", **LIMITS)
    assert refused.value.detail == MSG_ARCHIVE_TOO_MANY.format(count=11, limit=10)


def test_too_many_unpacked_bytes_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        read_class_archive(_zip({"cat/1.png": b"\0" * 10_001}), filename="a.zip", **LIMITS)
    assert refused.value.detail == MSG_ARCHIVE_TOO_LARGE.format(limit_mb=10_000 / 2**20)


def test_not_a_zip_is_400() -> None:
    with pytest.raises(BadRequest) as refused:
        read_class_archive(b"PK\x03\x04 but not really", filename="a.zip", **LIMITS)
    assert refused.value.detail == MSG_ARCHIVE_NOT_ZIP.format(filename="a.zip")


def test_labels_match_classes_ignoring_surrounding_whitespace() -> None:
    assert resolve_labels(["cat ", " <=50K", "dog"], ["cat", " <=50K", "dog"], where="labels") == [
        "cat",
        " <=50K",
        "dog",
    ]


def test_unknown_labels_are_each_located() -> None:
    with pytest.raises(InvalidInput) as refused:
        resolve_labels(["cat", "cow", "emu"], ["cat", "dog"], where="labels")
    assert [e["loc"] for e in refused.value.errors] == [["labels", 1], ["labels", 2]]
    assert "cow" in refused.value.detail and "emu" in refused.value.detail


def test_target_column_missing_or_blank_is_422() -> None:
    frame = pd.DataFrame({"x": ["1", "2"], "y": ["a", None]})
    with pytest.raises(InvalidInput) as no_target:
        target_labels(frame, target="label", classes=["a"], filename="t.csv")
    assert no_target.value.detail == MSG_EVAL_NO_TARGET.format(filename="t.csv", target="label")
    with pytest.raises(InvalidInput) as blank:
        target_labels(frame, target="y", classes=["a"], filename="t.csv")
    assert blank.value.detail == MSG_EVAL_MISSING_LABELS.format(count=1, target="y")
    assert blank.value.errors[0]["loc"] == ["rows", 1, "y"]


def test_a_target_column_resolved_in_arrow_says_what_resolve_labels_says() -> None:
    """Exact and whitespace-padded labels to class indices; blank and whitespace-only cells are missing;
    unknown labels get resolve_labels' error, every row located."""
    classes = [" <=50K", " >50K"]
    cells = pa.array([" <=50K", ">50K", " >50K ", "<=50K"])
    assert target_codes(cells, target="y", classes=classes).tolist() == [0, 1, 1, 0]
    with pytest.raises(InvalidInput) as blank:
        target_codes(pa.array([" >50K", "  ", None]), target="y", classes=classes)
    assert blank.value.detail == MSG_EVAL_MISSING_LABELS.format(count=2, target="y")
    assert [e["loc"] for e in blank.value.errors] == [["rows", 1, "y"], ["rows", 2, "y"]]
    labels = ["cat", "cow", "dog", "emu"]
    with pytest.raises(InvalidInput) as by_arrow:
        target_codes(pa.array(labels), target="y", classes=["cat", "dog"])
    with pytest.raises(InvalidInput) as by_list:
        resolve_labels(labels, ["cat", "dog"], where="rows")
    assert (by_arrow.value.detail, by_arrow.value.errors) == (by_list.value.detail, by_list.value.errors)
    assert (
        np.asarray(target_codes(pa.array(["dog"] * 3), target="y", classes=["cat", "dog"])).dtype == np.int64
    )
