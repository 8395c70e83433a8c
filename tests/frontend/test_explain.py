"""The page's Explain views (issue #24 item 6) in a real browser against the real server and tiny real
learners: an image's overlay toggled on its thumbnail, with its target and method to choose; a row's bar
chart of column attributions (one bar per input column, signed, largest first); a text's tokens coloured by
attribution; the API key sent with explain calls and a refused call shown in the API's words."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from service.explain.core import TARGETS
from tests.frontend.conftest import API_KEYS, PageLog
from tests.frontend.test_api_key import key_dialog
from tests.frontend.test_browser import assert_clean, png, shot
from tests.frontend.test_kinds import predict_texts
from tests.frontend.test_task_views import JS, table_entries
from tests.frontend.test_tasks import cifar, detail_of, fill_row_and_predict, predicted
from tests.helpers import TABULAR, VISION
from tests.tiny import TAB_REGRESSION_2, VIS_MULTI, VIS_POINTS, VIS_REGRESSION
from tests.tiny_segmentation import SEGMENTATION
from tests.tiny_text import TEXT_CLS

EXPLAIN = re.compile(r"/api/v1/(tabular|vision|text)/[^/]+/explain(\?|$)")
# The page's signed colours (js/explain.js signedColour): blue for, orange against.
POSITIVE_RGB = (31, 95, 168)
NEGATIVE_RGB = (213, 94, 0)


def explained(page: Any, action: Any) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The query of the explain request that `action` makes the page send, and the API's answer."""
    with page.expect_response(lambda r: EXPLAIN.search(r.url) is not None) as response:
        action()
    assert response.value.ok, response.value.text()
    body: dict[str, Any] = response.value.json()
    return parse_qs(urlsplit(response.value.url).query), body


def explain_file(base: str, name: str, file: dict[str, Any], **query: str) -> dict[str, Any]:
    """One image's explanation straight from the API (what the page should then show)."""
    files = {"files": (file["name"], file["buffer"], file["mimeType"])}
    answer = httpx.post(f"{base}/api/v1/vision/{name}/explain", params=query, files=files, timeout=120)
    assert answer.status_code == 200, answer.text
    item: dict[str, Any] = answer.json()["explanations"][0]
    return item


def colour_of(style: str) -> tuple[tuple[int, int, int], float]:
    """`rgba(r, g, b, a)` (or `rgb(r, g, b)`) as ((r, g, b), a)."""
    parts = [float(x) for x in re.findall(r"[\d.]+", style)]
    assert len(parts) in (3, 4), style
    return (int(parts[0]), int(parts[1]), int(parts[2])), parts[3] if len(parts) == 4 else 1.0


def shown_number(region: Any, selector: str) -> float:
    return float(region.locator(selector).inner_text())


def test_the_pages_explain_table_names_exactly_the_tasks_the_api_explains() -> None:
    entries = table_entries((JS / "explain.js").read_text(), "EXPLAIN_TARGETS")
    assert set(entries) == {task.value for task in TARGETS}


