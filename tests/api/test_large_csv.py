"""CSVs are capped by bytes, not rows: large files go through in chunks with the same errors and warnings."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from service.api.limits import ANSWER_ROWS
from service.inference.csvio import CSV_CHUNK_ROWS
from service.schemas.predict import TabularPredictResponse
from tests.helpers import TABULAR, client_for, clone_store, problem

PREDICT = f"/api/v1/tabular/{TABULAR}/predict"
PREDICT_CSV = f"/api/v1/tabular/{TABULAR}/predict/csv"
EVALUATE = f"/api/v1/tabular/{TABULAR}/evaluate"
ROWS = 2 * CSV_CHUNK_ROWS + 123  # three chunks


@pytest.fixture(scope="module")
async def big_client(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    store = clone_store(trained_store, tmp_path_factory.mktemp("big") / "store", [TABULAR])
    async for c in client_for(store, max_rows=50, max_upload_mb=40.0):
        yield c


def _many(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return pd.concat([frame] * (n // len(frame) + 1), ignore_index=True).iloc[:n].copy()


def _upload(frame: pd.DataFrame, name: str = "big.csv") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, frame.to_csv(index=False).encode(), "text/csv")}


async def test_100k_rows_evaluate_in_one_request(
    big_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = _many(adult_frame, 100_000)
    response = await big_client.post(EVALUATE, files=_upload(frame))
    assert response.status_code == 200, response.text
    assert response.json()["n"] == 100_000


async def test_more_csv_rows_than_max_rows_are_scored_like_json(
    big_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = _many(adult_frame, ROWS)
    response = await big_client.post(PREDICT_CSV, files=_upload(frame), headers={"Accept": "text/csv"})
    assert response.status_code == 200
    scored = pd.read_csv(io.StringIO(response.text))
    assert len(scored) == ROWS
    picks = [0, CSV_CHUNK_ROWS - 1, CSV_CHUNK_ROWS, ROWS - 1]
    rows = frame.drop(columns=["Salary"]).iloc[picks]
    rows = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    single = (await big_client.post(PREDICT, json={"rows": rows})).json()["predictions"]
    for i, prediction in zip(picks, single, strict=True):
        assert scored["prediction"][i] == prediction["label"]
        assert scored["p_>50K"][i] == pytest.approx(prediction["probabilities"][">50K"], abs=1e-5)


async def test_a_large_json_answer_streams_the_bytes_of_one_response_model(
    big_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    """The answer is written a part at a time (ANSWER_ROWS predictions each), and reads as exactly the bytes
    FastAPI would have written for the whole `TabularPredictResponse`."""
    frame = _many(adult_frame, 2 * ANSWER_ROWS + 7)
    response = await big_client.post(PREDICT_CSV, files=_upload(frame))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    whole = TabularPredictResponse.model_validate_json(response.content)
    assert len(whole.predictions) == 2 * ANSWER_ROWS + 7
    assert response.content == whole.model_dump_json(by_alias=True).encode()
    small = await big_client.post(PREDICT_CSV, files=_upload(frame.iloc[ANSWER_ROWS - 1 : ANSWER_ROWS + 1]))
    assert [p.model_dump(exclude={"id"}) for p in whole.predictions[ANSWER_ROWS - 1 : ANSWER_ROWS + 1]] == [
        {k: v for k, v in p.items() if k != "id"} for p in small.json()["predictions"]
    ]
    request_id = response.headers["x-request-id"]
    assert [p.id for p in whole.predictions] == [f"{request_id}-{k}" for k in range(len(frame))]


async def test_row_errors_name_rows_of_the_whole_file(
    big_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = _many(adult_frame, ROWS)
    frame["age"] = frame["age"].astype(object)
    bad = [3, CSV_CHUNK_ROWS + 5, ROWS - 1]
    frame.loc[bad, "age"] = "old"
    body = problem(await big_client.post(PREDICT_CSV, files=_upload(frame)), 422)
    assert [e["loc"] for e in body["errors"]] == [["rows", i, "age"] for i in bad]
    assert body["detail"] == "3 problem(s) in the submitted rows"


async def test_warnings_stay_on_their_rows(big_client: httpx.AsyncClient, adult_frame: pd.DataFrame) -> None:
    frame = _many(adult_frame, ROWS)
    frame.loc[CSV_CHUNK_ROWS + 7, "workclass"] = "Astronaut"
    predictions = (await big_client.post(PREDICT_CSV, files=_upload(frame))).json()["predictions"]
    assert len(predictions) == ROWS
    flagged = [i for i, p in enumerate(predictions) if any("Astronaut" in w for w in p["warnings"])]
    assert flagged == [CSV_CHUNK_ROWS + 7]


async def test_formula_cells_are_neutralised_in_the_scored_csv(
    big_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[:3].copy()
    frame["note"] = ['=HYPERLINK("http://x")', "-12.5", "@x"]
    response = await big_client.post(PREDICT_CSV, files=_upload(frame), headers={"Accept": "text/csv"})
    scored = pd.read_csv(io.StringIO(response.text), dtype=str)
    assert scored["note"].tolist() == ['\'=HYPERLINK("http://x")', "-12.5", "'@x"]
    assert float(scored["fnlwgt"][0]) == adult_frame["fnlwgt"].iloc[0]  # numbers stay numbers
