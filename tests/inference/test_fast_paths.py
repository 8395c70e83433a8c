"""The fast paths give fastai's own `get_preds` results, and unknown pipelines fall back to fastai."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.errors import InvalidInput
from service.inference import vision as vision_module
from service.inference.csvio import read_csv_table, rows_for
from service.inference.images import UploadedImage
from service.inference.kinds import predictor_for
from service.inference.tabular_encoder import HASH_INDEX_FROM
from service.loading import load_exported_learner
from tests.helpers import (
    FIXTURES,
    TABULAR,
    VISION,
    fastai_probabilities,
    image_bytes,
    predicted_probabilities,
)


@pytest.fixture(scope="module")
def tabular_learner(trained_store: Path) -> Any:
    return load_exported_learner(trained_store / TABULAR / "model.pkl").learn


@pytest.fixture(scope="module")
def vision_learner(trained_store: Path) -> Any:
    return load_exported_learner(trained_store / VISION / "model.pkl").learn


def _rows_with_gaps(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    rows = frame.drop(columns=["Salary"]).iloc[:n].copy()
    rows.loc[rows.index[::3], "age"] = np.nan  # filled by FillMissing, flagged in age_na
    rows.loc[rows.index[1::4], "occupation"] = np.nan  # #na#
    return rows


def _as_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


@pytest.mark.parametrize("n", [300, HASH_INDEX_FROM + 988])  # dict lookups, then pandas' hash index
def test_tabular_fast_path_equals_get_preds(tabular_learner: Any, adult_frame: pd.DataFrame, n: int) -> None:
    predictor = predictor_for(tabular_learner)
    assert predictor.fast_path
    rows = _rows_with_gaps(adult_frame, n)
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _as_rows(rows)),
        fastai_probabilities(tabular_learner, rows),
        atol=1e-5,
    )


def test_a_csv_resolved_column_wise_equals_the_same_rows_as_json(
    tabular_learner: Any, adult_frame: pd.DataFrame
) -> None:
    """prepare_frame (Arrow lookups, codes found on the way) = prepare on the same rows: values, codes,
    warnings and probabilities, for known, case-shifted, unseen and missing categories."""
    predictor = predictor_for(tabular_learner)
    rows = _rows_with_gaps(adult_frame, 600)
    rows.loc[rows.index[2::7], "workclass"] = rows["workclass"].iloc[2::7].str.upper()  # tolerant match
    rows.loc[rows.index[5::11], "education"] = "Wizardry"  # unseen: #na# with a warning
    text = rows.astype(object).where(rows.notna(), None).astype(object)
    text = text.apply(lambda column: column.map(lambda v: None if v is None else str(v)))
    by_column = predictor.prepare_frame(text, filename="t.csv")
    assert set(by_column.codes) == {c.name for c in predictor.spec.categorical}
    by_row = predictor.prepare(rows_for(text, predictor.spec.column_names, filename="t.csv"), strict=False)
    assert by_column.warnings == by_row.warnings and any(by_row.warnings)
    encoder = predictor._encoder
    assert encoder is not None
    for got, want in zip(
        encoder.encode(by_column.columns, 600, by_column.codes),
        encoder.encode(by_row.columns, 600),
        strict=True,
    ):
        assert (got == want).all()
    np.testing.assert_allclose(
        predictor.forward_many([by_column])[0], predictor.forward_many([by_row])[0], atol=1e-6
    )
    typed = predictor.prepare_frame(rows, filename="t.csv")  # numbers as numbers: a DataFrame from code
    assert typed.warnings == by_row.warnings
    np.testing.assert_allclose(
        predictor.forward_many([typed])[0], predictor.forward_many([by_row])[0], atol=1e-6
    )


def _uploaded(frame: pd.DataFrame) -> Any:
    """The frame as the CSV route reads it: written out, then one chunk of the reader's Arrow table."""
    table = read_csv_table(frame.to_csv(index=False).encode(), filename="t.csv")
    [chunk] = list(table.chunks())
    return chunk


