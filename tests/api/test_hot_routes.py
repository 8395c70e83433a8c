"""The hot predict routes (api/hot.py): a plain request is served without FastAPI's per-request machinery,
anything else by the declared route, and either way the answer is the declared route's, byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from service.api.app import create_app
from service.api.hot import HOT_MAX_BYTES, HotRoute
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes, make_settings, started_client

VISION_PREDICT = f"/api/v1/vision/{VISION}/predict"
TABULAR_PREDICT = f"/api/v1/tabular/{TABULAR}/predict"
PNG = image_bytes(seed=7)


def _files(*names: str, data: bytes = PNG) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/png")) for name in names]


def _rows(frame: pd.DataFrame, n: int) -> dict[str, Any]:
    return {"rows": adult_rows(frame, n)}


@pytest.fixture(scope="module")
async def declared_only(trained_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app of `client` (same settings) without its hot routes: every request takes the declared one."""
    app = create_app(make_settings(trained_store, max_rows=50, max_files=4, max_upload_mb=1.0))
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, HotRoute)]
    async for c in started_client(app):
        yield c


def _requests(frame: pd.DataFrame) -> dict[str, tuple[str, dict[str, Any]]]:
    one_row = json.dumps(_rows(frame, 1))
    return {
        # served hot
        "one image": (VISION_PREDICT, {"files": _files("a.png")}),
        "images, top_k": (VISION_PREDICT, {"files": _files("a.png", "b.png"), "params": {"top_k": 2}}),
        "top_k above the classes": (VISION_PREDICT, {"files": _files("a.png"), "params": {"top_k": 50}}),
        "unknown model": ("/api/v1/vision/nope/predict", {"files": _files("a.png")}),
        "a tabular model's name": (f"/api/v1/vision/{TABULAR}/predict", {"files": _files("a.png")}),
        "not an image": (VISION_PREDICT, {"files": _files("notes.txt", data=b"hello, I am text")}),
        "one row": (TABULAR_PREDICT, {"json": _rows(frame, 1)}),
        "rows past the inline count": (TABULAR_PREDICT, {"json": _rows(frame, 40)}),
        "unknown category": (
            TABULAR_PREDICT,
            {"json": {"rows": [{**adult_rows(frame, 1)[0], "workclass": "Space-agency"}]}},
        ),
        "too many rows": (TABULAR_PREDICT, {"json": _rows(frame, 51)}),
        "a row missing a column": (TABULAR_PREDICT, {"json": {"rows": [{"age": 39}]}}),
        "a vision model's name": (f"/api/v1/tabular/{VISION}/predict", {"json": _rows(frame, 1)}),
        # declined: the declared route answers
        "top_k 0": (VISION_PREDICT, {"files": _files("a.png"), "params": {"top_k": 0}}),
        "top_k not a number": (VISION_PREDICT, {"files": _files("a.png"), "params": {"top_k": "three"}}),
        "top_k twice": (VISION_PREDICT, {"files": _files("a.png"), "params": [("top_k", 2), ("top_k", 4)]}),
        "top_k with a leading zero": (VISION_PREDICT, {"files": _files("a.png"), "params": {"top_k": "02"}}),
        "another query parameter": (VISION_PREDICT, {"files": _files("a.png"), "params": {"k": 2}}),
        "too many files": (VISION_PREDICT, {"files": _files(*"abcde")}),
        "no files": (VISION_PREDICT, {"data": {"note": "no files"}, "files": {"other": ("a.png", PNG)}}),
        "files as text": (VISION_PREDICT, {"data": {"files": "a.png"}}),
        "a file and a field": (VISION_PREDICT, {"files": _files("a.png"), "data": {"note": "x"}}),
        "JSON to the vision route": (VISION_PREDICT, {"json": {"files": []}}),
        "no rows": (TABULAR_PREDICT, {"json": {"rows": []}}),
        "rows not a list": (TABULAR_PREDICT, {"json": {"rows": "many"}}),
        "not JSON": (
            TABULAR_PREDICT,
            {"content": b"{'rows': ", "headers": {"content-type": "application/json"}},
        ),
        "a form to the rows route": (TABULAR_PREDICT, {"data": {"rows": "[]"}}),
        "text/plain JSON": (TABULAR_PREDICT, {"content": one_row, "headers": {"content-type": "text/plain"}}),
        "no content type": (TABULAR_PREDICT, {"content": one_row, "headers": {"content-type": ""}}),
        "JSON with a charset": (
            TABULAR_PREDICT,
            {"content": one_row, "headers": {"content-type": "application/json; charset=utf-8"}},
        ),
    }


@pytest.fixture(scope="module")
def requests(adult_frame: pd.DataFrame) -> dict[str, tuple[str, dict[str, Any]]]:
    return _requests(adult_frame)


async def test_hot_and_declared_routes_answer_alike(
    client: httpx.AsyncClient,
    declared_only: httpx.AsyncClient,
    requests: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    for name, (path, kwargs) in requests.items():
        # One request id for both: the answers' item ids are `<X-Request-ID>-<k>`.
        same = {**kwargs, "headers": {**kwargs.get("headers", {}), "X-Request-ID": f"hot-{len(name)}"}}
        hot, declared = await client.post(path, **same), await declared_only.post(path, **same)
        assert (hot.status_code, hot.headers["content-type"]) == (
            declared.status_code,
            declared.headers["content-type"],
        ), name
        assert hot.content == declared.content, name


async def test_plain_requests_take_the_hot_route(
    client: httpx.AsyncClient,
    requests: dict[str, tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answered: list[bool] = []
    app = client._transport.app  # type: ignore[attr-defined]
    for route in app.router.routes:
        if isinstance(route, HotRoute):

            async def spy(request: Any, body: bytes, handler: Any = route.handler) -> Any:
                response = await handler(request, body)
                answered.append(response is not None)
                return response

            monkeypatch.setattr(route, "handler", spy)
    for name in ("one image", "images, top_k", "one row", "rows past the inline count"):
        path, kwargs = requests[name]
        answered.clear()
        assert (await client.post(path, **kwargs)).status_code == 200
        assert answered == [True], name
    for name in ("top_k not a number", "files as text", "not JSON", "text/plain JSON"):
        path, kwargs = requests[name]
        answered.clear()
        await client.post(path, **kwargs)
        assert answered == [False], name


def test_a_large_or_unsized_body_goes_straight_to_the_declared_route(tmp_path: Path) -> None:
    route = next(r for r in create_app(make_settings(tmp_path)).router.routes if isinstance(r, HotRoute))

    def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": route.path.format(name="m"), "headers": headers}

    assert route.matches(scope([(b"content-length", b"100")]))[0].name == "FULL"
    assert route.matches(scope([(b"content-length", str(HOT_MAX_BYTES + 1).encode())]))[0].name == "NONE"
    assert route.matches(scope([(b"transfer-encoding", b"chunked")]))[0].name == "NONE"
    assert route.matches({**scope([(b"content-length", b"100")]), "method": "GET"})[0].name == "NONE"
