"""Tabular prediction over HTTP: JSON rows, CSV in, CSV out, and every bad input."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from service.training import data
from tests.helpers import TABULAR, VISION, adult_rows, problem

PREDICT = f"/api/v1/tabular/{TABULAR}/predict"
PREDICT_CSV = f"/api/v1/tabular/{TABULAR}/predict/csv"


@pytest.fixture
def rows(adult_frame: pd.DataFrame) -> list[dict[str, Any]]:
    return adult_rows(adult_frame, 5)


async def test_predict_rows_in_order(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> None:
    response = await client.post(PREDICT, json={"rows": rows})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == TABULAR and body["version"]
    assert len(body["predictions"]) == len(rows)
    for prediction in body["predictions"]:
        assert set(prediction["probabilities"]) == {"<=50K", ">50K"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
        assert prediction["warnings"] == []


async def test_predictions_equal_fastai_get_preds(
    client: httpx.AsyncClient, learners: dict[str, Any], adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 40)
    served = (await client.post(PREDICT, json={"rows": rows})).json()["predictions"]
    learn = learners[TABULAR]
    dl = learn.dls.test_dl(pd.DataFrame(rows), num_workers=0)
    probs, _ = learn.get_preds(dl=dl)
    ours = np.array([[p["probabilities"][c] for c in learn.dls.vocab] for p in served])
    np.testing.assert_allclose(ours, probs.numpy(), atol=1e-5)


async def test_integers_are_accepted_for_continuous_columns(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    row = {k: int(v) if isinstance(v, float) else v for k, v in rows[0].items()}
    assert (await client.post(PREDICT, json={"rows": [row]})).status_code == 200


async def test_unseen_category_is_200_with_warning(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    rows[1]["workclass"] = "Astronaut"
    body = (await client.post(PREDICT, json={"rows": rows[:2]})).json()
    assert body["predictions"][0]["warnings"] == []
    assert body["predictions"][1]["warnings"] == [
        "workclass: 'Astronaut' is not a known category; treated as missing (#na#)"
    ]


async def test_null_continuous_filled_like_the_learner(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    rows[0]["age"] = None
    response = await client.post(PREDICT, json={"rows": rows[:1]})
    assert response.status_code == 200
    [warning] = response.json()["predictions"][0]["warnings"]
    assert warning.startswith("age: missing value filled with ")


async def test_null_continuous_the_learner_cannot_fill_is_422(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    rows[2]["fnlwgt"] = None
    body = problem(await client.post(PREDICT, json={"rows": rows}), 422)
    assert body["errors"][0]["loc"] == ["rows", 2, "fnlwgt"]
    assert "no fill value" in body["errors"][0]["msg"]


async def test_null_category_is_200_with_warning(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    rows[0]["occupation"] = None
    body = (await client.post(PREDICT, json={"rows": rows[:1]})).json()
    assert body["predictions"][0]["warnings"] == ["occupation: missing value treated as #na#"]


async def test_missing_extra_and_ill_typed_columns_are_422_naming_each(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    del rows[0]["age"]
    rows[1]["shoe_size"] = 44
    rows[2]["hours-per-week"] = "forty"
    rows[3]["capital-gain"] = True
    body = problem(await client.post(PREDICT, json={"rows": rows}), 422)
    locs = {tuple(e["loc"]): e["type"] for e in body["errors"]}
    assert locs[("rows", 0, "age")] == "missing"
    assert locs[("rows", 1, "shoe_size")] == "extra_forbidden"
    assert ("rows", 2, "hours-per-week") in locs
    assert ("rows", 3, "capital-gain") in locs
    assert body["detail"] == f"{len(body['errors'])} problem(s) in the submitted rows"


async def test_empty_rows_is_422(client: httpx.AsyncClient) -> None:
    body = problem(await client.post(PREDICT, json={"rows": []}), 422)
    assert body["errors"][0]["loc"] == ["body", "rows"]


async def test_body_without_rows_is_422(client: httpx.AsyncClient) -> None:
    problem(await client.post(PREDICT, json={"data": []}), 422)
    problem(
        await client.post(PREDICT, content=b"{not json", headers={"content-type": "application/json"}), 422
    )


async def test_more_rows_than_max_rows_is_413(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> None:
    body = problem(await client.post(PREDICT, json={"rows": rows[:1] * 51}), 413)
    assert body["detail"] == "51 rows sent; at most 50 are accepted per request"


async def test_body_over_upload_limit_is_413(client: httpx.AsyncClient) -> None:
    huge = b"x" * (1024 * 1024 + 10)
    body = problem(await client.post(PREDICT_CSV, files={"file": ("big.csv", huge, "text/csv")}), 413)
    assert "1 MB limit" in body["detail"]


async def test_unknown_model_and_wrong_kind_are_404(
    client: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    assert problem(await client.post("/api/v1/tabular/nope/predict", json={"rows": rows}), 404)["title"] == (
        "Model not found"
    )
    body = problem(await client.post(f"/api/v1/tabular/{VISION}/predict", json={"rows": rows}), 404)
    # The model exists: the answer says so (its own title) and names the path that serves it.
    assert body["title"] == "Wrong model kind"
    assert body["detail"] == f"model '{VISION}' is a vision model; use /api/v1/vision/{VISION}/predict"


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


async def test_csv_predict_json(client: httpx.AsyncClient, adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.iloc[100:110].drop(columns=[data.ADULT_TARGET])
    frame.loc[frame.index[0], "occupation"] = None  # a blank cell
    response = await client.post(PREDICT_CSV, files={"file": ("rows.csv", _csv(frame), "text/csv")})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 10
    assert "occupation: missing value treated as #na#" in predictions[0]["warnings"]


async def test_csv_cells_with_only_spaces_are_missing(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[:2].drop(columns=[data.ADULT_TARGET]).astype(object)
    frame.loc[frame.index[0], "occupation"] = "   "
    frame.loc[frame.index[1], "workclass"] = " " + str(frame.loc[frame.index[1], "workclass"]) + " "
    response = await client.post(PREDICT_CSV, files={"file": ("rows.csv", _csv(frame), "text/csv")})
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert "occupation: missing value treated as #na#" in first["warnings"]
    assert any(w.startswith("workclass: ") and "matched category" in w for w in second["warnings"])


async def test_csv_predictions_equal_json_predictions(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[200:230].dropna()
    from_csv = (await client.post(PREDICT_CSV, files={"file": ("r.csv", _csv(frame), "text/csv")})).json()
    from_json = (await client.post(PREDICT, json={"rows": adult_rows(frame, len(frame))})).json()
    for a, b in zip(from_csv["predictions"], from_json["predictions"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


async def test_csv_out_keeps_input_and_adds_columns(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[:7]
    response = await client.post(
        PREDICT_CSV, files={"file": ("rows.csv", _csv(frame), "text/csv")}, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    scored = pd.read_csv(io.StringIO(response.text))
    assert len(scored) == 7
    assert list(scored.columns) == [*frame.columns, "prediction_id", "prediction", "p_<=50K", "p_>50K"]
    np.testing.assert_allclose(scored["p_<=50K"] + scored["p_>50K"], 1.0, atol=1e-5)


async def test_csv_missing_columns_is_422_listing_them(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[:3].drop(columns=["age", "sex"])
    body = problem(await client.post(PREDICT_CSV, files={"file": ("r.csv", _csv(frame), "text/csv")}), 422)
    assert body["detail"] == "the uploaded CSV 'r.csv' lacks column(s): age, sex"


async def test_csv_bad_numbers_are_422(client: httpx.AsyncClient, adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.iloc[:3].copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame.index[1], "age"] = "old"
    body = problem(await client.post(PREDICT_CSV, files={"file": ("r.csv", _csv(frame), "text/csv")}), 422)
    assert body["errors"][0]["loc"] == ["rows", 1, "age"]


async def test_unreadable_csv_is_400(client: httpx.AsyncClient) -> None:
    broken = b'age,workclass\n39,"State-gov\n50,Private,extra,cells\n'
    body = problem(await client.post(PREDICT_CSV, files={"file": ("bad.csv", broken, "text/csv")}), 400)
    assert "'bad.csv' is not a readable CSV" in body["detail"]


async def test_empty_csv_is_400_or_422(client: httpx.AsyncClient) -> None:
    problem(await client.post(PREDICT_CSV, files={"file": ("empty.csv", b"", "text/csv")}), 400)
    problem(await client.post(PREDICT_CSV, files={"file": ("header.csv", b"age,sex\n", "text/csv")}), 422)


async def test_non_csv_upload_is_415(client: httpx.AsyncClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    body = problem(await client.post(PREDICT_CSV, files={"file": ("photo.png", png, "image/png")}), 415)
    assert "photo.png" in body["detail"]


async def test_csv_without_file_field_is_422(client: httpx.AsyncClient) -> None:
    problem(await client.post(PREDICT_CSV, files={"other": ("r.csv", b"a\n1\n", "text/csv")}), 422)