def test_an_uploaded_chunk_resolved_in_arrow_equals_the_row_path(
    tabular_learner: Any, adult_frame: pd.DataFrame
) -> None:
    """The reader's Arrow text as it comes (whitespace-only cells, other case, unseen, missing) gives the
    warnings, codes and probabilities the row path gives for the same cells, without leaving Arrow."""
    predictor = predictor_for(tabular_learner)
    rows = _rows_with_gaps(adult_frame, 400).astype(object)
    rows.loc[rows.index[2::9], "workclass"] = "   "  # whitespace only: missing, as a blank cell
    rows.loc[rows.index[4::13], "education"] = "  bachelors "  # tolerant match, warned
    rows.loc[rows.index[6::17], "education"] = "Wizardry"  # unseen: #na#, warned
    chunk = _uploaded(rows)
    by_chunk = predictor.prepare_chunk(chunk, filename="t.csv")
    assert set(by_chunk.codes) == {c.name for c in predictor.spec.categorical}  # the column-wise path
    assert not set(by_chunk.columns) & set(by_chunk.codes)  # with the encoder, no category per row
    by_row = predictor.prepare(
        rows_for(chunk.frame(), predictor.spec.column_names, filename="t.csv"), strict=False
    )
    assert by_chunk.warnings == by_row.warnings
    notes = " ".join(w for row in by_row.warnings for w in row)
    assert "workclass" in notes and "Wizardry" in notes and "bachelors" in notes
    np.testing.assert_allclose(
        predictor.forward_many([by_chunk])[0], predictor.forward_many([by_row])[0], atol=1e-6
    )


def test_a_chunk_and_json_rows_share_one_forward(tabular_learner: Any, adult_frame: pd.DataFrame) -> None:
    """The batcher merges a CSV chunk (codes only) with JSON rows (categories): each gets its own answer."""
    predictor = predictor_for(tabular_learner)
    chunk_rows = predictor.prepare_chunk(_uploaded(_rows_with_gaps(adult_frame, 600)), filename="t.csv")
    json_rows = predictor.prepare(_as_rows(_rows_with_gaps(adult_frame.iloc[700:], 5)))
    together = predictor.forward_many([json_rows, chunk_rows, json_rows])
    alone = [predictor.forward_many([p])[0] for p in (json_rows, chunk_rows, json_rows)]
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    ("column", "cell"),
    [("fnlwgt", "  "), ("fnlwgt", " 120000 "), ("fnlwgt", "nan"), ("age", "nan"), ("age", "inf")],
)
def test_uploaded_number_cells_arrow_refuses_take_the_row_path(
    tabular_learner: Any, adult_frame: pd.DataFrame, column: str, cell: str
) -> None:
    """Blank, spaced, "nan" and "inf" number cells: whatever the row path says (a fill, a value, an error
    at that cell), also where the column has missing cells already (age)."""
    predictor = predictor_for(tabular_learner)
    rows = _rows_with_gaps(adult_frame, 30).astype(object)
    rows.loc[rows.index[4], column] = cell
    chunk = _uploaded(rows)
    as_rows = rows_for(chunk.frame(), predictor.spec.column_names, filename="t.csv")
    try:
        by_row = predictor.prepare(as_rows, strict=False)
    except InvalidInput as refused:
        with pytest.raises(InvalidInput) as caught:
            predictor.prepare_chunk(chunk, filename="t.csv")
        assert caught.value.errors == refused.errors
        assert [e["loc"] for e in refused.errors] == [["rows", 4, column]]
        return
    by_chunk = predictor.prepare_chunk(chunk, filename="t.csv")
    assert by_chunk.warnings == by_row.warnings
    np.testing.assert_allclose(
        predictor.forward_many([by_chunk])[0], predictor.forward_many([by_row])[0], atol=1e-6
    )


def test_tabular_single_row_equals_get_preds(tabular_learner: Any, adult_frame: pd.DataFrame) -> None:
    predictor = predictor_for(tabular_learner)
    rows = _rows_with_gaps(adult_frame, 1)
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _as_rows(rows)),
        fastai_probabilities(tabular_learner, rows),
        atol=1e-5,
    )


