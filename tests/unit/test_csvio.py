"""Reading CSV uploads and writing the scored copy, without a model: encodings, delimiters, blank cells,
BOM, binary files and ragged rows."""

from __future__ import annotations

import io
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from service.errors import (
    MSG_CSV_EMPTY,
    MSG_CSV_MEDIA,
    MSG_CSV_MISSING_COLUMNS,
    BadRequest,
    InvalidInput,
    UnsupportedMedia,
)
from service.inference import csvio
from service.inference.csvio import (
    CSV_CHUNK_ROWS,
    cells_as_rows,
    read_csv_table,
    read_csv_upload,
    rows_for,
    scored_csv,
)
from service.inference.tasks import ClassificationHead
from tests.helpers import image_bytes


def test_cells_are_text_and_blank_cells_are_missing() -> None:
    frame = read_csv_upload(b"age,workclass,note\n39, Private,NA\n,   ,x\n", filename="a.csv")
    assert list(frame.columns) == ["age", "workclass", "note"]
    # Exact text is kept (a model trained on ", "-separated data knows " Private"); "NA" is a value.
    assert frame.iloc[0].tolist() == ["39", " Private", "NA"]
    assert frame.iloc[1].isna().tolist() == [True, True, False]


def test_a_utf8_bom_does_not_reach_the_first_column_name() -> None:
    frame = read_csv_upload("\ufeffage,city\n1,Zürich\n".encode(), filename="bom.csv")
    assert list(frame.columns) == ["age", "city"]
    assert frame.iloc[0].tolist() == ["1", "Zürich"]


def test_header_names_are_stripped() -> None:
    frame = read_csv_upload(b" age , city \n1,x\n", filename="h.csv")
    assert list(frame.columns) == ["age", "city"]


def test_quoted_fields_keep_their_delimiters_and_newlines() -> None:
    frame = read_csv_upload(b'name,city\n"Smith, J","a\nb"\n', filename="q.csv")
    assert frame.iloc[0].tolist() == ["Smith, J", "a\nb"]


def test_the_delimiter_is_a_comma() -> None:
    # A semicolon file is one column to a comma parser: the model's columns are then reported missing.
    frame = read_csv_upload(b"age;city\n1;x\n", filename="semi.csv")
    assert list(frame.columns) == ["age;city"]
    with pytest.raises(InvalidInput) as missing:
        rows_for(frame, ["age", "city"], filename="semi.csv")
    assert missing.value.detail == MSG_CSV_MISSING_COLUMNS.format(filename="semi.csv", columns="age, city")
    assert [e["loc"] for e in missing.value.errors] == [["file", "age"], ["file", "city"]]


@pytest.mark.parametrize(
    "data",
    [
        "age,city\n1,Zürich\n".encode("latin-1"),  # not UTF-8
        image_bytes(fmt="PNG"),  # an image sent as the CSV
        b"age,city\n1,\x00\x00\n",  # NUL bytes: binary
    ],
    ids=["latin-1", "png", "nul"],
)
def test_binary_or_non_utf8_uploads_are_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia) as refused:
        read_csv_upload(data, filename="x.csv")
    assert refused.value.detail == MSG_CSV_MEDIA.format(filename="x.csv")


@pytest.mark.parametrize("data", [b"", b"a,b\n1,2\n1,2,3\n"], ids=["empty", "ragged"])
def test_unparsable_csv_is_400(data: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        read_csv_upload(data, filename="bad.csv")
    assert refused.value.status == 400 and "bad.csv" in refused.value.detail


def test_a_header_without_rows_is_422() -> None:
    with pytest.raises(InvalidInput) as refused:
        read_csv_upload(b"age,city\n", filename="e.csv")
    assert refused.value.detail == MSG_CSV_EMPTY.format(filename="e.csv")


def test_rows_keep_only_the_models_columns_with_none_for_blanks() -> None:
    frame = read_csv_upload(b"age,city,extra\n1,x,9\n,y,8\n", filename="r.csv")
    assert rows_for(frame, ["city", "age"], filename="r.csv") == [
        {"city": "x", "age": "1"},
        {"city": "y", "age": None},
    ]
    assert cells_as_rows(frame, ["age"]) == [{"age": "1"}, {"age": None}]


def test_scored_csv_adds_the_prediction_and_a_probability_per_class() -> None:
    frame = read_csv_upload(b"age,city\n1,x\n2,y\n", filename="s.csv")
    probs = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    lines = scored_csv(frame, probs, ClassificationHead(["no", "yes"])).splitlines()
    assert lines == ["age,city,prediction,p_no,p_yes", "1,x,yes,0.25,0.75", "2,y,no,0.9,0.1"]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-", "'-"),
        ("-1.5", "-1.5"),
        ("+3e5", "+3e5"),
        ("a=b", "a=b"),
    ],
)
def test_scored_csv_neutralises_formula_cells(cell: str, written: str) -> None:
    frame = pd.DataFrame({"note": [cell], "n": ["-7"]})
    out = scored_csv(frame, np.array([[0.5, 0.5]], dtype=np.float32), ClassificationHead(["=no", "yes"]))
    # numbers stay numbers; the label is echoed text too
    assert out.split("\n")[1] == f"{written},-7,'=no,0.5,0.5"


