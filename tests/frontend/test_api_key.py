"""The page against a server that asks for an API key (PREDICT_API_KEYS): it asks for the key when a model
call answers 401, keeps it for the browser session only (sessionStorage), and forgets it on request."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
from playwright.sync_api import expect

from service.errors import MSG_PREDICT_KEY_MISSING, MSG_PREDICT_KEY_WRONG
from service.training import data
from tests.frontend.conftest import API_KEYS, PageLog
from tests.frontend.test_browser import assert_clean, png, shot
from tests.helpers import TABULAR, VISION

STORAGE_KEY = "fastai-serve.api-key"


def key_dialog(page: Any) -> Any:
    return page.get_by_role("dialog", name="API key needed")


def sent_keys(page: Any, path: str) -> list[tuple[str, str | None]]:
    """Every request to a URL containing `path` from now on, with its `X-API-Key` (None without one)."""
    keys: list[tuple[str, str | None]] = []
    page.on("request", lambda r: keys.append((r.url, r.headers.get("x-api-key"))) if path in r.url else None)
    return keys


def is_predict(response: Any) -> bool:
    return bool(urlsplit(response.url).path.endswith("/predict"))


def screen(page: Any, tmp_path: Path, name: str) -> None:
    """What the person sees: the viewport, where the modal dialog sits (a full-page shot misplaces it)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"))


def predict_row(page: Any) -> None:
    page.get_by_role("button", name="Fill empty numbers with training means").click()
    page.get_by_role("button", name="Predict", exact=True).click()


def stored(page: Any) -> dict[str, Any]:
    """The key as this tab keeps it, and whether anything went to localStorage or a cookie."""
    kept: dict[str, Any] = page.evaluate(
        f"""() => ({{
            session: sessionStorage.getItem({STORAGE_KEY!r}),
            local: localStorage.length,
            cookies: document.cookie,
        }})"""
    )
    return kept


def test_a_prediction_asks_for_the_key_refuses_a_wrong_one_and_keeps_the_right_one_for_the_session(
    keyed_page: Any, keyed_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page = keyed_page
    calls = sent_keys(page, f"/api/v1/tabular/{TABULAR}/predict")
    page.goto(f"/#/models/{TABULAR}")
    expect(page.locator("#key-control")).to_be_hidden()
    predict_row(page)
    dialog = key_dialog(page)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("API key", exact=True)).to_be_focused()
    assert dialog.get_by_label("API key", exact=True).get_attribute("type") == "password"
    expect(dialog).to_contain_text("This server asks for an API key before it runs its models.")
    screen(page, tmp_path, "key-prompt")

    dialog.get_by_label("API key", exact=True).fill("not-a-key")
    dialog.get_by_role("button", name="Use key").click()
    expect(dialog.get_by_role("alert")).to_contain_text(f"Key refused: {MSG_PREDICT_KEY_WRONG}")
    expect(dialog.get_by_label("API key", exact=True)).to_have_value("")
    expect(dialog.get_by_label("API key", exact=True)).to_be_focused()
    assert stored(page)["session"] is None  # a refused key is never kept
    screen(page, tmp_path, "key-refused")

    dialog.get_by_label("API key", exact=True).fill(API_KEYS[1])
    dialog.get_by_label("API key", exact=True).press("Enter")
    result = page.locator("#tabular-prediction")
    expect(result.locator(".predicted-label")).to_have_text(re.compile(r"^(<=50K|>50K)$"))
    expect(dialog).to_have_count(0)
    assert [k for _, k in calls] == [None, "not-a-key", API_KEYS[1]]
    assert stored(page) == {"session": API_KEYS[1], "local": 0, "cookies": ""}
    expect(page.get_by_role("button", name="Forget API key")).to_be_visible()

    # A second prediction sends the kept key at once; so does one after a reload (same tab session).
    with page.expect_response(is_predict) as second:
        page.get_by_role("button", name="Predict", exact=True).click()
    assert second.value.status == 200
    page.reload()
    expect(page.get_by_role("button", name="Forget API key")).to_be_visible()
    with page.expect_response(is_predict) as third:
        predict_row(page)
    assert third.value.status == 200
    expect(result.locator(".predicted-label")).to_be_visible()
    expect(dialog).to_have_count(0)
    assert [k for _, k in calls[3:]] == [API_KEYS[1], API_KEYS[1]]
    shot(page, tmp_path, "key-kept")

    # Forgetting it: the next prediction asks again; cancelling shows the API's own 401 on the page.
    page.get_by_role("button", name="Forget API key").click()
    expect(page.locator("#key-status")).to_have_text("API key forgotten")
    expect(page.get_by_role("button", name="Forget API key")).to_be_hidden()
    assert stored(page)["session"] is None
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("main .error-detail")).to_have_text(MSG_PREDICT_KEY_MISSING)
    assert [k for _, k in calls[5:]] == [None]
    assert_clean(page_log, keyed_server)


