"""API keys and rate limits on the model routes: every route of the OpenAPI schema is either protected or
open on purpose, 401 without a key and 200 with each, 429 with `Retry-After` past the rate and recovery
after the window, and `X-Forwarded-For` believed only from trusted proxies."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from service.api.access import RateLimiter, Rule, is_protected, parse_rate_limit
from service.errors import MSG_PREDICT_KEY_MISSING, MSG_PREDICT_KEY_WRONG
from tests.helpers import TABULAR, VISION, adult_rows, client_for, image_bytes, problem

KEYS = ["key-one", "key-two"]
# Every route of the schema that is the model's (so a key protects it): a new route must be added to this
# list, or to OPEN, on purpose; the test fails for a route that is in neither.
PROTECTED_ROUTES = {
    "/api/v1/tabular/{name}/predict",
    "/api/v1/tabular/{name}/predict/csv",
    "/api/v1/tabular/{name}/evaluate",
    "/api/v1/vision/{name}/predict",
    "/api/v1/vision/{name}/evaluate",
    "/api/v1/collab/{name}/predict",
    "/api/v1/collab/{name}/predict/csv",
    "/api/v1/collab/{name}/recommend",
    "/api/v1/collab/{name}/similar",
    "/api/v1/collab/{name}/evaluate",
    "/api/v1/text/{name}/predict",
    "/api/v1/text/{name}/predict/csv",
    "/api/v1/text/{name}/evaluate",
    "/api/v1/tabular/{name}/explain",
    "/api/v1/vision/{name}/explain",
    "/api/v1/text/{name}/explain",
    "/api/v1/collab/{name}/explain",
    "/api/v1/models/{name}/feedback",
    "/api/v1/models/{name}/monitor",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
}
OPEN_ROUTES = {
    "/health/live",
    "/health/ready",
    "/metrics",
    "/api/v1/models",
    "/api/v1/models/{name}",
    "/api/v1/models/{name}/schema",
    "/api/v1/models/{name}/report",
    "/api/v1/models/{name}/report/{artifact}.png",
    "/api/v1/reports/compare",
    "/api/v1/share",
    "/api/v1/models/{name}/reload",  # admin: its own key (API_KEY)
    "/api/v1/models/reload",
    "/api/v1/models/{name}/monitor/reference",  # admin: its own key (API_KEY)
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
}


@pytest.fixture(scope="module")
async def keyed(trained_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(trained_store, predict_api_keys=KEYS):
        yield client


async def test_every_route_is_protected_or_open_on_purpose(keyed: httpx.AsyncClient) -> None:
    schema = (await keyed.get("/openapi.json")).json()
    paths = set(schema["paths"])
    assert paths == PROTECTED_ROUTES | OPEN_ROUTES, (
        f"classify new routes: {sorted(paths - PROTECTED_ROUTES - OPEN_ROUTES)}; gone: "
        f"{sorted((PROTECTED_ROUTES | OPEN_ROUTES) - paths)}"
    )
    for path, operations in schema["paths"].items():
        concrete = (
            re.sub(r"\{name\}", TABULAR, path).replace("{version}", "1").replace("{artifact}", "loss_curve")
        )
        assert is_protected(concrete) == (path in PROTECTED_ROUTES), path
        for method in operations:
            answer = await keyed.request(method.upper(), concrete)
            if path in PROTECTED_ROUTES:
                assert answer.status_code == 401, (method, path, answer.text)
                body = answer.json()
                assert (
                    body["error"] if path.startswith("/v2") else body["detail"]
                ) == MSG_PREDICT_KEY_MISSING
            else:
                # The admin routes (reload, a monitor's reference) ask for their own key.
                assert answer.status_code != 401 or "reload" in path or path.endswith("/reference"), (
                    method,
                    path,
                )


async def test_each_key_opens_the_model_routes_as_header_or_bearer(
    keyed: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    url = f"/api/v1/tabular/{TABULAR}/predict"
    body = {"rows": adult_rows(adult_frame, 1)}
    for key in KEYS:
        assert (await keyed.post(url, json=body, headers={"X-API-Key": key})).status_code == 200
        assert (
            await keyed.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
    wrong = await keyed.post(url, json=body, headers={"X-API-Key": "key-three"})
    assert problem(wrong, 401)["detail"] == MSG_PREDICT_KEY_WRONG
    files = [("files", ("a.png", image_bytes(), "image/png"))]
    assert (await keyed.post(f"/api/v1/vision/{VISION}/predict", files=files)).status_code == 401
    answer = await keyed.post(f"/api/v1/vision/{VISION}/predict", files=files, headers={"X-API-Key": KEYS[1]})
    assert answer.status_code == 200
    v2 = await keyed.get(f"/v2/models/{TABULAR}", headers={"Authorization": f"bearer {KEYS[0]}"})
    assert v2.status_code == 200
    assert (await keyed.get("/health/ready")).status_code == 200  # open


async def test_over_the_rate_is_429_with_retry_after_then_recovers(
    trained_store: Path, adult_frame: pd.DataFrame
) -> None:
    url = f"/api/v1/tabular/{TABULAR}/predict"
    body = {"rows": adult_rows(adult_frame, 1)}
    async for client in client_for(trained_store, rate_limit="3/second"):
        statuses = [(await client.post(url, json=body)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await client.post(url, json=body)
        assert problem(refused, 429)["title"] == "Too many requests"
        assert refused.headers["retry-after"] == "1"
        assert (await client.get("/health/ready")).status_code == 200  # not metered
        assert "fastai_serve_rate_limited_total 1.0" in (await client.get("/metrics")).text
        time.sleep(1.05)
        assert (await client.post(url, json=body)).status_code == 200


def _client_of(limiter: RateLimiter) -> list[str]:
    return list(limiter._buckets)


async def test_x_forwarded_for_is_believed_from_trusted_proxies_only(
    trained_store: Path, adult_frame: pd.DataFrame
) -> None:
    url = f"/api/v1/tabular/{TABULAR}/predict"
    body = {"rows": adult_rows(adult_frame, 1)}
    # httpx's ASGI transport connects from 127.0.0.1.
    async for untrusted in client_for(trained_store, rate_limit="2/minute", forwarded_allow_ips="10.9.9.9"):
        codes = [
            (await untrusted.post(url, json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]  # one client, whatever it claims
    async for trusted in client_for(trained_store, rate_limit="2/minute", forwarded_allow_ips="127.0.0.0/8"):
        for i in range(3):
            forwarded = {"X-Forwarded-For": f"203.0.113.{i}"}
            assert (await trusted.post(url, json=body, headers=forwarded)).status_code == 200
        # A client that writes its own X-Forwarded-For is still the address the proxy appended.
        spoofed = [
            (
                await trusted.post(
                    url, json=body, headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.9"}
                )
            ).status_code
            for i in range(3)
        ]
        assert spoofed == [200, 200, 429]


async def test_metrics_need_their_own_key_when_one_is_set(trained_store: Path) -> None:
    async for client in client_for(trained_store, metrics_api_key="scrape"):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"X-API-Key": "scrape"})).status_code == 200
        assert (await client.get("/health/live")).status_code == 200


def test_rate_limit_rules_parse_and_buckets_refill() -> None:
    assert parse_rate_limit("20/second; 600/minute") == [Rule(20, 1.0), Rule(600, 60.0)]
    for bad in ["20", "x/second", "5/fortnight", "0/second"]:
        with pytest.raises(ValueError, match="cannot read"):
            parse_rate_limit(bad)
    limiter = RateLimiter([Rule(2, 1.0), Rule(3, 60.0)], max_clients=2)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    assert limiter.take("a", now=0.5) == 0.0  # one token back after half a second; the minute has 1 left
    assert limiter.take("a", now=5.0) == pytest.approx((1 - 3 * 5 / 60) / (3 / 60))  # the minute's bucket
    limiter.take("b", now=5.0)
    limiter.take("c", now=5.0)
    assert _client_of(limiter) == ["b", "c"]  # the least recently seen is forgotten past max_clients
