"""The report page per task in a real browser: each task's evaluation table and plots, and the evaluate
form's labels per task. The report and the model's task come as API.md describes them (routed), so the
page is checked against the contract whichever tiny learners the server holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.frontend.conftest import PageLog
from tests.frontend.test_browser import assert_clean, png, shot
from tests.helpers import TABULAR, VISION, image_bytes

HISTORY = [
    {"epoch": 0, "train_loss": 0.6, "valid_loss": 0.5},
    {"epoch": 1, "train_loss": 0.4, "valid_loss": 0.3},
]
REGRESSION_TEST = {
    "n": 90,
    "targets": {
        "hours-per-week": {"rmse": 11.5, "mae": 8.25, "r2": 0.12},
        "age": {"rmse": 12.0, "mae": 9.5, "r2": None},
    },
}
MULTI_LABEL_TEST = {
    "n": 100,
    "threshold": 0.5,
    "accuracy_multi": 0.81,
    "precision": {"long_hours": 0.7, "rich": 0.5, "micro": 0.65, "macro": 0.6},
    "recall": {"long_hours": 0.6, "rich": 0.25, "micro": 0.5, "macro": 0.425},
    "f1": {"long_hours": 0.646, "rich": 0.333, "micro": 0.565, "macro": 0.49},
}
PLOTS = {
    "regression": ["loss_curve", "predicted_vs_actual", "residuals", "top_losses"],
    "multi_label": ["loss_curve", "per_class_scores", "f1_vs_threshold", "top_losses"],
}


def _report(name: str, task: str, test: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": task,
        "history": HISTORY,
        "best_epoch": 1,
        "stopped_early": False,
        "seed": 42,
        "augmented": False,
        "train_seconds": 3.0,
        "test": test,
        "datablock_summary": None,
        "artifacts": {key: f"/api/v1/models/{name}/report/{key}.png" for key in PLOTS[task]},
    }


def _as_task(page: Any, base: str, name: str, **changes: Any) -> None:
    """The model's detail as the server gives it, with another task (and its classes or targets)."""
    detail = {**httpx.get(f"{base}/api/v1/models/{name}").json(), **changes}
    page.route(
        re.compile(rf".*/api/v1/models/{re.escape(name)}$"),
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(detail)),
    )


def _serve_report(page: Any, name: str, report: dict[str, Any]) -> None:
    artifact = image_bytes(size=(64, 48), seed=5)
    page.route(
        f"**/api/v1/models/{name}/report",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(report)),
    )
    page.route(
        "**/report/*.png", lambda route: route.fulfill(status=200, content_type="image/png", body=artifact)
    )


def test_a_regression_report_shows_its_targets_and_plots(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    targets = list(REGRESSION_TEST["targets"])  # type: ignore[call-overload]
    schema = httpx.get(f"{live_server}/api/v1/models/{TABULAR}").json()["input_schema"]
    _as_task(
        page,
        live_server,
        TABULAR,
        task="regression",
        classes=[],
        targets=targets,
        input_schema={**schema, "target": targets[0], "targets": targets},
    )
    _serve_report(page, TABULAR, _report(TABULAR, "regression", REGRESSION_TEST))
    page.goto(f"/#/models/{TABULAR}/report")
    report = page.locator("#report")
    images = report.locator("img[data-artifact]")
    expect(images).to_have_count(4)
    assert [img.get_attribute("data-artifact") for img in images.all()] == PLOTS["regression"]
    expect(report.locator(".artifact.missing")).to_have_count(0)
    expect(report.locator('#report-test[data-task="regression"]')).to_be_visible()
    rows = report.locator("#report-test table.regression-scores tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("hours-per-week")
    expect(rows.nth(0)).to_contain_text("11.5")
    expect(rows.nth(1).locator("td").nth(3)).to_have_text("—")  # R² of a constant target: null
    expect(page.locator("#eval-csv-hint")).to_have_text(
        'It must include the numeric target column(s) "hours-per-week", "age".'
    )
    shot(page, tmp_path, "report-regression")
    assert_clean(page_log, live_server)


def test_a_multi_label_report_and_its_evaluate_form(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    classes = ["cat", "dog", "frog"]
    posted: list[bytes] = []

    def evaluate(route: Any) -> None:
        posted.append(route.request.post_data_buffer or b"")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(MULTI_LABEL_TEST))

    _as_task(page, live_server, VISION, task="multi_label", classes=classes)
    _serve_report(page, VISION, _report(VISION, "multi_label", MULTI_LABEL_TEST))
    page.route(f"**/api/v1/vision/{VISION}/evaluate", evaluate)
    page.goto(f"/#/models/{VISION}/report")
    report = page.locator("#report")
    expect(report.locator("img[data-artifact]")).to_have_count(4)
    expect(report.locator("#report-test .accuracy-multi")).to_have_text("81.0%")
    rows = report.locator("#report-test table.multi-label-scores tbody tr")
    expect(rows).to_have_count(4)  # two classes, micro, macro
    expect(rows.nth(2)).to_contain_text("micro")
    # The form: a multi-select per image (no zip of class folders for multi-label), sent as "a;b".
    expect(page.locator("#eval-archive")).to_have_count(0)
    page.locator("#eval-files").set_input_files([png("both.png", 1), png("none.png", 2)])
    first, second = page.locator("#eval-label-0"), page.locator("#eval-label-1")
    expect(first).to_have_attribute("multiple", "")
    first.select_option(["cat", "frog"])
    assert second.evaluate("s => s.selectedOptions.length") == 0
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result .accuracy-multi")).to_have_text("81.0%")
    body = posted[0].decode("latin-1")
    labels = re.findall(r'name="labels"\r\n\r\n([^\r]*)\r\n', body)
    assert labels == ["cat;frog", ""]
    shot(page, tmp_path, "report-multi-label")
    assert_clean(page_log, live_server)


def test_a_regression_images_form_takes_json_values(
    page: Any, live_server: str, page_log: PageLog, tmp_path: Path
) -> None:
    posted: list[bytes] = []

    def evaluate(route: Any) -> None:
        posted.append(route.request.post_data_buffer or b"")
        body = {"n": 1, "targets": {"target_0": {"rmse": 0.1, "mae": 0.1, "r2": None}}}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    _as_task(page, live_server, VISION, task="regression", classes=[], targets=["target_0", "target_1"])
    page.route(f"**/api/v1/vision/{VISION}/evaluate", evaluate)
    page.goto(f"/#/models/{VISION}/report")
    expect(page.locator("#eval-labels-hint")).to_contain_text("target_0, target_1")
    page.locator("#eval-files").set_input_files([png("a.png", 3)])
    page.locator("#eval-label-0").fill("[0.5, 0.25]")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation-result table.regression-scores tbody tr")).to_have_count(1)
    assert re.findall(r'name="labels"\r\n\r\n([^\r]*)\r\n', posted[0].decode("latin-1")) == ["[0.5, 0.25]"]
    assert_clean(page_log, live_server)