def test_images_csv_and_evaluations_use_the_same_key(
    keyed_page: Any, keyed_server: str, page_log: PageLog, adult_frame: pd.DataFrame
) -> None:
    page = keyed_page
    keys = sent_keys(page, "/api/v1/")
    page.goto(f"/#/models/{VISION}")
    page.locator("#image-files").set_input_files([png("a.png", 1), png("b.png", 2)])
    dialog = key_dialog(page)
    dialog.get_by_label("API key", exact=True).fill(API_KEYS[0])
    dialog.get_by_role("button", name="Use key").click()
    expect(page.locator("#tiles .predicted-label")).to_have_count(2)  # the multipart body, sent again

    rows = adult_frame[data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL].dropna().iloc[:3]
    page.goto(f"/#/models/{TABULAR}")
    page.get_by_role("tab", name="CSV file").click()
    page.locator("#csv-file").set_input_files(
        {"name": "rows.csv", "mimeType": "text/csv", "buffer": rows.to_csv(index=False).encode()}
    )
    page.get_by_role("button", name="Score CSV").click()
    expect(page.locator("#mode-csv table.results-table tbody tr")).to_have_count(3)

    page.goto(f"/#/models/{TABULAR}/report")
    labelled = adult_frame.dropna().iloc[:20].to_csv(index=False)
    page.locator("#eval-csv").set_input_files(
        {"name": "labelled.csv", "mimeType": "text/csv", "buffer": labelled.encode()}
    )
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result .accuracy")).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(dialog).to_have_count(0)
    model_calls = [k for url, k in keys if urlsplit(url).path.endswith(("/predict", "/csv", "/evaluate"))]
    assert model_calls == [None, API_KEYS[0], API_KEYS[0], API_KEYS[0]]  # asked once, for the first
    assert_clean(page_log, keyed_server)


@pytest.mark.parametrize("keyed_page", [{"width": 360, "height": 780}], indirect=True)
def test_the_key_dialog_fits_360_px_labels_its_input_and_closes_with_escape(
    keyed_page: Any, keyed_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page = keyed_page
    page.goto(f"/#/models/{TABULAR}")
    predict_row(page)
    dialog = key_dialog(page)
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
            .map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    screen(page, tmp_path, "key-prompt-narrow")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.locator("main .error-detail")).to_have_text(MSG_PREDICT_KEY_MISSING)
    expect(page.get_by_role("button", name="Predict", exact=True)).to_be_focused()  # back where it was
    assert_clean(page_log, keyed_server)


def test_a_frontend_on_another_origin_asks_for_the_key_and_sends_it_through_cors(
    keyed_page: Any, keyed_server: str, keyed_static_frontend: str, page_log: PageLog
) -> None:
    page = keyed_page
    page.goto(f"{keyed_static_frontend}/#/models/{TABULAR}")
    predict_row(page)  # the 401 must be readable across origins, or the page could not tell it from a fault
    dialog = key_dialog(page)
    dialog.get_by_label("API key", exact=True).fill(API_KEYS[0])
    dialog.get_by_role("button", name="Use key").click()  # X-API-Key: a preflighted request
    expect(page.locator("#tabular-prediction .prob")).to_have_count(2)
    assert any(u.startswith(f"{keyed_server}/api/v1/tabular/") for u in page_log.requests)
    assert_clean(page_log, keyed_server, keyed_static_frontend)