def test_tabular_fast_path_on_the_cookbook_model(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "cookbook" / "adult_sample_model.pkl", tmp_path / "model.pkl")
    learn = load_exported_learner(tmp_path / "model.pkl").learn
    learn.dls.cpu()
    predictor = predictor_for(learn)
    assert predictor.fast_path
    frame = pd.read_csv(FIXTURES / "cookbook" / "adult_sample_test.csv")
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _as_rows(frame), strict=False),
        fastai_probabilities(learn, frame),
        atol=1e-5,
    )


def test_tabular_unknown_proc_falls_back_to_fastai(
    tabular_learner: Any, adult_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.inference import tabular_encoder

    monkeypatch.setattr(tabular_encoder, "SUPPORTED_PROCS", {"Categorify", "Normalize"})
    predictor = predictor_for(tabular_learner)
    assert not predictor.fast_path
    rows = _rows_with_gaps(adult_frame, 50)
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _as_rows(rows)),
        fastai_probabilities(tabular_learner, rows),
        atol=1e-5,
    )


def _uploads() -> list[UploadedImage]:
    cookbook = sorted((FIXTURES / "cookbook" / "test_images").glob("*.jpg"))
    return [
        *(UploadedImage(p.name, p.read_bytes()) for p in cookbook),  # 100x100 JPEG photos
        UploadedImage("wide.png", image_bytes(size=(64, 20), seed=1)),
        UploadedImage("tall.jpg", image_bytes(size=(17, 90), fmt="JPEG", seed=2)),
        UploadedImage("grey.png", image_bytes(mode="L", size=(40, 40), seed=3)),
        UploadedImage("alpha.png", image_bytes(mode="RGBA", size=(33, 31), seed=4)),
    ]


def test_vision_fast_path_equals_get_preds(vision_learner: Any) -> None:
    predictor = predictor_for(vision_learner)
    assert predictor.fast_path
    assert predictor._native_resize is not None  # centre crop + resize done with two PIL calls
    images = predictor.prepare(_uploads()).images
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _uploads()),
        fastai_probabilities(vision_learner, images),
        atol=1e-4,
    )


def test_vision_unknown_transform_falls_back_to_fastai(
    vision_learner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vision_module, "FAST_ITEM_TFMS", {"ToTensor"})  # as if Resize were a custom transform
    predictor = predictor_for(vision_learner)
    assert not predictor.fast_path
    images = predictor.prepare(_uploads()).images
    np.testing.assert_allclose(
        predicted_probabilities(predictor, _uploads()),
        fastai_probabilities(vision_learner, images),
        atol=1e-5,
    )


def test_vision_native_resize_matches_fastai_pixels(vision_learner: Any) -> None:
    import torch
    from fastai.vision.augment import Resize
    from fastai.vision.core import PILImage
    from fasttransform.transform import Pipeline

    from service.inference.vision import NativeResize

    others = [t for t in vision_learner.dls.valid.after_item.fs if type(t).__name__ != "Resize"]
    for size, method in (((32, 32), "crop"), ((24, 40), "crop"), ((40, 24), "crop"), ((24, 40), "squish")):
        resize = Resize(size, method=method)
        ours = NativeResize.for_pipeline([resize, *others])
        assert ours is not None
        theirs = Pipeline([resize, *others], split_idx=1)
        images = [PILImage.create(upload.data).convert("RGB") for upload in _uploads()]
        images.append(images[0].resize(size))  # already the target size: no crop or resize at all
        for image in images:
            native = ours(PILImage(image))
            assert native is not None
            pixels = torch.from_numpy(np.ascontiguousarray(native)).permute(2, 0, 1)
            assert torch.equal(pixels, torch.as_tensor(theirs((PILImage(image),))[0])), (
                size,
                method,
                image.size,
            )


def _csv_table(frame: pd.DataFrame) -> pd.DataFrame:
    """What `read_csv_upload` gives: every cell as text, missing cells as None."""
    text = frame.astype(object).where(frame.notna(), None)
    return text.map(lambda v: None if v is None else str(v))


