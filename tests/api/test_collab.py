"""The collab routes over real tiny collab learners (tests/tiny_collab.py): pairs rated as fastai rates them,
recommendations, similar items, CSV in and out, evaluation, the model's schema, /v2 tensors and items.csv
titles; and one test per refusal (404, 413, 415, 422, 503)."""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from service.errors import MSG_COLLAB_EXCLUDE_UNKNOWN
from service.loading import load_exported_learner
from tests.helpers import TABULAR, client_for, clone_store, problem
from tests.tiny_collab import COLLAB_DOT, COLLAB_NN, ratings, title_of

PREFIX = "/api/v1/collab"


def _fastai(store: Path, name: str, pairs: pd.DataFrame) -> np.ndarray:
    learn = load_exported_learner(store / name / "model.pkl").learn
    with learn.no_bar():
        outputs, _ = learn.get_preds(dl=learn.dls.test_dl(pairs, num_workers=0))
    return np.asarray(outputs.numpy()).reshape(-1)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


async def _schema(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    detail: dict[str, Any] = (await client.get(f"/api/v1/models/{name}")).json()
    return detail


# -- the models -------------------------------------------------------------------------------------------
async def test_collab_models_are_listed_with_their_kind_task_and_input_schema(
    collab_client: httpx.AsyncClient,
) -> None:
    models = {m["name"]: m for m in (await collab_client.get("/api/v1/models")).json()["models"]}
    for name, target in ((COLLAB_DOT, "rating"), (COLLAB_NN, "stars")):
        model = models[name]
        assert (model["status"], model["kind"], model["task"]) == ("ready", "collab", "rating"), model
        assert (model["classes"], model["targets"]) == ([], [target])
    dot = await _schema(collab_client, COLLAB_DOT)
    assert dot["input_schema"] == {
        "user": {"name": "userId", "count": 24},
        "item": {"name": "movieId", "count": 40, "titles": 40},
        "rating": "rating",
        "rating_range": [0.0, 5.5],
    }
    assert dot["runtime"] == "onnx", dot["runtime_note"]
    nn = await _schema(collab_client, COLLAB_NN)
    assert nn["input_schema"]["user"] == {"name": "reader", "count": 24} and nn["runtime"] == "onnx"
    schema = (await collab_client.get(f"/api/v1/models/{COLLAB_NN}/schema")).json()
    assert schema["required"] == ["user", "item"] and schema["additionalProperties"] is False
    assert schema["properties"]["user"]["examples"][0] == "u0"


# -- predict ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [COLLAB_DOT, COLLAB_NN])
async def test_predict_rates_pairs_as_fastai_does(
    name: str, collab_client: httpx.AsyncClient, collab_store: Path
) -> None:
    frame = ratings(text_users=name == COLLAB_NN).iloc[:40, :2]
    pairs = [{"user": u, "item": i} for u, i in frame.itertuples(index=False, name=None)]
    answer = await collab_client.post(f"{PREFIX}/{name}/predict", json={"pairs": pairs})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], len(body["predictions"])) == (name, 40)
    got = np.array([p["rating"] for p in body["predictions"]])
    np.testing.assert_allclose(got, _fastai(collab_store, name, frame), atol=1e-4)
    first = body["predictions"][0]
    assert (first["user"], first["item"], first["warnings"]) == (pairs[0]["user"], pairs[0]["item"], [])
    assert ("title" in first) == (name == COLLAB_DOT)


async def test_unknown_ids_rate_null_with_a_warning_and_text_ids_match_numbers(
    collab_client: httpx.AsyncClient,
) -> None:
    pairs = [
        {"user": 3, "item": "m5"},
        {"user": "3", "item": "m5"},
        {"user": 999, "item": "m5"},
        {"user": 3, "item": "m999"},  # in items.csv, but never rated: the learner does not know it
    ]
    body = (await collab_client.post(f"{PREFIX}/{COLLAB_DOT}/predict", json={"pairs": pairs})).json()
    first, text, user, item = body["predictions"]
    assert first["rating"] == text["rating"] and first["title"] == title_of("m5")
    assert user["rating"] is None and user["warnings"] == [
        "user 999 is not one the learner knows (userId); no rating"
    ]
    assert item["rating"] is None and item["warnings"] == [
        "item 'm999' is not one the learner knows (movieId); no rating"
    ]
    assert "title" not in item  # titles name only items the learner knows


