"""The static frontend in a real browser against the real server and tiny real learners."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect

from service.training import data
from tests.frontend.conftest import BARE, BROKEN, PageLog
from tests.helpers import TABULAR, VISION, image_bytes


def png(name: str, seed: int) -> dict[str, Any]:
    return {"name": name, "mimeType": "image/png", "buffer": image_bytes(seed=seed)}


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def assert_clean(page_log: PageLog, *origins: str) -> None:
    """No console or page errors, and nothing fetched from anywhere but our servers (no CDN)."""
    assert page_log.unexpected_errors() == []
    foreign = [u for u in page_log.requests if not u.startswith((*origins, "blob:", "data:"))]
    assert foreign == []


def schema_of(base: str, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{base}/api/v1/models/{name}").json()["input_schema"]
    return schema


def test_model_list_shows_kind_task_status_version_device_and_failure_reason(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    models = httpx.get(f"{live_server}/api/v1/models").json()["models"]
    page.goto("/")
    cards = page.locator(".model-card")
    expect(cards).to_have_count(len(models))
    for name, kind in [(TABULAR, "tabular"), (VISION, "vision"), (BARE, "tabular")]:
        card = page.locator(f'.model-card[data-model="{name}"]')
        expect(card.locator(".badge")).to_have_text("ready")
        expect(card.locator(".kind")).to_have_text(kind)
        expect(card.locator(".task")).to_have_text("classification")
        expect(card.locator(".device")).to_have_text("cpu")
        expect(card.locator(".version")).not_to_have_text("—")
    for model in models:
        if model["status"] == "ready":
            expect(page.locator(f'.model-card[data-model="{model["name"]}"] .task')).to_have_text(
                model["task"]
            )
    broken = page.locator(f'.model-card[data-model="{BROKEN}"]')
    expect(broken.locator(".badge")).to_have_text("failed")
    expect(broken.locator(".model-error")).to_have_text(
        next(m["error"] for m in models if m["name"] == BROKEN)
    )
    shot(page, tmp_path, "models")
    # Keyboard: the first model's Predict link is reachable with Tab and opens the model page.
    page.locator(f'.model-card[data-model="{TABULAR}"] a.button').first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/models/{TABULAR}$"))
    expect(page.locator("#tabular-form")).to_be_visible()
    assert_clean(page_log, live_server)


def test_tabular_form_has_one_control_per_schema_column_and_predicts(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    schema = schema_of(live_server, TABULAR)
    page.goto(f"/#/models/{TABULAR}")
    form = page.locator("#tabular-form")
    expect(form.locator("[data-column]")).to_have_count(len(schema["columns"]))
    for column in schema["columns"]:
        control = form.locator(f'[data-column="{column["name"]}"]')
        expect(control).to_have_count(1)
        label = page.locator(f'label[for="{control.get_attribute("id")}"]')
        expect(label).to_contain_text(column["name"])
        if column["type"] == "categorical":
            assert control.evaluate("e => e.tagName") == "SELECT"
            options = control.locator("option").all_inner_texts()
            assert options == [*column["categories"], "(missing)"]
        else:
            assert control.get_attribute("type") == "number"
            assert float(control.get_attribute("placeholder") or "nan") == pytest.approx(
                column["mean"], rel=1e-3
            )
            assert (control.get_attribute("required") is None) == column["nullable"]
    page.get_by_role("button", name="Fill empty numbers with training means").click()
    page.locator('[data-column="age"]').fill("")  # nullable: left empty, filled by the learner
    page.get_by_role("button", name="Predict", exact=True).click()
    result = page.locator("#tabular-prediction")
    expect(result.locator(".predicted-label")).to_have_text(re.compile(r"^(<=50K|>50K)$"))
    expect(result.locator(".prob")).to_have_count(2)
    expect(result.locator(".warning")).to_contain_text(["age: missing value filled"])
    shot(page, tmp_path, "tabular")
    assert_clean(page_log, live_server)


def test_tabular_csv_mode_shows_a_results_table_and_a_download(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    csv = adult_frame[data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL].dropna().iloc[:5].to_csv(index=False)
    page.goto(f"/#/models/{TABULAR}")
    page.get_by_role("tab", name="One row").focus()
    page.keyboard.press("ArrowRight")  # the mode tabs work from the keyboard
    expect(page.get_by_role("tab", name="CSV file")).to_be_focused()
    expect(page.locator("#mode-row")).to_be_hidden()
    page.locator("#csv-file").set_input_files(
        {"name": "rows.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    page.get_by_role("button", name="Score CSV").click()
    table = page.locator("#mode-csv table.results-table")
    expect(table.locator("tbody tr")).to_have_count(5)
    expect(table.locator("thead")).to_contain_text("prediction")
    shot(page, tmp_path, "tabular-csv")
    with page.expect_download() as download:
        page.locator("#csv-download").click()
    assert download.value.suggested_filename == "rows-scored.csv"
    scored = Path(download.value.path()).read_text()
    assert scored.splitlines()[0].endswith("prediction,p_<=50K,p_>50K")
    assert_clean(page_log, live_server)


def test_api_problem_detail_is_shown_verbatim(page: Any, live_server: str, page_log: PageLog) -> None:
    detail = "model 'adult-tiny' is overloaded <b>not markup</b>; retry in 1 s"
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail}
    page.route(
        f"**/api/v1/tabular/{TABULAR}/predict",
        lambda route: route.fulfill(
            status=503, content_type="application/problem+json", body=json.dumps(problem)
        ),
    )
    page.goto(f"/#/models/{TABULAR}")
    page.get_by_role("button", name="Fill empty numbers with training means").click()
    page.locator('[data-column="fnlwgt"]').press("Enter")  # keyboard submission
    expect(page.get_by_role("alert").locator(".error-detail")).to_have_text(detail)


def test_three_images_show_three_thumbnails_then_three_predictions_and_reselection_replaces_them(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    predict_calls: list[str] = []
    page.on("request", lambda r: predict_calls.append(r.url) if "/predict" in r.url else None)
    page.goto(f"/#/models/{VISION}")
    tiles = page.locator("#tiles .tile")
    expect(page.locator("#tiles img")).to_have_count(0)  # nothing (and no broken image) before a selection
    page.locator("#image-files").set_input_files([png("a.png", 1), png("b.png", 2), png("c.png", 3)])
    expect(tiles.locator("img.thumb")).to_have_count(3)
    expect(tiles.locator(".predicted-label")).to_have_count(3)
    expect(tiles.nth(0).locator(".topk li")).to_have_count(3)
    classes = httpx.get(f"{live_server}/api/v1/models/{VISION}").json()["classes"]
    assert set(tiles.locator(".predicted-label").all_inner_texts()) <= set(classes)
    assert len(predict_calls) == 1  # one batched request for the three images
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in tiles.locator("img").all())
    shot(page, tmp_path, "vision-3")

    page.locator("#image-files").set_input_files([png("d.png", 4), png("e.png", 5)])
    expect(tiles).to_have_count(2)
    expect(tiles.locator("img.thumb")).to_have_count(2)
    expect(tiles.locator(".predicted-label")).to_have_count(2)
    expect(tiles.locator(".filename")).to_have_text(["d.png", "e.png"])
    assert page.evaluate("window.__liveObjectUrls.size") == 2  # the first three were revoked
    assert len(predict_calls) == 2
    shot(page, tmp_path, "vision-2")
    assert_clean(page_log, live_server)


def test_a_text_file_among_images_shows_its_own_error(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{VISION}")
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image at all"}
    page.locator("#image-files").set_input_files([png("a.png", 1), notes, png("b.png", 2)])
    tiles = page.locator("#tiles .tile")
    expect(tiles).to_have_count(3)
    expect(tiles.locator(".predicted-label")).to_have_count(2)
    bad = page.locator('#tiles .tile[data-filename="notes.txt"]')
    expect(bad.get_by_role("alert")).to_contain_text("file 'notes.txt' is not a supported image")
    expect(bad.locator("img")).to_have_count(0)  # no broken-image icon
    shot(page, tmp_path, "vision-text-file")
    assert_clean(page_log, live_server)


def test_a_corrupt_image_gets_the_apis_error_while_the_others_are_predicted(
    page: Any, live_server: str, page_log: PageLog
) -> None:
    page.goto(f"/#/models/{VISION}")
    corrupt = {"name": "broken.png", "mimeType": "image/png", "buffer": image_bytes(seed=9)[:60]}
    page.locator("#image-files").set_input_files([png("a.png", 1), corrupt])
    tiles = page.locator("#tiles .tile")
    expect(tiles.locator(".predicted-label")).to_have_count(1)
    expect(page.locator('#tiles .tile[data-filename="broken.png"] .error-detail')).to_contain_text(
        "file 'broken.png' looks like PNG but cannot be decoded"
    )
    expect(page.locator("#vision-summary")).to_have_text(re.compile(r"^1 of 2 image\(s\) predicted"))
    assert page_log.page_errors == []


@pytest.mark.parametrize("page", [{"width": 360, "height": 780}], indirect=True)
@pytest.mark.parametrize(
    "route", ["/", f"/#/models/{TABULAR}", f"/#/models/{VISION}", f"/#/models/{BARE}/report"]
)
def test_pages_fit_360_px_and_every_input_is_labelled(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, route: str
) -> None:
    page.goto(route)
    page.wait_for_selector("main h1")
    page.wait_for_load_state("networkidle")
    if VISION in route:
        page.locator("#image-files").set_input_files([png("a-long-file-name-for-a-narrow-screen.png", 1)])
        expect(page.locator("#tiles .predicted-label")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
            .map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    shot(page, tmp_path, "narrow")
    assert_clean(page_log, live_server)


def test_a_model_without_a_report_says_no_report(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"/#/models/{BARE}/report")
    expect(page.locator("#no-report")).to_contain_text("No report")
    expect(page.locator("#evaluate-form #eval-csv")).to_be_visible()
    expect(page.locator("#share")).to_be_hidden()  # no public URL (or no share endpoint yet)
    shot(page, tmp_path, "report-none")
    assert_clean(page_log, live_server)


def test_a_public_url_is_shown_with_a_copy_button(page: Any, live_server: str) -> None:
    share = {"public_url": "https://example-tunnel.ngrok.app", "source": "ngrok"}
    page.route(
        "**/api/v1/share",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(share)),
    )
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/")
    expect(page.locator("#share-url")).to_have_value(share["public_url"])
    page.locator("#share").get_by_role("button", name="Copy").click()
    expect(page.locator("#share .copy-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == share["public_url"]


def fake_share(page: Any, share: dict[str, Any]) -> None:
    page.route(
        "**/api/v1/share",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(share)),
    )


PUBLIC = {"public_url": "https://example-tunnel.ngrok.app", "source": "ngrok", "reason": None}
UNGUARDED = {**PUBLIC, "protected": None, "api_key_required": False}


@pytest.mark.parametrize(
    ("share", "warned"),
    [
        pytest.param(UNGUARDED, True, id="unprotected"),
        pytest.param({**UNGUARDED, "protected": "oauth"}, False, id="oauth-tunnel"),
        pytest.param({**UNGUARDED, "protected": "basic"}, False, id="basic-auth-tunnel"),
        pytest.param({**UNGUARDED, "api_key_required": True}, False, id="api-keys"),
        pytest.param(PUBLIC, False, id="older-server-without-the-fields"),
    ],
)
def test_a_public_url_that_nothing_protects_carries_a_warning(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, share: dict[str, Any], warned: bool
) -> None:
    fake_share(page, share)
    page.goto("/")
    expect(page.locator("#share-url")).to_have_value(share["public_url"])
    warning = page.locator("#share-warning")
    if warned:
        expect(warning).to_be_visible()
        expect(warning).to_contain_text("anyone with this URL can run your models, at your cost")
        for setting in ("NGROK_OAUTH_PROVIDER", "NGROK_BASIC_AUTH", "FASTAI_SERVE_PREDICT_API_KEYS"):
            expect(warning.locator("code", has_text=setting)).to_have_count(1)
        shot(page, tmp_path, "share-warning")
    else:
        expect(page.locator(".model-card").first).to_be_visible()
        expect(warning).to_have_count(0)
    assert_clean(page_log, live_server)


@pytest.mark.parametrize("page", [{"width": 360, "height": 780}], indirect=True)
def test_the_share_warning_fits_360_px(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    fake_share(page, UNGUARDED)
    page.goto("/")
    expect(page.locator("#share-warning")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, tmp_path, "share-warning-narrow")
    assert_clean(page_log, live_server)


def test_report_page_shows_its_images_and_the_evaluate_form_reports_accuracy(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    response = httpx.get(f"{live_server}/api/v1/models/{TABULAR}/report")
    assert response.status_code == 200, f"{TABULAR} has no report: the tiny learners must be trained with one"
    artifacts = [key for key, url in (response.json().get("artifacts") or {}).items() if url]
    assert artifacts
    page.goto(f"/#/models/{TABULAR}/report")
    images = page.locator("#report img[data-artifact]")
    expect(images).to_have_count(len(artifacts))
    for img in images.all():
        img.scroll_into_view_if_needed()
        expect(img).to_be_visible()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    expect(page.locator("#report table.history tbody tr").first).to_be_visible()
    shot(page, tmp_path, "report")
    labelled = adult_frame.dropna().iloc[:40].to_csv(index=False)
    page.locator("#eval-csv").set_input_files(
        {"name": "labelled.csv", "mimeType": "text/csv", "buffer": labelled.encode()}
    )
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result .accuracy")).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    shot(page, tmp_path, "report-evaluated")
    assert_clean(page_log, live_server)


def test_images_dropped_on_the_drop_zone_are_predicted(
    page: Any, live_server: str, page_log: PageLog
) -> None:
    page.goto(f"/#/models/{VISION}")
    payload = [base64.b64encode(image_bytes(seed=seed)).decode() for seed in (7, 8)]
    page.locator("#dropzone").evaluate(
        """(zone, images) => {
            const dt = new DataTransfer();
            images.forEach((b64, i) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], `dropped-${i}.png`, { type: "image/png" }));
            });
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        payload,
    )
    tiles = page.locator("#tiles .tile")
    expect(tiles.locator("img.thumb")).to_have_count(2)
    expect(tiles.locator(".predicted-label")).to_have_count(2)
    assert_clean(page_log, live_server)


