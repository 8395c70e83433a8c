"""Exports fastai 2.8 refuses: the cookbook's own learner (fastai 2.x, notebook, CUDA), Windows paths."""

from __future__ import annotations

import io
import json
import pathlib
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from service.api.app import create_app
from service.compat import guess_fastai_version, referenced_modules
from tests.helpers import FIXTURES, TABULAR, VISION, clone_store, make_settings, started_client

COOKBOOK = FIXTURES / "cookbook"
NAME = "adult-cookbook"
PREDICT = f"/api/v1/tabular/{NAME}/predict"


@pytest.fixture(scope="module")
async def cookbook_client(
    tmp_path_factory: pytest.TempPathFactory, trained_store: Path
) -> AsyncIterator[httpx.AsyncClient]:
    store = clone_store(trained_store, tmp_path_factory.mktemp("cookbook") / "store", [VISION])
    (store / NAME).mkdir()
    shutil.copy(COOKBOOK / "adult_sample_model.pkl", store / NAME / "model.pkl")
    async for c in started_client(create_app(make_settings(store, max_rows=500))):
        yield c


def book_rows(*, strip: bool) -> list[dict[str, Any]]:
    frame = pd.read_csv(COOKBOOK / "adult_sample_test.csv")
    frame = frame.astype(object).where(frame.notna(), None)
    rows: list[dict[str, Any]] = frame.to_dict(orient="records")
    if strip:
        rows = [{k: v.strip() if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    return rows


def test_the_book_export_is_recognised_as_pre_2_8() -> None:
    modules, on_cuda = referenced_modules(COOKBOOK / "adult_sample_model.pkl")
    assert "fastcore.transform" in modules
    assert on_cuda
    assert guess_fastai_version(modules) == "fastai 2.0-2.7"


async def test_cookbook_model_is_listed_ready_with_compat_notes(cookbook_client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await cookbook_client.get("/api/v1/models")).json()["models"]}
    assert models[NAME]["status"] == "ready", models[NAME]["error"]
    assert models[NAME]["kind"] == "tabular"
    assert models[NAME]["classes"] == ["<50k", ">=50k"]
    assert models[VISION]["status"] == "ready"
    detail = (await cookbook_client.get(f"/api/v1/models/{NAME}")).json()
    notes = "\n".join(detail["compat"]["notes"])
    assert detail["compat"]["loaded_with"] == "fastai-serve compat loader"
    assert "mapped fastcore.transform to fasttransform.transform" in notes
    assert "IPython.core.display.DisplayHandle" in notes
    assert "saved on CUDA" in notes


async def test_cookbook_schema_shows_canonical_categories(cookbook_client: httpx.AsyncClient) -> None:
    detail = (await cookbook_client.get(f"/api/v1/models/{NAME}")).json()
    columns = {c["name"]: c for c in detail["input_schema"]["columns"]}
    assert " Private" in columns["workclass"]["categories"]
    assert "education-num_na" not in columns
    assert columns["education-num"]["nullable"] is True
    schema = (await cookbook_client.get(f"/api/v1/models/{NAME}/schema")).json()
    assert set(schema["required"]) == set(columns)


async def test_book_rows_predict_as_json(cookbook_client: httpx.AsyncClient) -> None:
    response = await cookbook_client.post(PREDICT, json={"rows": book_rows(strip=False)})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 128
    assert not any("not a known category" in w for p in predictions for w in p["warnings"])


async def test_stripped_categories_match_tolerantly(cookbook_client: httpx.AsyncClient) -> None:
    exact = (await cookbook_client.post(PREDICT, json={"rows": book_rows(strip=False)[:10]})).json()
    stripped = (await cookbook_client.post(PREDICT, json={"rows": book_rows(strip=True)[:10]})).json()
    for a, b in zip(exact["predictions"], stripped["predictions"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
    assert (
        "workclass: 'Private' matched category ' Private' (ignoring whitespace and case)"
        in (stripped["predictions"][0]["warnings"])
    )
    shouty = {**book_rows(strip=True)[0], "sex": "  FEMALE "}
    [prediction] = (await cookbook_client.post(PREDICT, json={"rows": [shouty]})).json()["predictions"]
    assert (
        "sex: '  FEMALE ' matched category ' Female' (ignoring whitespace and case)" in prediction["warnings"]
    )


async def test_book_csv_with_blanks_matches_the_fastai_that_made_it(
    cookbook_client: httpx.AsyncClient,
) -> None:
    reference = json.loads((COOKBOOK / "reference_predictions.json").read_text())
    assert reference["made_with"]["fastai"].startswith("2.7")
    csv = (COOKBOOK / "adult_sample_test.csv").read_bytes()
    response = await cookbook_client.post(
        f"/api/v1/tabular/{NAME}/predict/csv", files={"file": ("t.csv", csv)}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    ours = np.array([[p["probabilities"][c] for c in reference["classes"]] for p in predictions])
    np.testing.assert_allclose(ours, np.array(reference["probabilities"]), atol=1e-4)
    warnings = [w for p in predictions for w in p["warnings"]]
    assert not any("matched category" in w for w in warnings)  # the book's own CSV matches exactly
    assert any(w.startswith("education-num: missing value filled with 10") for w in warnings)
    assert "occupation: missing value treated as #na#" in warnings


async def test_book_csv_scored_back_as_csv(cookbook_client: httpx.AsyncClient) -> None:
    csv = (COOKBOOK / "adult_sample_test.csv").read_bytes()
    response = await cookbook_client.post(
        f"/api/v1/tabular/{NAME}/predict/csv", files={"file": ("t.csv", csv)}, headers={"Accept": "text/csv"}
    )
    scored = pd.read_csv(io.StringIO(response.text))
    assert len(scored) == 128
    assert {"prediction", "p_<50k", "p_>=50k"} <= set(scored.columns)


# --- exports made on Windows and on CUDA, made here by pickling accordingly ----------------------------


class _WindowsPathInPickle:
    """Pickles as `pathlib.WindowsPath(...)`, which Linux cannot instantiate: what a Windows export holds."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return pathlib.WindowsPath, (self.text,)


@contextmanager
def _saved_as_cuda() -> Iterator[None]:
    """Tag every CPU storage as `cuda:0` while saving, as torch does for a learner trained on a GPU."""
    active = {"on": True}

    def tagger(obj: Any) -> str | None:
        return "cuda:0" if active["on"] else None

    torch.serialization.register_package(0, tagger, lambda obj, location: None)
    try:
        yield
    finally:
        active["on"] = False


@pytest.fixture(scope="module")
async def exotic_client(
    tmp_path_factory: pytest.TempPathFactory, trained_store: Path
) -> AsyncIterator[httpx.AsyncClient]:
    from fastai.learner import load_learner

    store = clone_store(trained_store, tmp_path_factory.mktemp("exotic") / "store", [TABULAR])
    learn = load_learner(trained_store / TABULAR / "model.pkl")
    (store / "from-windows").mkdir()
    learn.path = _WindowsPathInPickle("C:\\Users\\me\\models")
    torch.save(learn, store / "from-windows" / "model.pkl")
    learn.path = Path(".")
    (store / "from-cuda").mkdir()
    with _saved_as_cuda():
        torch.save(learn, store / "from-cuda" / "model.pkl")
    async for c in started_client(create_app(make_settings(store))):
        yield c


def test_fixture_pickles_really_are_exotic(exotic_client: httpx.AsyncClient, tmp_path: Path) -> None:
    store = Path(exotic_client._transport.app.state.registry.store)  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError):
        torch.load(store / "from-windows" / "model.pkl", weights_only=False)
    assert referenced_modules(store / "from-cuda" / "model.pkl")[1] is True


async def test_windows_export_serves(exotic_client: httpx.AsyncClient, adult_frame: pd.DataFrame) -> None:
    detail = (await exotic_client.get("/api/v1/models/from-windows")).json()
    assert detail["status"] == "ready", detail["error"]
    assert "mapped pathlib.WindowsPath to pathlib.PosixPath" in detail["compat"]["notes"]
    await _same_predictions(exotic_client, "from-windows", adult_frame)


async def test_cuda_export_serves_on_the_configured_device(
    exotic_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    detail = (await exotic_client.get("/api/v1/models/from-cuda")).json()
    assert detail["status"] == "ready", detail["error"]
    assert detail["device"] == "cpu"
    await _same_predictions(exotic_client, "from-cuda", adult_frame)


async def _same_predictions(client: httpx.AsyncClient, name: str, frame: pd.DataFrame) -> None:
    from tests.helpers import adult_rows

    rows = adult_rows(frame, 8)
    theirs = (await client.post(f"/api/v1/tabular/{name}/predict", json={"rows": rows})).json()["predictions"]
    ours = (await client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})).json()[
        "predictions"
    ]
    for a, b in zip(theirs, ours, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
