"""The static frontend at `/`, after the API: API paths keep their problem+json errors."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers import client_for


async def test_root_serves_the_frontend(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in response.text
    module = await client.get("/js/main.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]


async def test_api_and_docs_still_answer_beside_the_frontend(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/openapi.json", "/metrics", "/health/live", "/api/v1/models"):
        assert (await client.get(path)).status_code == 200, path


async def test_unknown_api_paths_are_problem_json_not_the_frontend(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/nope", "/api/v1/models/x/y/z", "/api"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    wrong_method = await client.post("/api/v1/models")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


async def test_a_missing_static_file_is_a_problem_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-file.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_without_a_frontend_root_redirects_to_the_docs(trained_store: Path, tmp_path: Path) -> None:
    async for c in client_for(trained_store, frontend_dir=tmp_path / "none"):
        response = await c.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/docs"


async def test_cors_lets_a_frontend_on_another_origin_call_the_api(trained_store: Path) -> None:
    origin = "http://frontend.example:8080"
    async for c in client_for(trained_store, cors_origins=[origin]):
        preflight = await c.options(
            "/api/v1/tabular/x/predict",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        response = await c.get("/api/v1/models", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        other = await c.get("/api/v1/models", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_unless_origins_are_configured(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/models", headers={"Origin": "http://frontend.example:8080"})
    assert "access-control-allow-origin" not in response.headers
