"""Health probes, model listing, detail and schema."""

from __future__ import annotations

import httpx

from service.training import data
from tests.helpers import TABULAR, VISION


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_lists_every_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "models": {TABULAR: "ready", VISION: "ready"}}


async def test_model_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert models[TABULAR]["kind"] == "tabular"
    assert models[VISION]["kind"] == "vision"
    for summary in models.values():
        assert summary["status"] == "ready"
        assert summary["device"] == "cpu"
        assert summary["error"] is None
        assert summary["version"]
    assert models[TABULAR]["classes"] == ["<=50K", ">50K"]
    assert len(models[VISION]["classes"]) == 10


async def test_tabular_detail_has_schema_derived_from_learner(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/models/{TABULAR}")
    assert response.status_code == 200
    detail = response.json()
    assert detail["framework"]["fastai"].startswith("2.8")
    assert len(detail["sha256"]) == 64
    assert "test_accuracy" in detail["metrics"]
    schema = detail["input_schema"]
    assert schema["target"] == "Salary"
    columns = {c["name"]: c for c in schema["columns"]}
    # FillMissing's flag column is not an input; every real column is.
    assert "age_na" not in columns
    assert set(columns) == set(data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL)
    assert columns["age"]["type"] == "continuous"
    assert columns["age"]["nullable"] is True  # it had missing values in training
    assert columns["fnlwgt"]["nullable"] is False
    assert 20 < columns["age"]["mean"] < 60
    assert columns["sex"] == {"name": "sex", "type": "categorical", "categories": ["Female", "Male"]}
    assert "#na#" not in columns["workclass"]["categories"]


async def test_vision_detail(client: httpx.AsyncClient) -> None:
    detail = (await client.get(f"/api/v1/models/{VISION}")).json()
    assert detail["kind"] == "vision"
    assert detail["input_schema"]["image_size"] == [32, 32]
    assert detail["input_schema"]["channels"] == 3
    assert "image/jpeg" in detail["input_schema"]["accepted_types"]


async def test_schema_is_json_schema_of_a_row(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/models/{TABULAR}/schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert "Male" in schema["properties"]["sex"]["examples"]


async def test_unknown_model_is_404problem(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/models/nope", "/api/v1/models/nope/schema"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "model 'nope' does not exist"


async def test_schema_of_vision_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/models/{VISION}/schema")
    assert response.status_code == 404
    assert "vision model" in response.json()["detail"]


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/tabular/{name}/predict" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200