CONTRACT_TEST: dict[str, Any] = {
    "n": 10,
    "accuracy": 0.8,
    "precision": {"<=50K": 0.85, ">50K": 0.66, "macro": 0.76},
    "recall": {"<=50K": 0.9, ">50K": 0.5, "macro": 0.7},
    "f1": {"<=50K": 0.87, ">50K": 0.57, "macro": 0.72},
    "confusion_matrix": {"labels": ["<=50K", ">50K"], "matrix": [[7, 1], [1, 1]]},
    "most_confused": [[">50K", "<=50K", 1]],
}

# A report exactly as API.md describes it, for the view while the report endpoints are still being built.
CONTRACT_REPORT = {
    "history": [
        {"epoch": 0, "train_loss": 0.61, "valid_loss": 0.52, "accuracy": 0.74},
        {"epoch": 1, "train_loss": 0.45, "valid_loss": 0.41, "accuracy": 0.81},
    ],
    "best_epoch": 1,
    "stopped_early": False,
    "seed": 42,
    "augmented": False,
    "train_seconds": 5.2,
    "test": CONTRACT_TEST,
    "datablock_summary": None,
    "artifacts": {
        "loss_curve": f"/api/v1/models/{TABULAR}/report/loss_curve.png",
        "confusion_matrix": f"/api/v1/models/{TABULAR}/report/confusion_matrix.png",
        "top_losses": f"/api/v1/models/{TABULAR}/report/top_losses.png",
    },
}