async def test_too_many_pairs_is_413(collab_client: httpx.AsyncClient) -> None:
    pairs = [{"user": 1, "item": "m1"}] * 51
    body = problem(await collab_client.post(f"{PREFIX}/{COLLAB_DOT}/predict", json={"pairs": pairs}), 413)
    assert body["detail"] == "51 rows sent; at most 50 are accepted per request"


@pytest.mark.parametrize(
    ("pairs", "loc"),
    [
        ([{"user": 1}], ["body", "pairs", 0, "item"]),
        ([{"user": 1.5, "item": "m1"}], ["body", "pairs", 0, "user", "str"]),
        ([{"user": True, "item": "m1"}], ["body", "pairs", 0, "user", "str"]),
        ([{"user": 1, "item": "m1", "rating": 4}], ["body", "pairs", 0, "rating"]),
        ([], ["body", "pairs"]),
    ],
    ids=["missing item", "fractional id", "boolean id", "extra key", "no pairs"],
)
async def test_bad_pairs_are_422_naming_the_pair(
    collab_client: httpx.AsyncClient, pairs: list[dict[str, Any]], loc: list[Any]
) -> None:
    body = problem(await collab_client.post(f"{PREFIX}/{COLLAB_DOT}/predict", json={"pairs": pairs}), 422)
    assert loc in [e["loc"] for e in body["errors"]], body


async def test_pairs_not_sent_as_json_are_415(collab_client: httpx.AsyncClient) -> None:
    answer = await collab_client.post(
        f"{PREFIX}/{COLLAB_DOT}/predict", content=b"user,item\n1,m1\n", headers={"content-type": "text/csv"}
    )
    assert "application/json" in problem(answer, 415)["detail"]


async def test_a_model_that_does_not_exist_is_404_on_every_collab_route(
    collab_client: httpx.AsyncClient,
) -> None:
    answers = [
        await collab_client.post(f"{PREFIX}/nope/predict", json={"pairs": [{"user": 1, "item": 1}]}),
        await collab_client.get(f"{PREFIX}/nope/recommend", params={"user": "1"}),
        await collab_client.get(f"{PREFIX}/nope/similar", params={"item": "1"}),
    ]
    for answer in answers:
        assert problem(answer, 404)["detail"] == "model 'nope' does not exist"


