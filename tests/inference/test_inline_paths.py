"""The shortcuts taken for speed give what the paths they skip give: small images decoded on the event
loop, a column's few odd cells matched one by one, request ids drawn from a pool."""

from __future__ import annotations

import io
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from service.api.middleware import new_request_id
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from service.inference import tabular as tabular_module
from service.inference.images import INLINE_PIXELS, UploadedImage
from service.inference.kinds import predictor_for
from service.inference.tabular import TabularPredictor
from service.inference.tabular_spec import CategoricalColumn
from service.inference.vision import VisionPredictor
from service.loading import load_exported_learner
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes


@pytest.fixture(scope="module")
def vision(trained_store: Path) -> VisionPredictor:
    predictor = predictor_for(load_exported_learner(trained_store / VISION / "model.pkl").learn)
    assert isinstance(predictor, VisionPredictor)
    return predictor


def _pixels(images: list[Any]) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_a_small_image_decoded_inline_equals_prepare(vision: VisionPredictor, fmt: str) -> None:
    uploads = [UploadedImage(f"a.{fmt.lower()}", image_bytes(fmt=fmt, seed=i)) for i in range(3)]
    inline = vision.prepare_inline(uploads)
    assert inline is not None
    prepared = vision.prepare(uploads)
    assert [type(i) for i in inline.images] == [type(i) for i in prepared.images]
    for got, want in zip(_pixels(inline.images), _pixels(prepared.images), strict=True):
        assert got.shape == want.shape and (got == want).all()
    np.testing.assert_array_equal(vision.forward_many([inline])[0], vision.forward_many([prepared])[0])


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_big_bad_or_too_many_images_are_left_to_prepare(vision: VisionPredictor) -> None:
    """None (prepare decodes or refuses them, with its own message) for anything but small good images."""
    small = UploadedImage("small.png", image_bytes())
    side = int(INLINE_PIXELS**0.5)
    big = UploadedImage("big.jpg", _jpeg((side + 1, side)))
    assert vision.prepare_inline([UploadedImage("fits.jpg", _jpeg((side, side)))]) is not None
    assert vision.prepare_inline([big]) is None
    # The budget is the request's: enough small images together go to a worker thread too.
    assert vision.prepare_inline([small] * (INLINE_PIXELS // (32 * 32) + 1)) is None
    assert vision.prepare_inline([small, big]) is None
    text = UploadedImage("notes.png", b"hello, not an image at all")
    corrupt = UploadedImage("broken.png", image_bytes()[:40])
    for bad, error in ((text, UnsupportedMedia), (corrupt, InvalidInput)):
        assert vision.prepare_inline([small, bad]) is None
        with pytest.raises(error):
            vision.prepare([small, bad])


def test_the_pixel_limit_still_refuses_small_images(vision: VisionPredictor, monkeypatch: Any) -> None:
    monkeypatch.setattr(vision, "max_pixels", 100)
    upload = UploadedImage("a.png", image_bytes(size=(16, 16)))
    assert vision.prepare_inline([upload]) is None
    with pytest.raises(PayloadTooLarge):
        vision.prepare([upload])


def test_request_ids_are_random_uuid4_hex() -> None:
    ids = [new_request_id() for _ in range(1000)]  # several pools' worth
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        parsed = uuid.UUID(request_id)
        assert parsed.hex == request_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122


# Cells of a categorical column a learner made of a numeric one: exact forms, whole numbers written
# otherwise, spacing, unseen values, blanks and nulls.
CELLS = ["2174", "2174.0", "2174.00", " 114.0 ", "0", "-3.0", "2175.0", "2175", "  ", None, "x", "114"]


def _resolved(monkeypatch: Any, few: int) -> tuple[Any, Any, dict[int, list[str]]]:
    monkeypatch.setattr(tabular_module, "FEW_MISSES", few)
    column = CategoricalColumn.from_classes("capital-gain", ["#na#", 0, 114, 2174])
    notes: defaultdict[int, list[str]] = defaultdict(list)
    cells = pa.array(CELLS * 10, type=pa.string())
    categories, codes = TabularPredictor._resolve_column(column, cells, notes, values=True)
    return categories, codes, dict(notes)


def test_a_few_odd_cells_matched_one_by_one_equal_the_arrow_pass(monkeypatch: Any) -> None:
    one_by_one = _resolved(monkeypatch, few=10_000)
    arrow = _resolved(monkeypatch, few=-1)
    categories, codes, notes = one_by_one
    assert codes.tolist() == arrow[1].tolist()
    assert [str(c) for c in categories] == [str(c) for c in arrow[0]]
    assert notes == arrow[2]
    assert codes[:12].tolist() == [3, 3, 3, 2, 1, 0, 0, 0, 0, 0, 0, 2]
    # Whole numbers however written are their category, silently; unseen, blank and null cells are warned.
    assert {i % len(CELLS) for i in notes} == {5, 6, 7, 8, 9, 10}
    assert "2175.0" in notes[6][0] and "x" in notes[10][0]


@pytest.fixture(scope="module")
def tabular(trained_store: Path) -> TabularPredictor:
    predictor = predictor_for(load_exported_learner(trained_store / TABULAR / "model.pkl").learn)
    assert isinstance(predictor, TabularPredictor)
    return predictor


def _by_column(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


def test_rows_given_as_columns_prepare_as_the_rows(tabular: TabularPredictor, adult_frame: Any) -> None:
    """V2's few-row path: values, warnings and answers of `prepare` on the same rows; a value `prepare`
    refuses is refused with the same errors, cell by cell."""
    rows = adult_rows(adult_frame, 5)
    rows[0]["age"] = None  # filled, warned
    rows[1]["workclass"] = "Martian"  # unseen, warned
    rows[2]["workclass"] = " private "  # tolerant, warned
    names = tabular.spec.column_names
    by_columns = tabular.prepare_columns(_by_column(rows, names), len(rows), rows=lambda: rows)
    by_rows = tabular.prepare([dict(r) for r in rows])
    assert by_columns.warnings == by_rows.warnings and all(by_rows.warnings[:3])
    np.testing.assert_array_equal(tabular.forward_many([by_columns])[0], tabular.forward_many([by_rows])[0])
    bad = [dict(r) for r in rows]
    bad[3]["fnlwgt"] = "lots"
    bad[4]["workclass"] = True
    with pytest.raises(InvalidInput) as from_columns:
        tabular.prepare_columns(_by_column(bad, names), len(bad), rows=lambda: bad)
    with pytest.raises(InvalidInput) as from_rows:
        tabular.prepare(bad)
    assert from_columns.value.errors == from_rows.value.errors
    assert {tuple(e["loc"][:3]) for e in from_rows.value.errors} == {
        ("rows", 3, "fnlwgt"),
        ("rows", 4, "workclass"),
    }