def test_report_view_renders_a_contract_report_and_posts_evaluations(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    artifact = image_bytes(size=(64, 48), seed=3)
    posted: list[bytes] = []

    def evaluate(route: Any) -> None:
        posted.append(route.request.post_data_buffer or b"")
        body = json.dumps({**CONTRACT_TEST, "n": 3, "accuracy": 2 / 3})
        route.fulfill(status=200, content_type="application/json", body=body)

    page.route(
        f"**/api/v1/models/{TABULAR}/report",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(CONTRACT_REPORT)
        ),
    )
    page.route(
        "**/report/*.png", lambda route: route.fulfill(status=200, content_type="image/png", body=artifact)
    )
    page.route(f"**/api/v1/tabular/{TABULAR}/evaluate", evaluate)
    page.goto(f"/#/models/{TABULAR}/report")
    report = page.locator("#report")
    expect(report.locator("img[data-artifact]")).to_have_count(3)
    expect(report.locator("table.history tbody tr")).to_have_count(2)
    expect(report.locator("table.metrics-table")).to_contain_text("best epoch")
    expect(report.locator("#report-test .accuracy")).to_have_text("80.0%")
    expect(report.locator("table.confusion tbody tr")).to_have_count(2)
    expect(report.locator("#report-test .most-confused .top-pairs li")).to_have_text(
        [">50K predicted as <=50K: 1"]
    )
    expect(report.locator("details.all-pairs")).to_have_count(0)  # one pair: nothing to hide
    for img in report.locator("img[data-artifact]").all():
        img.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete && i.naturalWidth === 64", arg=img.element_handle())
    page.locator("#eval-csv").set_input_files(
        {"name": "labelled.csv", "mimeType": "text/csv", "buffer": b"age,Salary\n30,<=50K\n"}
    )
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result .accuracy")).to_have_text("66.7%")
    assert b'name="file"; filename="labelled.csv"' in posted[0]
    shot(page, tmp_path, "report-contract")
    assert_clean(page_log, live_server)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# 25 confused pairs, as the API sends them (most first): 25 - i confusions for the i-th pair.
