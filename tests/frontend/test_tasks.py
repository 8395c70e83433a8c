"""The page of each task in a real browser, against the real server and tiny real learners of every task
(tests/tiny.py): multi-label chips and bars, regression values with their target names, points drawn on the
thumbnail where the API puts them, and the tabular forms and CSV tables of each task."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.frontend.conftest import PageLog
from tests.frontend.test_browser import assert_clean, png, shot
from tests.helpers import image_bytes
from tests.tiny import (
    TAB_CAT,
    TAB_CONT,
    TAB_MULTI,
    TAB_REGRESSION,
    TAB_REGRESSION_2,
    VIS_MULTI,
    VIS_POINTS,
    VIS_REGRESSION,
    cifar_files,
)

PREDICT = re.compile(r"/api/v1/(tabular|vision)/[^/]+/predict(\?|$)")


def detail_of(base: str, name: str) -> dict[str, Any]:
    detail: dict[str, Any] = httpx.get(f"{base}/api/v1/models/{name}").json()
    return detail


def cifar(index: int) -> dict[str, Any]:
    path = cifar_files(per_class=1)[index]
    return {"name": f"{path.parent.name}.jpg", "mimeType": "image/jpeg", "buffer": path.read_bytes()}


def predicted(page: Any, action: Any) -> list[dict[str, Any]]:
    """The prediction items of the predict response that `action` makes the page ask for."""
    with page.expect_response(lambda r: PREDICT.search(r.url) is not None) as response:
        action()
    assert response.value.ok, response.value.text()
    items: list[dict[str, Any]] = response.value.json()["predictions"]
    return items


def shown_threshold(value: float) -> str:
    return f"{value:g}"


def check_multi_label(view: Any, item: dict[str, Any], classes: list[str]) -> None:
    """Chips = the item's labels; one bar per class, the ones over the threshold marked, the threshold
    shown as a number and as a line on every bar."""
    if item["labels"]:
        expect(view.locator(".chip")).to_have_text(item["labels"])
    else:
        expect(view.locator(".no-labels")).to_be_visible()
    bars = view.locator(".probs.multi .prob")
    expect(bars).to_have_count(len(classes))
    assert sorted(bars.evaluate_all("els => els.map(e => e.dataset.label)")) == sorted(classes)
    over = view.locator(".probs.multi .prob.over").evaluate_all("els => els.map(e => e.dataset.label)")
    assert sorted(over) == sorted(item["labels"])
    expect(view.locator(".threshold")).to_have_text(shown_threshold(item["threshold"]))
    lines = view.locator(".prob-threshold").evaluate_all("els => els.map(e => e.style.left)")
    assert lines == [f"{item['threshold'] * 100:g}%"] * len(classes)


def flipping_threshold(item: dict[str, Any]) -> float:
    """A threshold (two decimals, in (0, 1)) that changes the item's labels: just under its least likely
    class, or just over its most likely one when every class is already over."""
    probabilities = [float(p) for p in item["probabilities"].values()]
    if min(probabilities) < float(item["threshold"]):
        return max(0.01, math.floor(min(probabilities) * 100) / 100)
    return min(0.99, math.floor(max(probabilities) * 100) / 100 + 0.01)


def fill_row_and_predict(page: Any) -> list[dict[str, Any]]:
    page.get_by_role("button", name="Fill empty numbers with training means").click()
    return predicted(page, lambda: page.get_by_role("button", name="Predict", exact=True).click())


def score_csv(page: Any, frame: pd.DataFrame) -> Any:
    csv = frame[TAB_CAT + TAB_CONT].dropna().iloc[:5].to_csv(index=False)
    page.get_by_role("tab", name="CSV file").click()
    page.locator("#csv-file").set_input_files(
        {"name": "rows.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    page.get_by_role("button", name="Score CSV").click()
    table = page.locator("#mode-csv table.results-table")
    expect(table.locator("tbody tr")).to_have_count(5)
    return table


def header_of(table: Any) -> list[str]:
    cells: list[str] = table.locator("thead th").all_inner_texts()
    return cells


def test_vision_multi_label_shows_chips_and_a_bar_per_class_and_a_threshold_control_asks_again(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = detail_of(live_server, VIS_MULTI)["classes"]
    page.goto(f"/#/models/{VIS_MULTI}")
    expect(page.locator("#vision-title")).to_have_text("Tag images")
    expect(page.locator("#top-k")).to_have_count(0)  # top-k is a classifier's control
    tiles = page.locator("#tiles .tile")
    items = predicted(page, lambda: page.locator("#image-files").set_input_files([cifar(0), cifar(9)]))
    expect(tiles.locator(".chips-line")).to_have_count(2)
    for i, item in enumerate(items):
        check_multi_label(tiles.nth(i), item, classes)
    assert all(item["threshold"] == 0.5 for item in items)  # the learner's own (fastai's default)
    shot(page, tmp_path, "vision-multi-label")

    # Another threshold, asked again with ?threshold= as soon as it changes: other chips.
    value = flipping_threshold(items[0])
    threshold = page.get_by_label("Threshold")
    again = predicted(page, lambda: (threshold.fill(f"{value:g}"), threshold.press("Enter")))
    expect(tiles.locator(".threshold")).to_have_text([f"{value:g}"] * 2)
    for i, item in enumerate(again):
        assert item["threshold"] == pytest.approx(value)
        check_multi_label(tiles.nth(i), item, classes)
    assert again[0]["labels"] != items[0]["labels"]
    assert any(f"threshold={value:g}" in u for u in page_log.requests)
    shot(page, tmp_path, "vision-multi-label-threshold")
    assert_clean(page_log, live_server)


def test_vision_regression_shows_each_value_with_its_target_name(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    targets = detail_of(live_server, VIS_REGRESSION)["targets"]
    assert targets == ["target_0", "target_1"]  # unnamed targets, as API.md names them
    page.goto(f"/#/models/{VIS_REGRESSION}")
    tiles = page.locator("#tiles .tile")
    items = predicted(
        page, lambda: page.locator("#image-files").set_input_files([cifar(2), png("noise.png", 1)])
    )
    expect(tiles.locator("dl.values")).to_have_count(2)
    for i, item in enumerate(items):
        values = tiles.nth(i).locator("dl.values")
        expect(values.locator("dt.target")).to_have_text(targets)
        shown = values.locator("dd.value").evaluate_all("els => els.map(e => Number(e.dataset.value))")
        assert shown == [item["values"][t] for t in targets]
        for t in targets:  # and as text, rounded to 5 significant digits
            text = values.locator(f'dd.value[data-target="{t}"]').inner_text()
            assert float(text) == pytest.approx(item["values"][t], rel=1e-4, abs=1e-9)
    shot(page, tmp_path, "vision-regression")
    assert_clean(page_log, live_server)


# The screen position of each drawn point and of the image's content box (object-fit: contain) in it.
POINT_GEOMETRY = """tile => {
    const img = tile.querySelector("img.thumb"), box = img.getBoundingClientRect();
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    const left = box.left + (box.width - img.naturalWidth * scale) / 2;
    const top = box.top + (box.height - img.naturalHeight * scale) / 2;
    return {
        natural: [img.naturalWidth, img.naturalHeight],
        drawn: [...tile.querySelectorAll(".points-overlay circle")].map((c) => {
            const r = c.getBoundingClientRect();
            return {
                at: [Number(c.getAttribute("cx")), Number(c.getAttribute("cy"))],
                screen: [r.left + r.width / 2, r.top + r.height / 2],
            };
        }),
        content: { left, top, scale },
    };
}"""


def test_vision_points_are_drawn_on_each_thumbnail_where_the_api_puts_them_and_listed(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    n_points = len(detail_of(live_server, VIS_POINTS)["targets"])
    page.goto(f"/#/models/{VIS_POINTS}")
    expect(page.locator("#vision-title")).to_have_text("Locate points in images")
    tiles = page.locator("#tiles .tile")
    # A square cifar image and two that are not (wide and tall): the thumbnail letterboxes those.
    wide = {"name": "wide.png", "mimeType": "image/png", "buffer": image_bytes(size=(96, 32), seed=5)}
    tall = {"name": "tall.png", "mimeType": "image/png", "buffer": image_bytes(size=(30, 80), seed=6)}
    items = predicted(page, lambda: page.locator("#image-files").set_input_files([cifar(1), wide, tall]))
    expect(tiles.locator(".points-overlay")).to_have_count(3)
    for i, item in enumerate(items):
        tile = tiles.nth(i)
        assert len(item["points"]) == n_points
        expect(tile.locator(".points-overlay circle")).to_have_count(n_points)
        expect(tile.locator(".point-list li")).to_have_count(n_points)
        listed = tile.locator(".point-xy").evaluate_all(
            "els => els.map(e => [Number(e.dataset.x), Number(e.dataset.y)])"
        )
        assert listed == item["points"]
        geometry = tile.evaluate(POINT_GEOMETRY)
        content = geometry["content"]
        for (x, y), drawn in zip(item["points"], geometry["drawn"], strict=True):
            assert drawn["at"] == pytest.approx([x, y])  # the overlay is in the image's own pixels
            expected = [content["left"] + x * content["scale"], content["top"] + y * content["scale"]]
            assert drawn["screen"] == pytest.approx(expected, abs=0.75)  # ... and lands on that pixel
    assert [tiles.nth(i).evaluate(POINT_GEOMETRY)["natural"] for i in range(3)] == [
        [32, 32],
        [96, 32],
        [30, 80],
    ]
    shot(page, tmp_path, "vision-points")
    assert_clean(page_log, live_server)


def test_tabular_multi_label_row_shows_chips_bars_and_threshold_and_the_csv_table_its_columns(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    classes = detail_of(live_server, TAB_MULTI)["classes"]
    page.goto(f"/#/models/{TAB_MULTI}")
    result = page.locator("#tabular-prediction")
    [item] = fill_row_and_predict(page)
    check_multi_label(result, item, classes)
    shot(page, tmp_path, "tabular-multi-label")
    value = flipping_threshold(item)
    threshold = page.locator("#row-threshold")
    expect(page.locator('label[for="row-threshold"]')).to_have_text("Threshold")
    [again] = predicted(page, lambda: (threshold.fill(f"{value:g}"), threshold.press("Tab")))  # on change
    assert again["threshold"] == pytest.approx(value)
    assert again["labels"] != item["labels"]
    check_multi_label(result, again, classes)

    table = score_csv(page, adult_frame)
    assert header_of(table)[:3] == ["prediction", *(f"p_{c}" for c in classes)]
    expect(table.locator("thead th strong")).to_have_text(["prediction"])
    for cell in table.locator("tbody tr td:first-child").all_inner_texts():
        assert set(filter(None, cell.split(";"))) <= set(classes)
    shot(page, tmp_path, "tabular-multi-label-csv")
    assert_clean(page_log, live_server)


@pytest.mark.parametrize("name", [TAB_REGRESSION, TAB_REGRESSION_2])
def test_tabular_regression_row_shows_values_with_target_names_and_the_csv_table_its_columns(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, adult_frame: pd.DataFrame, name: str
) -> None:
    targets = detail_of(live_server, name)["targets"]
    page.goto(f"/#/models/{name}")
    expect(page.locator("#row-threshold")).to_have_count(0)  # a classifier-only control
    [item] = fill_row_and_predict(page)
    values = page.locator("#tabular-prediction dl.values")
    expect(values.locator("dt.target")).to_have_text(targets)
    shown = values.locator("dd.value").evaluate_all("els => els.map(e => Number(e.dataset.value))")
    assert shown == [item["values"][t] for t in targets]
    shot(page, tmp_path, f"tabular-regression-{len(targets)}")

    table = score_csv(page, adult_frame)
    columns = ["prediction"] if len(targets) == 1 else [f"prediction_{t}" for t in targets]
    assert header_of(table)[: len(columns)] == columns
    expect(table.locator("thead th strong")).to_have_text(columns)
    for row in table.locator("tbody tr").all():
        cells = row.locator("td").all_inner_texts()[: len(columns)]
        assert all(float(c) == float(c) for c in cells)  # numbers, not NaN
    shot(page, tmp_path, f"tabular-regression-{len(targets)}-csv")
    assert_clean(page_log, live_server)


@pytest.mark.parametrize("page", [{"width": 360, "height": 780}], indirect=True)
@pytest.mark.parametrize("name", [VIS_MULTI, VIS_REGRESSION, VIS_POINTS, TAB_MULTI, TAB_REGRESSION_2])
def test_task_pages_with_a_prediction_fit_360_px_and_every_input_is_labelled(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, name: str
) -> None:
    page.goto(f"/#/models/{name}")
    page.wait_for_selector("main h1")
    page.wait_for_load_state("networkidle")
    if name.startswith("cifar"):
        predicted(page, lambda: page.locator("#image-files").set_input_files([cifar(0), cifar(3)]))
        expect(page.locator("#tiles .tile.done")).to_have_count(2)
    else:
        fill_row_and_predict(page)
        expect(page.locator("#tabular-prediction")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
            .map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    shot(page, tmp_path, f"narrow-{name}")
    assert_clean(page_log, live_server)
