"""The pages of the other kinds in a real browser, against the real server and tiny real learners: the
segmentation mask drawn over each thumbnail (legend, opacity), the text box and its CSV mode, the recommender
(top items with titles, more like this, one pair's rating) and a model still training in the list."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from playwright.sync_api import expect

from service.inference.masks import mask_png
from tests.frontend.conftest import PageLog
from tests.frontend.test_browser import assert_clean, shot
from tests.frontend.test_tasks import check_multi_label, detail_of, flipping_threshold, predicted
from tests.tiny_collab import COLLAB_DOT, COLLAB_NN, ratings, title_of
from tests.tiny_segmentation import SEGMENTATION, shapes
from tests.tiny_text import TEXT_CLS, TEXT_MULTI

PERCENT = re.compile(r"^\d+\.\d%$")

# The pixels a canvas holds (not what the screen shows: the canvas is drawn at its own size).
CANVAS_PIXELS = """c => ({
    width: c.width,
    height: c.height,
    rgba: [...c.getContext("2d").getImageData(0, 0, c.width, c.height).data],
})"""

# The thumbnail and the mask over it: where each sits on screen, how it is fitted and its own size.
OVERLAY_BOXES = """t => [t.querySelector("img.thumb"), t.querySelector("canvas.mask-overlay")].map((e) => {
    const r = e.getBoundingClientRect();
    return {
        box: [r.x, r.y, r.width, r.height],
        fit: getComputedStyle(e).objectFit,
        size: e.tagName === "IMG" ? [e.naturalWidth, e.naturalHeight] : [e.width, e.height],
    };
})"""


def shape_file(index: int, size: tuple[int, int]) -> dict[str, Any]:
    """A generated shapes image (tests/tiny_segmentation.py) of `size` (width, height) as an upload."""
    pixels, _ = shapes(index, size)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return {"name": f"shapes-{index}.png", "mimeType": "image/png", "buffer": buffer.getvalue()}


def rgb(css: str) -> tuple[int, ...]:
    """`rgb(1, 2, 3)` → (1, 2, 3)."""
    return tuple(int(part) for part in css.removeprefix("rgb(").removesuffix(")").split(","))


def test_segmentation_mask_is_coloured_by_class_over_each_thumbnail_with_a_legend(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, SEGMENTATION)["classes"]
    page.goto(f"/#/models/{SEGMENTATION}")
    expect(page.locator("#vision-title")).to_have_text("Segment images")
    # A square image and one that is not: the mask has each upload's own size, fitted as its thumbnail is.
    files = [shape_file(100, (32, 32)), shape_file(101, (40, 28))]
    items = predicted(page, lambda: page.locator("#image-files").set_input_files(files))
    tiles = page.locator("#tiles .tile")
    expect(tiles.locator("canvas.mask-overlay")).to_have_count(2)
    for i, item in enumerate(items):
        tile = tiles.nth(i)
        assert item["classes"] == classes
        height, width = item["size"]
        # The API's mask: one class index per pixel (a palette PNG, read as indices).
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask_png"]))))
        assert mask.shape == (height, width)

        legend = tile.locator(".legend-entry")
        expect(legend.locator(".legend-class")).to_have_text(classes)
        shown = legend.evaluate_all("els => els.map(e => Number(e.dataset.fraction))")
        assert shown == [item["class_fractions"][c] for c in classes]
        expect(legend.locator(".legend-fraction")).to_have_text([PERCENT] * len(classes))
        swatches = legend.locator(".swatch").evaluate_all(
            "els => els.map(e => getComputedStyle(e).backgroundColor)"
        )
        colours = [rgb(c) for c in swatches]
        assert len(set(colours)) == len(classes)  # a colour of its own per class

        # Every pixel of the canvas is its class's legend colour, opaque (the slider makes it see-through).
        drawn = tile.locator("canvas.mask-overlay").evaluate(CANVAS_PIXELS)
        assert [drawn["width"], drawn["height"]] == [width, height]
        pixels = np.array(drawn["rgba"], dtype=np.uint8).reshape(height, width, 4)
        np.testing.assert_array_equal(pixels[..., :3], np.array(colours, dtype=np.uint8)[mask])
        assert (pixels[..., 3] == 255).all()

        # Over the thumbnail: the same box, both fitted with `contain`, of the same size: pixel on pixel.
        thumb, overlay = tile.evaluate(OVERLAY_BOXES)
        assert overlay["box"] == thumb["box"]
        assert thumb["fit"] == overlay["fit"] == "contain"
        assert overlay["size"] == thumb["size"] == [width, height]
    shot(page, tmp_path, "segmentation")
    assert_clean(page_log, live_server)


def test_segmentation_opacity_slider_changes_only_its_own_images_mask(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{SEGMENTATION}")
    files = [shape_file(102, (32, 32)), shape_file(103, (28, 40))]
    predicted(page, lambda: page.locator("#image-files").set_input_files(files))
    tiles = page.locator("#tiles .tile")
    first, second = (tiles.nth(i).locator("canvas.mask-overlay") for i in range(2))
    expect(first).to_have_css("opacity", "0.5")
    slider = tiles.nth(0).get_by_label("Mask opacity")
    expect(slider).to_have_value("50")
    slider.fill("20")
    expect(first).to_have_css("opacity", "0.2")
    expect(second).to_have_css("opacity", "0.5")
    slider.fill("100")
    expect(first).to_have_css("opacity", "1")
    slider.fill("0")
    expect(first).to_have_css("opacity", "0")
    shot(page, tmp_path, "segmentation-opacity")
    assert_clean(page_log, live_server)


# The page's own decoder (js/tasks.js), run on a mask PNG: its size and class index per pixel.
DECODE = """async (b64) => {
    const { maskIndices } = await import("/js/tasks.js");
    const mask = await maskIndices(b64);
    return { width: mask.width, height: mask.height, indices: [...mask.indices] };
}"""


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def written_png(indices: np.ndarray, *, depth: int, palette: bool, filters: Sequence[int]) -> bytes:
    """`indices` as a PNG written by hand: `depth` bits per pixel (rows padded to a byte), palette or grey,
    each row filtered with the next of `filters` (PNG's five), the data split over two IDAT chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = indices.shape
    raw = bytearray()
    previous = bytes((width * depth + 7) // 8)
    for y in range(height):
        bits = "".join(format(int(v), f"0{depth}b") for v in indices[y])
        bits += "0" * (-len(bits) % 8)
        row = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
        kind = filters[y % len(filters)]
        raw.append(kind)
        for x, value in enumerate(row):
            a, b, c = (row[x - 1] if x else 0), previous[x], (previous[x - 1] if x else 0)
            raw.append((value - [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]) & 255)
        previous = row
    data = zlib.compress(bytes(raw))
    header = struct.pack(">IIBBBBB", width, height, depth, 3 if palette else 0, 0, 0, 0)
    colours = bytes((37 * i + k * 91) % 256 for i in range(2**depth) for k in range(3))
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"PLTE", colours) if palette else b"",
            chunk(b"IDAT", data[: len(data) // 2]),
            chunk(b"IDAT", data[len(data) // 2 :]),
            chunk(b"IEND", b""),
        ]
    )


def test_the_page_reads_each_pixels_class_index_from_the_mask_png_however_it_is_encoded(
    page: Any, live_server: str, page_log: PageLog
) -> None:
    """The decoder behind the overlay: the server's own encoding for 2 to 20 classes (palettes of 1 to 8
    bits), and hand-written PNGs with every row filter, odd widths and grey samples."""
    rng = np.random.default_rng(0)
    page.goto("/")
    cases: list[tuple[str, np.ndarray, bytes]] = []
    for n_classes in (2, 3, 11, 20):
        mask = rng.integers(0, n_classes, size=(9, 13), dtype=np.uint8)
        cases.append((f"server, {n_classes} classes", mask, mask_png(mask, n_classes)))
    for depth in (1, 2, 4, 8):
        mask = rng.integers(0, 2**depth, size=(7, 11), dtype=np.uint8)
        for palette in (True, False):
            png = written_png(mask, depth=depth, palette=palette, filters=[0, 1, 2, 3, 4])
            cases.append((f"{depth}-bit {'palette' if palette else 'grey'}", mask, png))
    for name, mask, png in cases:
        decoded = page.evaluate(DECODE, base64.b64encode(png).decode())
        assert [decoded["height"], decoded["width"]] == list(mask.shape), name
        np.testing.assert_array_equal(np.array(decoded["indices"]).reshape(mask.shape), mask, err_msg=name)
    assert_clean(page_log, live_server)


# -- the recommender (collab) ------------------------------------------------------------------------------
def answered(page: Any, path: str, action: Any) -> dict[str, Any]:
    """The JSON of the API call to `path` (e.g. `/recommend`) that `action` makes the page ask for."""
    with page.expect_response(lambda r: f"{path}?" in r.url or r.url.endswith(path)) as response:
        action()
    body: dict[str, Any] = response.value.json()
    return body


def listed(page: Any, selector: str) -> list[dict[str, str]]:
    """The items a list shows: the item id it carries, its name and its id line (shown beside a title)."""
    rows: list[dict[str, str]] = page.locator(selector).evaluate_all(
        """els => els.map(e => ({
            item: e.dataset.item,
            score: e.dataset.score,
            name: e.querySelector(".item-name").textContent,
            id: e.querySelector(".item-id")?.textContent ?? null,
        }))"""
    )
    return rows


def recommend(page: Any, user: str, n: int) -> dict[str, Any]:
    page.locator("#rec-user").fill(user)
    page.locator("#rec-n").fill(str(n))
    return answered(page, "/recommend", lambda: page.get_by_role("button", name="Recommend").click())


def test_recommender_shows_a_users_top_items_by_title_and_more_like_an_item(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    schema = detail_of(live_server, COLLAB_DOT)["input_schema"]
    page.goto(f"/#/models/{COLLAB_DOT}")
    expect(page.locator('label[for="rec-user"]')).to_have_text(f"User ({schema['user']['name']})")
    expect(page.locator("#rec-user-hint")).to_contain_text(f"{schema['user']['count']} users known")
    top = recommend(page, "3", 5)
    assert len(top["items"]) == 5
    assert any("user=3&n=5" in u for u in page_log.requests)
    expect(page.locator("#recommended-items li")).to_have_count(5)
    shown = listed(page, "#recommended-items li")
    # Titles (from the model folder's items.csv), the ids beside them, the scores the API gave, in its order.
    assert [s["item"] for s in shown] == [str(e["item"]) for e in top["items"]]
    assert [s["name"] for s in shown] == [title_of(str(e["item"])) for e in top["items"]]
    assert [s["id"] for s in shown] == [f"id {e['item']}" for e in top["items"]]
    assert [float(s["score"]) for s in shown] == [e["score"] for e in top["items"]]
    shot(page, tmp_path, "collab-recommend")

    # More like the second item: its neighbours by title, never the item itself.
    chosen = top["items"][1]
    # Scoped to its list: an item may be in both lists, each with its own button.
    more = page.locator("#recommended-items").get_by_role(
        "button", name=f"More like {title_of(str(chosen['item']))}"
    )
    like = answered(page, "/similar", more.click)
    expect(page.locator("#similar-title")).to_have_text(f"More like {title_of(str(chosen['item']))}")
    expect(page.locator("#similar-items li")).to_have_count(len(like["items"]))
    shown = listed(page, "#similar-items li")
    assert [s["name"] for s in shown] == [title_of(str(e["item"])) for e in like["items"]]
    assert [float(s["score"]) for s in shown] == [e["similarity"] for e in like["items"]]
    assert str(chosen["item"]) not in [s["item"] for s in shown]
    assert len(shown) == 5  # as many as the list it came from asked for
    # ... and from there, more like one of those.
    third = like["items"][0]
    more_again = page.locator("#similar-items").get_by_role(
        "button", name=f"More like {title_of(str(third['item']))}"
    )
    again = answered(page, "/similar", more_again.click)
    expect(page.locator("#similar-title")).to_have_text(f"More like {title_of(str(third['item']))}")
    assert [s["item"] for s in listed(page, "#similar-items li")] == [str(e["item"]) for e in again["items"]]
    shot(page, tmp_path, "collab-similar")
    assert_clean(page_log, live_server)


def test_recommender_without_titles_shows_ids_and_an_unknown_user_gets_the_apis_reason(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{COLLAB_NN}")
    top = recommend(page, "u1", 4)
    expect(page.locator("#recommended-items li")).to_have_count(4)
    shown = listed(page, "#recommended-items li")
    assert [s["name"] for s in shown] == [str(e["item"]) for e in top["items"]]  # no items.csv: the ids
    assert [s["id"] for s in shown] == [None] * 4

    with page.expect_response(lambda r: "/recommend?" in r.url) as response:
        page.locator("#rec-user").fill("nobody")
        page.get_by_role("button", name="Recommend").click()
    assert response.value.status == 404
    detail = response.value.json()["detail"]
    expect(page.locator("#recommendations .error-detail")).to_have_text(detail)
    assert "nobody" in detail
    expect(page.locator("#recommended-items")).to_have_count(0)
    shot(page, tmp_path, "collab-unknown-user")
    assert_clean(page_log, live_server)


def test_a_pairs_rating_is_shown_and_an_unknown_user_is_said_so_with_the_warning(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{COLLAB_DOT}")
    expect(page.locator("#rating-heading")).to_have_text("Predict a rating")
    page.locator("#pair-user").fill("3")
    page.locator("#pair-item").fill("m1")
    button = page.get_by_role("button", name="Predict rating")
    [known] = answered(page, "/predict", button.click)["predictions"]
    assert isinstance(known["rating"], float)
    result = page.locator("#rating-prediction")
    rating = result.locator(".rating")
    expect(rating).to_have_attribute("data-rating", str(known["rating"]))
    assert float(rating.inner_text()) == pytest.approx(known["rating"], rel=1e-2)
    expect(result.locator(".warning")).to_have_count(0)
    shot(page, tmp_path, "collab-rating")

    page.locator("#pair-user").fill("999")
    [unknown] = answered(page, "/predict", button.click)["predictions"]
    assert unknown["rating"] is None and unknown["warnings"]
    expect(result.locator(".rating-unknown")).to_have_text("No rating: unknown user/item")
    expect(result.locator(".rating")).to_have_count(0)
    expect(result.locator(".warning")).to_have_text(unknown["warnings"])
    assert any("999" in w for w in unknown["warnings"])
    shot(page, tmp_path, "collab-rating-unknown")
    assert_clean(page_log, live_server)


# -- text ------------------------------------------------------------------------------------------------
def predict_texts(page: Any, lines: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Types `lines` in the text box and predicts: the texts the page sent and the items it got back."""
    page.locator("#texts").fill(lines)
    with page.expect_response(lambda r: r.url.endswith("/predict") or "/predict?" in r.url) as response:
        page.get_by_role("button", name="Predict", exact=True).click()
    assert response.value.ok, response.value.text()
    sent: list[str] = response.value.request.post_data_json["texts"]
    items: list[dict[str, Any]] = response.value.json()["predictions"]
    return sent, items


def test_text_box_predicts_each_line_with_a_bar_per_class_and_its_warnings(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, TEXT_CLS)["classes"]
    page.goto(f"/#/models/{TEXT_CLS}")
    expect(page.get_by_role("tab", name="Texts")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#texts-hint")).to_contain_text("tokens in its vocabulary")
    lines = ["It was a lovely film and the acting was excellent.", "zebra qwerty xyzzy plugh", "Bad, boring."]
    sent, items = predict_texts(page, f"{lines[0]}\n\n{lines[1]}\n   \n{lines[2]}\n")
    assert sent == lines  # one text per line; blank lines are not texts
    cards = page.locator("#text-predictions .text-prediction")
    expect(cards).to_have_count(3)
    expect(page.locator("#text-summary")).to_have_text("3 text(s) predicted in one request.")
    for i, item in enumerate(items):
        card = cards.nth(i)
        expect(card.locator(".text-quote")).to_have_text(lines[i])
        expect(card.locator(".predicted-label")).to_have_text(item["label"])
        bars = card.locator(".probs .prob")
        expect(bars).to_have_count(len(classes))
        labels = bars.evaluate_all("els => els.map(e => e.dataset.label)")
        assert labels == sorted(
            item["probabilities"], key=lambda c: -item["probabilities"][c]
        )  # likeliest first
        widths = card.locator(".prob-fill").evaluate_all("els => els.map(e => parseFloat(e.style.width))")
        assert widths == pytest.approx([item["probabilities"][c] * 100 for c in labels])
        if item["warnings"]:
            expect(card.locator(".warning")).to_have_text(item["warnings"])
        else:
            expect(card.locator(".warning")).to_have_count(0)
            expect(card).to_contain_text("No warnings for this text.")
    # Words the model never saw: the share of unknown tokens is said on that text, not on the others.
    assert any("(xxunk)" in w for w in items[1]["warnings"])
    expect(cards.nth(1).locator(".warning")).to_contain_text(["(xxunk)"])
    assert not items[0]["warnings"]
    shot(page, tmp_path, "text")
    assert_clean(page_log, live_server)


def test_text_box_refuses_no_text_itself_and_shows_the_apis_reason_for_a_text_too_long(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{TEXT_CLS}")
    page.locator("#texts").fill(" \n\n  ")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.locator("#text-result .error")).to_have_text("write at least one text (one per line)")
    assert not [u for u in page_log.requests if "/api/v1/text/" in u]  # nothing sent

    page.locator("#texts").fill("fine\n" + "long " * 5000)
    with page.expect_response(lambda r: "/api/v1/text/" in r.url) as response:
        page.get_by_role("button", name="Predict", exact=True).click()
    assert response.value.status == 413
    expect(page.locator("#text-result .error-detail")).to_have_text(response.value.json()["detail"])
    expect(page.locator("#text-result .error-detail")).to_contain_text("text 1")
    shot(page, tmp_path, "text-too-long")
    assert page_log.page_errors == []


def test_text_multi_label_shows_chips_bars_and_threshold_and_a_new_threshold_asks_again(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, TEXT_MULTI)["classes"]
    page.goto(f"/#/models/{TEXT_MULTI}")
    lines = ["a great lovely movie and the plot was really quite nice", "awful"]
    _, items = predict_texts(page, "\n".join(lines))
    cards = page.locator("#text-predictions .text-prediction")
    expect(cards).to_have_count(2)
    for i, item in enumerate(items):
        check_multi_label(cards.nth(i), item, classes)
    shot(page, tmp_path, "text-multi-label")

    value = flipping_threshold(items[0])
    threshold = page.locator("#texts-threshold")
    expect(page.locator('label[for="texts-threshold"]')).to_have_text("Threshold")
    with page.expect_response(lambda r: "/predict?threshold=" in r.url) as response:
        threshold.fill(f"{value:g}")
        threshold.press("Enter")
    again = response.value.json()["predictions"]
    expect(cards.locator(".threshold")).to_have_text([f"{value:g}"] * 2)
    for i, item in enumerate(again):
        assert item["threshold"] == pytest.approx(value)
        check_multi_label(cards.nth(i), item, classes)
    assert again[0]["labels"] != items[0]["labels"]
    assert_clean(page_log, live_server)


def test_text_csv_upload_shows_the_scored_rows_and_another_text_column_can_be_named(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, TEXT_CLS)["classes"]
    page.goto(f"/#/models/{TEXT_CLS}")
    page.get_by_role("tab", name="CSV file").click()
    expect(page.locator("#mode-texts")).to_be_hidden()
    texts = ["A great, lovely film.", 'It was "awful", really.', "the plot was dull"]
    frame = pd.DataFrame({"id": [1, 2, 3], "text": texts})
    page.locator("#csv-file").set_input_files(
        {"name": "reviews.csv", "mimeType": "text/csv", "buffer": frame.to_csv(index=False).encode()}
    )
    page.get_by_role("button", name="Score CSV").click()
    table = page.locator("#mode-csv table.results-table")
    expect(table.locator("tbody tr")).to_have_count(3)
    header = table.locator("thead th").all_inner_texts()
    # The answer first, with each row's prediction id.
    assert header == ["prediction", *(f"p_{c}" for c in classes), "prediction_id", "id", "text"]
    rows = [r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all()]
    assert [r[-1] for r in rows] == texts  # quotes and commas kept, in the file's order
    assert all(r[0] in classes for r in rows)
    expect(page.locator("#csv-download")).to_have_attribute("download", "reviews-scored.csv")
    shot(page, tmp_path, "text-csv")

    # A file whose texts are in another column: named in the form, sent as ?column=.
    renamed = frame.rename(columns={"text": "review"}).to_csv(index=False).encode()
    page.locator("#csv-file").set_input_files(
        {"name": "other.csv", "mimeType": "text/csv", "buffer": renamed}
    )
    page.get_by_label("Text column").fill("review")
    with page.expect_response(lambda r: "/predict/csv" in r.url) as response:
        page.get_by_role("button", name="Score CSV").click()
    assert response.value.ok and "column=review" in response.value.url
    expect(table.locator("thead th").last).to_have_text("review")
    expect(table.locator("tbody tr")).to_have_count(3)
    assert_clean(page_log, live_server)


# -- a model still training ----------------------------------------------------------------------------
# The models list's progress line for what a server may send (the page reads it defensively).
PROGRESS = """async (progress) => {
    const { progressView } = await import("/js/models.js");
    const el = progressView({ name: "m", status: "training", progress });
    const bar = el?.querySelector("progress");
    return el && { text: el.querySelector(".progress-text").textContent, bar: bar && [bar.value, bar.max] };
}"""


def write_board(path: Path, board: dict[str, Any]) -> None:
    """The trainer's progress board, replaced whole (as the trainer does: a reader never sees half)."""
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(board))
    tmp.replace(path)


def test_a_model_training_in_the_background_shows_a_badge_its_progress_and_no_link(
    page: Any, live_server: str, frontend_store: Path, page_log: PageLog, tmp_path: Path
) -> None:
    progress = pytest.importorskip(
        "service.training.progress", reason="the training board comes with the train-other branch"
    )
    name = "demo-in-training"
    board = {
        name: {
            "status": "training",
            "kind": "text",
            "task": "classification",
            "epoch": 3,
            "epochs": 8,
            "started_at": "2026-12-04T08:00:00+00:00",
        }
    }
    path = progress.progress_path(frontend_store)
    write_board(path, board)
    try:
        models = httpx.get(f"{live_server}/api/v1/models").json()["models"]
        assert next(m for m in models if m["name"] == name)["status"] == "training"
        page.goto("/")
        card = page.locator(f'.model-card[data-model="{name}"]')
        expect(card.locator(".badge")).to_have_text("training")
        expect(card.locator(".progress-text")).to_have_text(re.compile(r"^epoch 3 of 8"))
        expect(card.locator("progress")).to_have_attribute("value", "3")
        expect(card.locator("progress")).to_have_attribute("max", "8")
        expect(card.locator("a")).to_have_count(0)  # nothing to predict with or report on yet
        expect(page.locator("#models-pending")).to_contain_text("still training")
        shot(page, tmp_path, "training")
        # The list follows the training by itself: the next epoch, then the model leaves the board.
        board[name]["epoch"] = 4
        write_board(path, board)
        expect(card.locator(".progress-text")).to_have_text(re.compile(r"^epoch 4 of 8"), timeout=20_000)
        path.unlink()
        expect(card).to_have_count(0, timeout=20_000)
        expect(page.locator("#models-pending")).to_have_count(0)
    finally:
        path.unlink(missing_ok=True)
    assert_clean(page_log, live_server)


@pytest.mark.parametrize(
    ("progress", "text", "bar"),
    [
        ({"epoch": 3, "epochs": 8}, "epoch 3 of 8", [3, 8]),
        (
            {"epoch": 0, "epochs": None, "started_at": "2026-12-04T08:00:00+00:00"},
            "epoch 0 · started at 2026-12-04T08:00:00+00:00",
            None,
        ),
        ({"epoch": 9, "epochs": 8, "stage": "language model"}, "epoch 9 of 8 · stage language model", [8, 8]),
        (0.25, "25%", [0.25, 1]),
        (40, "40%", [0.4, 1]),
        ("tokenising", "tokenising", None),
        ({"epoch": "three", "nested": {"a": 1}}, "", None),
        (None, None, None),
    ],
)
def test_training_progress_is_read_defensively_whatever_its_shape(
    page: Any, live_server: str, progress: Any, text: str | None, bar: list[float] | None
) -> None:
    page.goto("/")
    shown = page.evaluate(PROGRESS, progress)
    if text is None:
        assert shown is None
    else:
        assert shown == {"text": text, "bar": bar}


# -- every new page at 360 px ---------------------------------------------------------------------------
def _answer_segmentation(page: Any) -> None:
    predicted(page, lambda: page.locator("#image-files").set_input_files([shape_file(104, (40, 28))]))
    expect(page.locator("canvas.mask-overlay")).to_have_count(1)


def _answer_text(page: Any) -> None:
    predict_texts(page, "It was a lovely film and the acting was excellent.\nzebra qwerty")
    expect(page.locator(".text-prediction")).to_have_count(2)


def _answer_collab(page: Any) -> None:
    recommend(page, "3", 5)
    page.locator("#recommended-items .more-like").first.click()
    expect(page.locator("#similar-items li")).to_have_count(5)
    page.locator("#pair-user").fill("999")
    page.locator("#pair-item").fill("m1")
    page.get_by_role("button", name="Predict rating").click()
    expect(page.locator("#rating-prediction .warning")).not_to_have_count(0)


ANSWERS = {SEGMENTATION: _answer_segmentation, TEXT_CLS: _answer_text, COLLAB_DOT: _answer_collab}


@pytest.mark.parametrize("page", [{"width": 360, "height": 780}], indirect=True)
@pytest.mark.parametrize("name", list(ANSWERS))
def test_kind_pages_with_an_answer_fit_360_px_and_every_input_is_labelled(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, name: str
) -> None:
    page.goto(f"/#/models/{name}")
    page.wait_for_selector("main h1")
    page.wait_for_load_state("networkidle")
    ANSWERS[name](page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
            .map(e => e.id || e.name || e.className)"""
    )
    assert unlabelled == []
    shot(page, tmp_path, f"narrow-{name}")
    assert_clean(page_log, live_server)


# -- the report page's evaluate form for the new kinds ------------------------------------------------------
def evaluated(page: Any) -> dict[str, Any]:
    with page.expect_response(lambda r: "/evaluate" in r.url) as response:
        page.get_by_role("button", name="Evaluate").click()
    assert response.value.ok, response.value.text()
    body: dict[str, Any] = response.value.json()
    return body


def test_recommender_evaluates_a_csv_of_ratings_and_counts_unknown_pairs_apart(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    frame = ratings(text_users=False).iloc[:20].copy()
    frame.loc[len(frame)] = {"userId": 999, "movieId": "m1", "rating": 3.0}  # a user the model never saw
    page.goto(f"/#/models/{COLLAB_DOT}/report")
    expect(page.locator("#eval-csv-hint")).to_contain_text("userId, movieId and rating")
    page.locator("#eval-csv").set_input_files(
        {"name": "ratings.csv", "mimeType": "text/csv", "buffer": frame.to_csv(index=False).encode()}
    )
    evaluation = evaluated(page)
    assert evaluation["n"] == 20 and evaluation["unknown"] == 1
    result = page.locator("#evaluation-result")
    expect(result).to_have_attribute("data-task", "rating")
    assert float(result.locator(".rmse").inner_text()) == pytest.approx(evaluation["rmse"], rel=1e-3)
    assert float(result.locator(".mae").inner_text()) == pytest.approx(evaluation["mae"], rel=1e-3)
    expect(result.locator(".unknown-pairs")).to_contain_text("1 pair(s)")
    shot(page, tmp_path, "collab-evaluate")
    assert_clean(page_log, live_server)


def test_segmentation_evaluates_images_with_a_mask_each(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    sizes = [(32, 32), (40, 28)]
    images = [shape_file(110 + i, size) for i, size in enumerate(sizes)]
    masks = []
    for i, size in enumerate(sizes):
        buffer = io.BytesIO()
        Image.fromarray(shapes(110 + i, size)[1]).save(buffer, format="PNG")
        masks.append({"name": f"mask-{i}.png", "mimeType": "image/png", "buffer": buffer.getvalue()})
    page.goto(f"/#/models/{SEGMENTATION}/report")
    page.locator("#eval-files").set_input_files(images)
    expect(page.locator("#eval-labels li")).to_have_count(2)
    for i, mask in enumerate(masks):
        page.locator(f"#eval-label-{i}").set_input_files(mask)
    evaluation = evaluated(page)
    assert evaluation["n"] == 2
    result = page.locator("#evaluation-result")
    expect(result).to_have_attribute("data-task", "segmentation")
    shown = result.locator(".pixel-accuracy").inner_text()
    assert float(shown.removesuffix("%")) == pytest.approx(evaluation["pixel_accuracy"] * 100, abs=0.051)
    rows = result.locator("table.segmentation-scores tbody tr")
    classes = [c for c in evaluation["iou"] if c != "mean"]
    expect(rows).to_have_count(len(classes) + 1)
    expect(rows.locator("td:first-child")).to_have_text([*classes, "mean"])
    shot(page, tmp_path, "segmentation-evaluate")
    assert_clean(page_log, live_server)