MANY_PAIRS = [[CIFAR_CLASSES[i % 10], CIFAR_CLASSES[(i * 3 + 1) % 10], 25 - i] for i in range(25)]
# The elements of a report page, in the order a user should meet them: plots first, tables after.
REPORT_ORDER = """() => [...document.querySelectorAll(
    '#report .artifacts, #report table.metrics-table, #report #report-test, #report table.history'
)].map((el) => el.id || el.className)"""


def test_report_page_shows_the_plots_first_and_the_top_10_confused_pairs_with_the_rest_on_demand(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    artifact = image_bytes(size=(64, 48), seed=4)
    test = {
        **CONTRACT_TEST,
        "confusion_matrix": {"labels": CIFAR_CLASSES, "matrix": [[5] * 10 for _ in range(10)]},
        "most_confused": MANY_PAIRS,
    }
    page.route(
        f"**/api/v1/models/{TABULAR}/report",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps({**CONTRACT_REPORT, "test": test})
        ),
    )
    page.route(
        "**/report/*.png", lambda route: route.fulfill(status=200, content_type="image/png", body=artifact)
    )
    page.goto(f"/#/models/{TABULAR}/report")
    report = page.locator("#report")
    expect(report.locator("table.history tbody tr")).to_have_count(2)
    assert page.evaluate(REPORT_ORDER) == ["artifacts", "metrics-table", "report-test", "history"]
    plots, metrics = report.locator(".artifacts").bounding_box(), report.locator("table.metrics-table")
    assert plots is not None and plots["y"] + plots["height"] <= metrics.bounding_box()["y"]

    confused = report.locator("#report-test .most-confused")
    expect(confused.locator("h4")).to_have_text("Most confused (top 10 of 25 pairs)")
    top = confused.locator("ol.top-pairs > li")
    expect(top).to_have_text([f"{a} predicted as {p}: {c}" for a, p, c in MANY_PAIRS[:10]])
    rest = confused.locator("details.all-pairs li")
    expect(rest).to_have_count(15)
    expect(rest.first).to_be_hidden()
    confused.get_by_text("Show all 25 pairs").click()
    expect(rest.first).to_be_visible()
    expect(rest).to_have_text([f"{a} predicted as {p}: {c}" for a, p, c in MANY_PAIRS[10:]])
    assert confused.locator("details.all-pairs ol").get_attribute("start") == "11"  # numbering continues
    shot(page, tmp_path, "report-order")
    assert_clean(page_log, live_server)