# -- images ---------------------------------------------------------------------------------------------
def test_an_images_explain_toggles_its_overlay_and_another_class_or_method_asks_again_for_that_image(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, VISION)["classes"]
    files = [cifar(0), cifar(3)]
    page.goto(f"/#/models/{VISION}")
    items = predicted(page, lambda: page.locator("#image-files").set_input_files(files))
    tiles = page.locator("#tiles .tile")
    expect(tiles.locator(".explain-toggle")).to_have_count(2)
    tile = tiles.nth(1)
    thumb, overlay = tile.locator("img.thumb"), tile.locator(".explain-overlay")

    # First press: the default explanation (the predicted class) of this one image, over its thumbnail.
    toggle = tile.get_by_role("button", name="Explain", exact=True)
    query, body = explained(page, toggle.click)
    assert len(body["explanations"]) == 1  # this image only
    assert "target" not in query and query["method"] == ["gradcam"]
    item = body["explanations"][0]
    assert item["target"] == items[1]["label"] and item["filename"] == files[1]["name"]
    expect(overlay).to_be_visible()
    expect(overlay).to_have_attribute("src", f"data:image/png;base64,{item['overlay_png']}")
    expect(tile.locator(".explain-target")).to_have_text(item["target"])
    expect(tile.locator(".explain-line")).to_contain_text("Grad-CAM")
    select = tile.locator(".explain-target-select")
    expect(select.locator("option")).to_have_text(classes)
    expect(select).to_have_value(item["target"])
    expect(tiles.nth(0).locator(".explain-overlay")).to_have_count(0)  # the other image is untouched
    # Fitted as the thumbnail is: the same box (the overlay has the uploaded image's size).
    box, thumb_box = overlay.bounding_box(), thumb.bounding_box()
    assert box == pytest.approx(thumb_box, abs=0.5)
    toggle = tile.get_by_role("button", name="Hide explanation")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    shot(page, tmp_path, "image-explained")

    # Off and on again: the overlay hides and comes back, without asking the API again.
    asked = len([u for u in page_log.requests if EXPLAIN.search(u)])
    toggle.click()
    expect(overlay).to_be_hidden()
    expect(tile.locator(".explain-target-select")).to_be_hidden()
    expect(thumb).to_be_visible()
    tile.get_by_role("button", name="Explain", exact=True).click()
    expect(overlay).to_be_visible()
    assert len([u for u in page_log.requests if EXPLAIN.search(u)]) == asked

    # Another class (one whose map differs from the default's): asked again for this image, shown.
    other = next(
        c
        for c in classes
        if c != item["target"]
        and explain_file(live_server, VISION, files[1], target=c)["overlay_png"] != item["overlay_png"]
    )
    query, body = explained(page, lambda: select.select_option(other))
    assert query["target"] == [other]
    again = body["explanations"][0]
    expect(overlay).to_have_attribute("src", f"data:image/png;base64,{again['overlay_png']}")
    expect(overlay).to_have_attribute("data-target", other)
    expect(tile.locator(".explain-target")).to_have_text(other)
    expect(tile.locator(".explain-overlay")).to_have_count(1)  # replaced, not stacked

    # The other method, for the same class.
    query, body = explained(
        page, lambda: tile.locator(".explain-method").select_option("integrated_gradients")
    )
    assert query == {"target": [other], "method": ["integrated_gradients"]}
    expect(overlay).to_have_attribute("data-method", "integrated_gradients")
    expect(tile.locator(".explain-line")).to_contain_text("integrated gradients")
    expect(overlay).to_have_attribute(
        "src", f"data:image/png;base64,{body['explanations'][0]['overlay_png']}"
    )
    shot(page, tmp_path, "image-explained-other")
    assert_clean(page_log, live_server)