def test_scored_csv_neutralises_header_cells() -> None:
    frame = pd.DataFrame({"=cmd()": ["x"]})
    out = scored_csv(frame, np.array([[1.0]], dtype=np.float32), ClassificationHead(["a"]))
    assert out.splitlines()[0] == "'=cmd(),prediction,p_a"


@pytest.fixture(params=["whole", "streamed"])
def streamed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test twice: files read whole, and (any file over 1 KiB) streamed in 1 KiB blocks."""
    if request.param == "streamed":
        monkeypatch.setattr(csvio, "CSV_WHOLE_BYTES", 1024)
        monkeypatch.setattr(csvio, "CSV_BLOCK_BYTES", 1024)
    return bool(request.param == "streamed")


def _big(rows: int) -> bytes:
    lines = ["age,city"] + [f"{i},{'' if i % 7 == 0 else ' c' + str(i % 5)}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_a_large_csv_is_read_column_wise_and_served_in_chunks(streamed: bool) -> None:
    data = _big(3 * CSV_CHUNK_ROWS + 5)
    table = read_csv_table(data, filename="big.csv")
    assert table.columns == ["age", "city"]
    assert isinstance(table.source, pa.Table) != streamed  # a streamed table holds its file, not the rows
    whole = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
    starts = []
    for start, frame in table.frames():
        starts.append(start)
        expected = whole.iloc[start : start + len(frame)].reset_index(drop=True)
        expected["city"] = expected["city"].where(expected["city"].notna(), None)
        assert frame.astype(object).where(frame.notna(), None).equals(expected.astype(object))
    step = csvio.CSV_STREAM_CHUNK_ROWS if streamed else CSV_CHUNK_ROWS  # a streamed file's are smaller
    assert starts == list(range(0, 3 * CSV_CHUNK_ROWS + 5, step))
    assert table.frame(["city"]).iloc[7:9, 0].isna().tolist() == [True, False]
    assert len(table.frame()) == 3 * CSV_CHUNK_ROWS + 5


def test_a_bad_row_far_into_a_streamed_file_is_pandas_error(streamed: bool) -> None:
    """A ragged row past the first block: the same 400 as a small file's, when the chunks get there."""
    data = _big(5000) + b"1,2,3\n"
    passes = [
        lambda table: list(table.chunks()),
        lambda table: table.column("city"),
        lambda table: table.frame(["age"]),
        lambda table: table.frame(),
    ]
    for each_pass in passes:
        try:
            each_pass(read_csv_table(data, filename="far.csv"))
        except BadRequest as refused:
            assert "far.csv" in refused.detail and "Expected 2 fields" in refused.detail
        else:
            pytest.fail("a ragged row was read")


def test_duplicate_headers_are_named_as_pandas_names_them() -> None:
    frame = read_csv_upload(b"a,a,b\n1,2,3\n", filename="d.csv")
    assert list(frame.columns) == ["a", "a.1", "b"]


def test_an_upload_is_read_from_its_spooled_file_as_from_its_bytes() -> None:
    """The route hands the reader the upload's file (read in blocks, never held as bytes too)."""
    data = b"age,city\n" + b"".join(f"{i}, c{i % 3}\n".encode() for i in range(5000))
    spooled = tempfile.SpooledTemporaryFile(max_size=1024)
    spooled.write(data)
    from_file = read_csv_table(spooled, filename="f.csv")
    assert from_file.frame().equals(read_csv_table(data, filename="f.csv").frame())
    assert len(from_file.frame()) == 5000 and not spooled.closed


class _SlowFile(io.BytesIO):
    """A file whose reads take a while, as a loaded machine's do: pyarrow's read-ahead of a reader given up
    early is still running when the next pass starts."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.002)
        return super().read(size)


def test_passes_over_one_file_never_share_its_position(streamed: bool) -> None:
    """Each pass (the first-block check, the chunks, one column, the frame) reads the file from its own
    position: with one shared position, a pass started while an earlier reader still read ahead began
    mid-file (CI: "Column 'Salary' in include_columns does not exist in CSV file")."""
    data = _big(2 * CSV_CHUNK_ROWS)
    expected = read_csv_table(data, filename="big.csv").frame()
    cities = expected["city"].astype(object).where(expected["city"].notna(), None).tolist()
    for _ in range(3):
        table = read_csv_table(_SlowFile(data), filename="slow.csv")
        assert table.column("city").to_pylist() == cities
        chunks = table.chunks()
        next(chunks)  # a pass given up after its first chunk, its reader still reading ahead
        assert table.frame().equals(expected)
        assert sum(len(chunk) for chunk in table.chunks()) == len(expected)


def test_a_header_with_a_quoted_newline_is_read_whole() -> None:
    table = read_csv_table(b'"first\nname",age\nAda,36\n', filename="q.csv")
    assert table.columns == ["first\nname", "age"] and table.frame().iloc[0].tolist() == ["Ada", "36"]