def test_vision_evaluate_form_sends_each_image_with_its_label(page: Any, live_server: str) -> None:
    posted: list[bytes] = []

    def evaluate(route: Any) -> None:
        posted.append(route.request.post_data_buffer or b"")
        evaluation = {"n": 2, "accuracy": 0.5, "precision": {}, "recall": {}, "f1": {}, "most_confused": []}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(evaluation))

    page.route(f"**/api/v1/vision/{VISION}/evaluate", evaluate)
    page.goto(f"/#/models/{VISION}/report")
    page.locator("#eval-files").set_input_files([png("cat_1.png", 1), png("truck-2.png", 2)])
    labels = page.locator("#eval-labels select")
    expect(labels).to_have_count(2)
    expect(labels.nth(0)).to_have_value("cat")  # guessed from the file name
    labels.nth(1).select_option("ship")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result .accuracy")).to_have_text("50.0%")
    body = posted[0]
    assert body.count(b'name="files"') == 2
    assert body.index(b"cat_1.png") < body.index(b"truck-2.png")
    assert re.findall(rb'name="labels"\r\n\r\n(\w+)', body) == [b"cat", b"ship"]


def test_the_frontend_on_a_static_server_of_its_own_talks_to_the_configured_api(
    page: Any, live_server: str, static_frontend: str, page_log: PageLog, tmp_path: Path
) -> None:
    page.goto(f"{static_frontend}/")
    expect(page.locator(".model-card")).to_have_count(
        len(httpx.get(f"{live_server}/api/v1/models").json()["models"])
    )
    page.goto(f"{static_frontend}/#/models/{TABULAR}")
    page.get_by_role("button", name="Fill empty numbers with training means").click()
    page.get_by_role("button", name="Predict", exact=True).click()  # a cross-origin POST (preflighted)
    expect(page.locator("#tabular-prediction .prob")).to_have_count(2)
    assert any(u.startswith(f"{live_server}/api/v1/tabular/") for u in page_log.requests)
    shot(page, tmp_path, "static-server")
    assert_clean(page_log, live_server, static_frontend)
