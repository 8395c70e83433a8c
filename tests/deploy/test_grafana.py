"""Offline checks of deploy/grafana/fastai-serve.json: every panel's query names a metric the app
exposes (read from service/telemetry.py's Metrics, so a renamed metric breaks this test, not a dashboard
in production), and the datasource is the import-time input, not a UID of someone's Grafana."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.telemetry import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "fastai-serve.json"
# Series names Prometheus sees for each kind of metric family.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
METRIC_NAME = re.compile(r"\bfastai_serve_[a-z_]+\b")


def _exposed() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_query_names_an_exposed_metric(dashboard: dict[str, Any]) -> None:
    exposed = _exposed()
    for target in _targets(dashboard):
        names = METRIC_NAME.findall(target["expr"])
        assert names, f"no fastai_serve metric in {target['expr']!r}"
        assert set(names) <= exposed, f"{sorted(set(names) - exposed)} not exposed by the app"


def test_panels_cover_the_monitoring_metrics(dashboard: dict[str, Any]) -> None:
    used = {name for target in _targets(dashboard) for name in METRIC_NAME.findall(target["expr"])}
    for metric in (
        "fastai_serve_request_seconds_bucket",
        "fastai_serve_requests_total",
        "fastai_serve_batch_size_sum",
        "fastai_serve_overload_rejections_total",
        "fastai_serve_payload_log_dropped_total",
        "fastai_serve_drift",
        "fastai_serve_live_metric",
        "fastai_serve_explain_seconds_bucket",
    ):
        assert metric in used


def test_datasource_is_an_input(dashboard: dict[str, Any]) -> None:
    assert [i["name"] for i in dashboard["__inputs"] if i["type"] == "datasource"] == ["DS_PROMETHEUS"]
    for panel in dashboard["panels"]:
        for holder in [panel, *panel.get("targets", [])]:
            assert holder["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_drift_panel_thresholds(dashboard: dict[str, Any]) -> None:
    (panel,) = [p for p in dashboard["panels"] if "fastai_serve_drift" in json.dumps(p["targets"])]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.1, 0.25]