def _tidy(predictions: list[Any]) -> list[tuple[str, list[float], list[str]]]:
    return [(p.label, list(p.probabilities.values()), p.warnings) for p in predictions]


def test_csv_table_path_equals_row_path(tabular_learner: Any, adult_frame: pd.DataFrame) -> None:
    predictor = predictor_for(tabular_learner)
    rows = _rows_with_gaps(adult_frame, 200)
    rows.loc[rows.index[5], "workclass"] = "private"  # tolerant match, warned
    rows.loc[rows.index[6], "education"] = "Astrology"  # unseen, warned
    table = _csv_table(rows)
    prepared = predictor.prepare_frame(table, filename="t.csv")
    by_table = predictor.finish(prepared, predictor.forward_many([prepared])[0])
    by_rows = predictor.predict(rows_for(table, predictor.spec.column_names, filename="t.csv"), strict=False)
    assert _tidy(by_table) == _tidy(by_rows)
    assert by_table[5].warnings and by_table[6].warnings and by_table[0].warnings  # age gap on row 0


def test_csv_table_path_reports_bad_cells_like_the_row_path(
    tabular_learner: Any, adult_frame: pd.DataFrame
) -> None:
    predictor = predictor_for(tabular_learner)
    table = _csv_table(adult_frame.drop(columns=["Salary"]).iloc[:5])
    table.loc[table.index[2], "fnlwgt"] = "lots"
    table.loc[table.index[3], "hours-per-week"] = "inf"
    with pytest.raises(InvalidInput) as by_table:
        predictor.prepare_frame(table, filename="t.csv")
    with pytest.raises(InvalidInput) as by_rows:
        predictor.prepare(rows_for(table, predictor.spec.column_names, filename="t.csv"), strict=False)
    assert by_table.value.errors == by_rows.value.errors
    assert [e["loc"] for e in by_table.value.errors] == [["rows", 2, "fnlwgt"], ["rows", 3, "hours-per-week"]]


def test_numbers_in_categorical_columns_stay_on_the_plain_path(
    tabular_learner: Any, adult_frame: pd.DataFrame
) -> None:
    """A learner may have categorised a numeric column, so numbers are plain values there: same columns as
    full validation, and a number that is not one of the categories is an unseen category."""
    predictor = predictor_for(tabular_learner)
    rows = _as_rows(adult_frame.drop(columns=["Salary"]).iloc[:3])
    rows[1] = {**rows[1], "workclass": 7}
    rows[2] = {**rows[2], "workclass": 7.5}
    assert predictor._plain_columns(rows) == predictor._validated_columns(rows, strict=True)
    predictions = predictor.predict(rows)
    assert "workclass: 7 is not a known category" in predictions[1].warnings[0]
    assert "workclass: 7.5 is not a known category" in predictions[2].warnings[0]


def test_plain_rows_give_what_full_validation_gives(tabular_learner: Any, adult_frame: pd.DataFrame) -> None:
    predictor = predictor_for(tabular_learner)
    rows = _as_rows(_rows_with_gaps(adult_frame, 50))  # None gaps in age and occupation
    rows[0]["age"] = 39  # a JSON integer in a continuous column
    plain = predictor._plain_columns(rows)
    assert plain is not None
    assert plain == predictor._validated_columns(rows, strict=True)


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"age": "39"}, "float_type"),  # numeric text is not a JSON number
        ({"age": True}, "float_type"),
        ({"extra": 1}, "extra_forbidden"),
    ],
)
def test_unusual_rows_take_full_validation(
    tabular_learner: Any, adult_frame: pd.DataFrame, change: dict[str, Any], error_type: str | None
) -> None:
    predictor = predictor_for(tabular_learner)
    rows = _as_rows(adult_frame.drop(columns=["Salary"]).iloc[:3])
    rows[1] = {**rows[1], **change}
    assert predictor._plain_columns(rows) is None
    if error_type is None:
        assert "not a known category" in predictor.predict(rows)[1].warnings[0]
        return
    with pytest.raises(InvalidInput) as caught:
        predictor.predict(rows)
    assert [(e["loc"][:2], e["type"]) for e in caught.value.errors] == [(["rows", 1], error_type)]