@pytest.mark.parametrize("name", [VIS_MULTI, VIS_REGRESSION, VIS_POINTS, SEGMENTATION])
def test_every_image_task_offers_its_own_targets_to_explain(
    name: str, page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    """A class (multi-label, segmentation), a target (regression) or a point (points) to choose."""
    detail = detail_of(live_server, name)
    names = detail["targets"] or detail["classes"]
    what = {"regression": "target", "points": "point"}.get(detail["task"], "class")
    page.goto(f"/#/models/{name}")
    predicted(page, lambda: page.locator("#image-files").set_input_files([png("noise.png", 3)]))
    tile = page.locator("#tiles .tile").first
    _, body = explained(page, tile.get_by_role("button", name="Explain", exact=True).click)
    default = body["explanations"][0]["target"]
    select = tile.locator(".explain-target-select")
    expect(select.locator("option")).to_have_text(names)
    expect(select).to_have_value(default)
    expect(tile.locator(".explain-line")).to_contain_text(f"({what})")
    expect(tile.locator(".explain-overlay")).to_be_visible()
    last = names[-1] if names[-1] != default else names[0]
    query, body = explained(page, lambda: select.select_option(last))
    assert query["target"] == [last] and body["explanations"][0]["target"] == last
    expect(tile.locator(".explain-target")).to_have_text(last)
    expect(tile.locator(".explain-overlay")).to_have_attribute("data-target", last)
    shot(page, tmp_path, f"explained-{name}")
    assert_clean(page_log, live_server)


# -- rows -----------------------------------------------------------------------------------------------
def check_bars(panel: Any, item: dict[str, Any], columns: list[str]) -> None:
    """One bar per input column, largest |attribution| first, its side and colour by its sign, as long as
    its share of the largest (half the track at most)."""
    bars = panel.locator(".attribution")
    expect(bars).to_have_count(len(columns))
    shown = bars.evaluate_all("els => els.map(e => [e.dataset.column, Number(e.dataset.value)])")
    assert sorted(c for c, _ in shown) == sorted(columns)
    assert dict(shown) == pytest.approx(item["attributions"])
    sizes = [abs(v) for _, v in shown]
    assert sizes == sorted(sizes, reverse=True)
    largest = max(sizes)
    geometry = bars.evaluate_all(
        """els => els.map(e => {
            const fill = e.querySelector(".attr-fill"), track = e.querySelector(".attr-track");
            const f = fill.getBoundingClientRect(), t = track.getBoundingClientRect();
            return {cls: e.className, colour: getComputedStyle(fill).backgroundColor,
                    left: f.left - t.left, right: t.right - f.right, width: f.width, track: t.width};
        })"""
    )
    for (column, value), bar in zip(shown, geometry, strict=True):
        side = "positive" if value >= 0 else "negative"
        assert side in bar["cls"].split(), column
        assert colour_of(bar["colour"])[0] == (POSITIVE_RGB if value >= 0 else NEGATIVE_RGB)
        assert bar["width"] == pytest.approx(bar["track"] / 2 * abs(value) / largest, abs=1.0)
        # Positive bars start at the centre line and go right; negative ones end there.
        start = bar["left"] if value >= 0 else bar["right"]
        assert start == pytest.approx(bar["track"] / 2, abs=1.0), column


def test_a_rows_explain_shows_a_signed_bar_per_column_sorted_with_output_and_base_value(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    detail = detail_of(live_server, TABULAR)
    columns = [c["name"] for c in detail["input_schema"]["columns"]]
    page.goto(f"/#/models/{TABULAR}")
    with page.expect_request(lambda r: r.url.endswith("/predict")) as predict:
        item = fill_row_and_predict(page)[0]
    result = page.locator("#tabular-prediction")
    with page.expect_request(lambda r: EXPLAIN.search(r.url) is not None) as sent:
        query, body = explained(page, result.get_by_role("button", name="Explain this row").click)
    assert query == {}
    assert sent.value.post_data_json == predict.value.post_data_json  # the row that was predicted
    explanation = body["explanations"][0]
    assert explanation["target"] == item["label"]
    panel = result.locator(".explain-row")
    check_bars(panel, explanation, columns)
    expect(panel.locator(".explain-target")).to_have_text(item["label"])
    assert shown_number(panel, ".explain-output") == pytest.approx(explanation["output"], rel=1e-3)
    assert shown_number(panel, ".explain-base") == pytest.approx(explanation["base_value"], rel=1e-3)
    expect(panel.locator(".explain-line")).to_contain_text("probability")
    expect(panel.locator(".explain-target-select option")).to_have_text(detail["classes"])
    shot(page, tmp_path, "row-explained")

    # The other class: asked again with ?target=, for the same row, the bars redrawn from its answer.
    other = next(c for c in detail["classes"] if c != item["label"])
    query, body = explained(page, lambda: panel.locator(".explain-target-select").select_option(other))
    assert query == {"target": [other]}
    check_bars(panel, body["explanations"][0], columns)
    expect(panel.locator(".explain-target")).to_have_text(other)
    # The reference row the attributions start from, on request.
    panel.locator(".explain-reference summary").click()
    expect(panel.locator(".explain-reference tbody tr")).to_have_count(len(body["reference"]))
    # Hidden and shown again by the same button.
    button = result.get_by_role("button", name="Explain this row")
    expect(button).to_have_attribute("aria-pressed", "true")
    button.click()
    expect(panel.locator(".attributions")).to_be_hidden()
    assert_clean(page_log, live_server)


def test_a_regression_rows_explain_states_the_value_and_offers_its_targets(
    page: Any, live_server: str, page_log: PageLog
) -> None:
    detail = detail_of(live_server, TAB_REGRESSION_2)
    columns = [c["name"] for c in detail["input_schema"]["columns"]]
    page.goto(f"/#/models/{TAB_REGRESSION_2}")
    fill_row_and_predict(page)
    panel = page.locator("#tabular-prediction")
    _, body = explained(panel.page, panel.get_by_role("button", name="Explain this row").click)
    expect(panel.locator(".explain-target-select option")).to_have_text(detail["targets"])
    expect(panel.locator(".explain-line")).to_contain_text("value")
    check_bars(panel, body["explanations"][0], columns)
    query, body = explained(
        page, lambda: panel.locator(".explain-target-select").select_option(detail["targets"][1])
    )
    assert query == {"target": [detail["targets"][1]]}
    expect(panel.locator(".explain-target")).to_have_text(detail["targets"][1])
    check_bars(panel, body["explanations"][0], columns)
    assert_clean(page_log, live_server)


# -- texts ----------------------------------------------------------------------------------------------
def test_a_texts_explain_highlights_each_token_by_its_signed_attribution(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, TEXT_CLS)["classes"]
    page.goto(f"/#/models/{TEXT_CLS}")
    lines = ["It was a lovely film and the acting was excellent.", "Bad, boring."]
    _, items = predict_texts(page, "\n".join(lines))
    card = page.locator("#text-predictions .text-prediction").nth(1)
    with page.expect_request(lambda r: EXPLAIN.search(r.url) is not None) as sent:
        _, body = explained(page, card.get_by_role("button", name="Explain", exact=True).click)
    assert sent.value.post_data_json == {"texts": [lines[1]]}  # this text only
    item = body["explanations"][0]
    assert item["target"] == items[1]["label"]
    tokens = card.locator(".tokens .token")
    expect(tokens).to_have_text(item["tokens"])
    shown = tokens.evaluate_all(
        """els => els.map(e => ({
            value: Number(e.dataset.attribution), special: e.classList.contains("special"),
            colour: getComputedStyle(e).backgroundColor, text: getComputedStyle(e).color,
        }))"""
    )
    assert [t["value"] for t in shown] == pytest.approx(item["attributions"])
    assert [t["special"] for t in shown] == item["special"]
    assert any(item["special"]) and not all(item["special"])  # xxbos (and xxmaj) among the words
    largest = max(abs(v) for v in item["attributions"])
    for token, value in zip(shown, item["attributions"], strict=True):
        rgb, alpha = colour_of(token["colour"])
        assert rgb == (POSITIVE_RGB if value >= 0 else NEGATIVE_RGB)
        assert alpha == pytest.approx(0.08 + 0.62 * abs(value) / largest, abs=0.01)
    # Special tokens are muted: another (lighter) text colour than the words.
    special_colours = {t["text"] for t in shown if t["special"]}
    word_colours = {t["text"] for t in shown if not t["special"]}
    assert special_colours.isdisjoint(word_colours)
    expect(card.locator(".explain-target")).to_have_text(item["target"])
    assert shown_number(card, ".explain-output") == pytest.approx(item["output"], rel=1e-3)
    expect(page.locator("#text-predictions .text-prediction").nth(0).locator(".tokens")).to_have_count(0)
    shot(page, tmp_path, "text-explained")

    other = next(c for c in classes if c != item["target"])
    query, body = explained(page, lambda: card.locator(".explain-target-select").select_option(other))
    assert query == {"target": [other]}
    expect(card.locator(".explain-target")).to_have_text(other)
    values = tokens.evaluate_all("els => els.map(e => Number(e.dataset.attribution))")
    assert values == pytest.approx(body["explanations"][0]["attributions"])
    assert_clean(page_log, live_server)


# -- the API key, and a refused explanation --------------------------------------------------------------
def test_explain_calls_carry_the_kept_api_key_and_a_refused_call_shows_the_apis_detail(
    keyed_page: Any, keyed_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page = keyed_page
    keys: list[str | None] = []
    page.on("request", lambda r: keys.append(r.headers.get("x-api-key")) if EXPLAIN.search(r.url) else None)
    page.goto(f"/#/models/{VISION}")
    page.locator("#image-files").set_input_files([cifar(2)])
    key_dialog(page).get_by_label("API key", exact=True).fill(API_KEYS[1])
    key_dialog(page).get_by_role("button", name="Use key").click()
    tile = page.locator("#tiles .tile").first
    _, body = explained(page, tile.get_by_role("button", name="Explain", exact=True).click)
    assert keys == [API_KEYS[1]]
    expect(tile.locator(".explain-overlay")).to_be_visible()

    # The key forgotten: the next explain call answers 401, asks again, and a cancel shows the API's words.
    page.get_by_role("button", name="Forget API key").click()
    with page.expect_response(lambda r: EXPLAIN.search(r.url) is not None) as refused:
        tile.locator(".explain-method").select_option("integrated_gradients")
    assert refused.value.status == 401
    key_dialog(page).get_by_role("button", name="Cancel").click()
    expect(tile.locator(".explain-status .error-detail")).to_have_text(refused.value.json()["detail"])
    # The overlay shown is still the Grad-CAM one, and the controls say so again.
    expect(tile.locator(".explain-overlay")).to_have_attribute("data-method", "gradcam")
    expect(tile.locator(".explain-method")).to_have_value("gradcam")
    expect(tile.locator(".explain-line")).to_contain_text("Grad-CAM")
    assert keys[-1] is None
    shot(page, tmp_path, "explain-refused")
    assert page_log.page_errors == []