# -- recommend and similar --------------------------------------------------------------------------------
async def test_recommend_lists_the_best_scored_items_with_their_titles(
    collab_client: httpx.AsyncClient,
) -> None:
    answer = await collab_client.get(f"{PREFIX}/{COLLAB_DOT}/recommend", params={"user": "3", "n": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"] == 3 and len(body["items"]) == 5 and body["warnings"] == []
    assert all(i["title"] == title_of(i["item"]) for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # Each score is the rating /predict gives the pair, and no other item scores higher than the fifth.
    every = [{"user": 3, "item": f"m{i}"} for i in range(40)]
    rated = (await collab_client.post(f"{PREFIX}/{COLLAB_DOT}/predict", json={"pairs": every})).json()
    by_item = {p["item"]: p["rating"] for p in rated["predictions"]}
    assert scores == pytest.approx([by_item[i["item"]] for i in body["items"]], abs=1e-4)
    assert sorted(by_item.values(), reverse=True)[:5] == pytest.approx(scores, abs=1e-4)


async def test_recommend_leaves_out_excluded_items(collab_client: httpx.AsyncClient) -> None:
    url = f"{PREFIX}/{COLLAB_NN}/recommend"
    best = (await collab_client.get(url, params={"user": "u2", "n": 3})).json()["items"]
    excluded = [str(best[0]["item"]), str(best[1]["item"]), "nothing"]
    again = (await collab_client.get(url, params={"user": "u2", "n": 3, "exclude": excluded})).json()
    assert again["items"][0] == best[2] and not {i["item"] for i in again["items"]} & {
        best[0]["item"],
        best[1]["item"],
    }
    assert again["warnings"] == [MSG_COLLAB_EXCLUDE_UNKNOWN.format(value="nothing")]
    assert "title" not in again["items"][0]  # no items.csv for this model


async def test_recommend_for_an_unknown_user_is_404(collab_client: httpx.AsyncClient) -> None:
    answer = await collab_client.get(f"{PREFIX}/{COLLAB_NN}/recommend", params={"user": "stranger"})
    assert problem(answer, 404)["detail"].startswith("user 'stranger' is not one the learner knows (reader")


@pytest.mark.parametrize(
    "query", [{"n": 0}, {"n": 1001}, {"n": "ten"}, {}], ids=["0", "1001", "text", "no user"]
)
async def test_recommend_with_a_bad_n_or_no_user_is_422(
    collab_client: httpx.AsyncClient, query: dict[str, Any]
) -> None:
    params = {"user": "u1", **query} if query else {}
    body = problem(await collab_client.get(f"{PREFIX}/{COLLAB_NN}/recommend", params=params), 422)
    assert body["errors"][0]["loc"] == ["query", "n" if query else "user"]


async def test_similar_lists_items_by_embedding_cosine(collab_client: httpx.AsyncClient) -> None:
    answer = await collab_client.get(f"{PREFIX}/{COLLAB_DOT}/similar", params={"item": "m7", "n": 4})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["item"], body["title"], len(body["items"])) == ("m7", title_of("m7"), 4)
    similarities = [i["similarity"] for i in body["items"]]
    assert similarities == sorted(similarities, reverse=True) and all(-1 <= s <= 1 for s in similarities)
    assert "m7" not in {i["item"] for i in body["items"]}
    nn = (await collab_client.get(f"{PREFIX}/{COLLAB_NN}/similar", params={"item": 7})).json()
    assert nn["item"] == 7 and len(nn["items"]) == 10 and "title" not in nn


async def test_similar_to_an_unknown_item_is_404_and_a_bad_n_422(collab_client: httpx.AsyncClient) -> None:
    url = f"{PREFIX}/{COLLAB_DOT}/similar"
    assert problem(await collab_client.get(url, params={"item": "m999"}), 404)["detail"].startswith(
        "item 'm999' is not one the learner knows (movieId"
    )
    problem(await collab_client.get(url, params={"item": "m1", "n": 0}), 422)


# -- CSV and evaluation -----------------------------------------------------------------------------------
async def test_csv_predictions_equal_json_ones_and_the_scored_csv_adds_prediction(
    collab_client: httpx.AsyncClient,
) -> None:
    frame = ratings(text_users=True).iloc[:30].copy()
    frame.loc[3, "reader"] = "stranger"
    url = f"{PREFIX}/{COLLAB_NN}/predict/csv"
    as_json = (await collab_client.post(url, files={"file": ("r.csv", _csv(frame))})).json()
    pairs = [
        {"user": u, "item": int(i)} for u, i in frame[["reader", "book"]].itertuples(index=False, name=None)
    ]
    direct = (await collab_client.post(f"{PREFIX}/{COLLAB_NN}/predict", json={"pairs": pairs})).json()
    assert [(p["rating"], p["warnings"]) for p in as_json["predictions"]] == [
        (p["rating"], p["warnings"]) for p in direct["predictions"]
    ]
    assert as_json["predictions"][3]["rating"] is None and as_json["predictions"][3]["user"] == "stranger"
    as_csv = await collab_client.post(
        url, files={"file": ("r.csv", _csv(frame))}, headers={"accept": "text/csv"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    scored = pd.read_csv(io.StringIO(as_csv.text))
    assert list(scored.columns) == ["reader", "book", "stars", "prediction_id", "prediction"]
    assert np.isnan(scored["prediction"][3])
    expected = [np.nan if p["rating"] is None else p["rating"] for p in direct["predictions"]]
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-6)


async def test_csv_without_the_item_column_is_422_and_a_binary_upload_415(
    collab_client: httpx.AsyncClient,
) -> None:
    url = f"{PREFIX}/{COLLAB_DOT}/predict/csv"
    frame = ratings(text_users=False).iloc[:5, :1]
    body = problem(await collab_client.post(url, files={"file": ("r.csv", _csv(frame))}), 422)
    assert body["errors"] == [{"loc": ["file", "movieId"], "msg": "column missing", "type": "missing"}]
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    problem(await collab_client.post(url, files={"file": ("r.csv", png)}), 415)


async def test_evaluate_scores_known_pairs_and_counts_unknown_ones_apart(
    collab_client: httpx.AsyncClient,
) -> None:
    frame = ratings(text_users=False).iloc[:50].copy()  # at most max_rows, for /predict below
    frame.loc[[0, 7], "userId"] = 999
    url = f"{PREFIX}/{COLLAB_DOT}/evaluate"
    answer = await collab_client.post(url, files={"file": ("r.csv", _csv(frame))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    pairs = [
        {"user": int(u), "item": i}
        for u, i in frame[["userId", "movieId"]].itertuples(index=False, name=None)
    ]
    rated = (await collab_client.post(f"{PREFIX}/{COLLAB_DOT}/predict", json={"pairs": pairs})).json()
    predicted = np.array([np.nan if p["rating"] is None else p["rating"] for p in rated["predictions"]])
    known = np.isfinite(predicted)
    error = predicted[known] - frame["rating"].to_numpy()[known]
    assert (body["n"], body["unknown"]) == (48, 2)
    assert body["rmse"] == pytest.approx(float(np.sqrt((error**2).mean())), rel=1e-5)
    assert body["mae"] == pytest.approx(float(np.abs(error).mean()), rel=1e-5)
    missing = problem(await collab_client.post(url, files={"file": ("r.csv", _csv(frame.iloc[:, :2]))}), 422)
    assert missing["errors"][0]["loc"] == ["file", "rating"]


# -- /v2 --------------------------------------------------------------------------------------------------
async def test_v2_takes_user_and_item_tensors_and_answers_a_rating_nan_for_unknown(
    collab_client: httpx.AsyncClient,
) -> None:
    metadata = (await collab_client.get(f"/v2/models/{COLLAB_NN}")).json()
    assert [i["name"] for i in metadata["inputs"]] == ["user", "item"]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [("rating", "FP32", [-1])]
    request = {
        "inputs": [
            {"name": "user", "datatype": "BYTES", "shape": [3], "data": ["u1", "u2", "stranger"]},
            {"name": "item", "datatype": "INT64", "shape": [3], "data": [4, 5, 4]},
        ]
    }
    answer = await collab_client.post(f"/v2/models/{COLLAB_NN}/infer", json=request)
    assert answer.status_code == 200, answer.text
    [output] = answer.json()["outputs"]
    pairs = [{"user": "u1", "item": 4}, {"user": "u2", "item": 5}]
    v1 = (await collab_client.post(f"{PREFIX}/{COLLAB_NN}/predict", json={"pairs": pairs})).json()
    assert output["data"][:2] == pytest.approx([p["rating"] for p in v1["predictions"]], abs=1e-6)
    assert output["data"][2] is None  # NaN in the tensor, null in JSON
    assert "stranger" in answer.json()["parameters"]["warnings"][2][0]
    request["inputs"][1]["datatype"] = "FP32"
    assert (
        "INT64" in (await collab_client.post(f"/v2/models/{COLLAB_NN}/infer", json=request)).json()["error"]
    )


# -- other kinds, failed models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def mixed_client(
    collab_store: Path, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A tabular model beside the collab ones, and a collab model whose items.csv is broken."""
    store = clone_store(collab_store, tmp_path_factory.mktemp("mixed"))
    clone_store(trained_store, store, [TABULAR])
    shutil.copytree(store / COLLAB_NN, store / "broken-titles", copy_function=shutil.copy)
    (store / "broken-titles" / "items.csv").write_text("book,name\n1,One\n")
    async for client in client_for(store, runtime="torch"):
        yield client


async def test_a_model_of_another_kind_is_404_naming_its_path(mixed_client: httpx.AsyncClient) -> None:
    at_collab = await mixed_client.get(f"{PREFIX}/{TABULAR}/recommend", params={"user": "1"})
    assert problem(at_collab, 404)["detail"] == (
        f"model '{TABULAR}' is a tabular model; use /api/v1/tabular/{TABULAR}/predict"
    )
    at_tabular = await mixed_client.post(f"/api/v1/tabular/{COLLAB_DOT}/predict", json={"rows": [{"a": 1}]})
    assert problem(at_tabular, 404)["detail"] == (
        f"model '{COLLAB_DOT}' is a collab model; use /api/v1/collab/{COLLAB_DOT}/predict"
    )


async def test_a_collab_model_that_failed_to_load_is_503_saying_why(mixed_client: httpx.AsyncClient) -> None:
    detail = (await mixed_client.get("/api/v1/models/broken-titles")).json()
    assert detail["status"] == "failed" and "items.csv: no `title` column" in detail["error"]
    answer = await mixed_client.post(
        f"{PREFIX}/broken-titles/predict", json={"pairs": [{"user": "u1", "item": 1}]}
    )
    assert "items.csv" in problem(answer, 503)["detail"]
