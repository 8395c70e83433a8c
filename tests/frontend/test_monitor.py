"""The Monitor view against a server with a payload log (LOG_DIR) and an admin key: drift worst first and
coloured, counts, the predicted distribution, live accuracy from feedback, the over-time chart; and on the
plain server (no LOG_DIR) the view says monitoring is off and how to turn it on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect

from service.training import data
from tests.frontend.conftest import PageLog, opened_page, running_server
from tests.helpers import TABULAR, adult_rows, clone_store

ADMIN = {"X-API-Key": "monitor-admin-5b7e"}
STEPS = 6  # frontend/js/monitor.js STEPS: one monitor call per step


@pytest.fixture(scope="module")
def monitored_server(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service with a payload log (flushed at once, no monitor cache) and an admin key."""
    store = clone_store(trained_store, tmp_path_factory.mktemp("monitored") / "store", [TABULAR])
    env = {
        "FASTAI_SERVE_LOG_DIR": str(tmp_path_factory.mktemp("payload-log")),
        "FASTAI_SERVE_LOG_FLUSH_S": "0.05",
        "FASTAI_SERVE_MONITOR_CACHE_S": "0",
        "FASTAI_SERVE_API_KEY": ADMIN["X-API-Key"],
        "FASTAI_SERVE_MAX_ROWS": "2000",
    }
    with running_server(store, tmp_path_factory.mktemp("monitored-server"), env) as base:
        yield base


@pytest.fixture
def monitored_page(browser: Any, monitored_server: str, page_log: PageLog, tmp_path: Path) -> Iterator[Any]:
    with opened_page(browser, monitored_server, page_log, None, tmp_path) as pg:
        yield pg


def _reference_csv(rows: list[dict[str, object]]) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("reference.csv", pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv")}


def test_monitor_view_shows_drift_counts_live_scores_and_chart(
    monitored_server: str, monitored_page: Any, page_log: PageLog, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.dropna(subset=data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL).head(1200)
    rows = adult_rows(frame, 1200)
    truth = [str(v) for v in frame[data.ADULT_TARGET]][1000:1200]
    # The recent rows are older by 30 years: "age" alerts against the reference, the rest stays ok.
    recent = [{**row, "age": float(row["age"]) + 30} for row in rows[1000:1200]]
    with httpx.Client(base_url=monitored_server, timeout=120) as c:
        uploaded = c.post(
            f"/api/v1/models/{TABULAR}/monitor/reference", files=_reference_csv(rows[:1000]), headers=ADMIN
        )
        assert uploaded.status_code == 200, uploaded.text
        answer = c.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": recent})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        given = [{"id": p["id"], "label": t} for p, t in zip(predictions[:50], truth[:50], strict=True)]
        feedback = c.post(f"/api/v1/models/{TABULAR}/feedback", json={"feedback": given})
        assert feedback.json()["accepted"] == 50
        expected = c.get(f"/api/v1/models/{TABULAR}/monitor", params={"window": "1h"}).json()
    assert expected["n_predictions"] == 200 and expected["drift"]["age"]["status"] == "alert"

    page = monitored_page
    page.goto(f"/#/models/{TABULAR}")
    page.get_by_role("link", name="Monitor").click()
    expect(page.get_by_role("heading", name="Monitor")).to_be_visible()
    first_row = page.locator("table.drift tbody tr").first
    expect(first_row).to_have_attribute("data-feature", "age")
    expect(first_row).to_have_class("drift-alert")
    expect(page.locator("table.drift tbody tr.drift-alert")).to_have_count(
        sum(d["status"] == "alert" for d in expected["drift"].values())
    )
    expect(page.locator("#n-predictions")).to_have_text("200")
    expect(page.locator("#n-feedback")).to_have_text("50")
    expect(page.locator("#reference")).to_have_text("upload, 1000 rows")
    expect(page.locator("#live")).to_contain_text(f"Accuracy {100 * expected['live']['accuracy']:.1f}%")
    expect(page.locator("#live h3")).to_contain_text("50 predictions with feedback")
    labels = expected["predictions"]["prediction"]
    bars = page.locator('#distribution figure[data-column="prediction"] .bar-row')
    expect(bars).to_have_count(len(labels))
    # Every step of the chart has a point per predicted label (all 200 fell in the newest step).
    chart = page.locator("#over-time figure.over-time-chart")
    expect(chart).to_have_attribute("data-steps", str(STEPS))
    for label in labels:
        expect(chart.locator(f'g.series[data-label="{label}"] circle.point')).to_have_count(1)
    assert page_log.unexpected_errors() == []

    # Another window asks again (STEPS calls) and keeps the same counts (all within 15 minutes).
    calls = len([u for u in page_log.requests if "/monitor?" in u])
    page.get_by_role("button", name="15m").click()
    expect(page.get_by_role("button", name="15m")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#n-predictions")).to_have_text("200")
    assert len([u for u in page_log.requests if "/monitor?" in u]) == calls + STEPS


def test_monitor_view_says_monitoring_is_off_without_log_dir(page: Any, page_log: PageLog) -> None:
    page.goto(f"/#/models/{TABULAR}/monitor")
    off = page.locator(".monitor-off")
    expect(off).to_contain_text("Monitoring is off")
    expect(off).to_contain_text("FASTAI_SERVE_LOG_DIR")
    assert page_log.unexpected_errors() == []
