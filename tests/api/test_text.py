"""Text models through every front door: v1 JSON, CSV (JSON and text/csv), evaluation, the schema, the Open
Inference Protocol; every outcome (200, 404, 413, 415, 422, 503) is a clear answer naming what is wrong."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from service.errors import (
    MSG_TEXT_UNKNOWN_TOKENS,
    MSG_THRESHOLD_TASK,
    MSG_TOO_MANY_TEXTS,
    MSG_WRONG_KIND_PATH,
)
from service.loading import load_exported_learner
from tests.helpers import client_for, image_bytes, problem
from tests.tiny_text import TEXT_CLS, TEXT_MULTI, sentences

TEXTS = ["The movie was good and lovely.", "An awful, boring film.", "the plot"]
# text_client's limits (tests/conftest.py)
MAX_TEXTS, MAX_CHARS = 20, 400


def _predict(name: str) -> str:
    return f"/api/v1/text/{name}/predict"


def _csv(frame: pd.DataFrame) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("reviews.csv", frame.to_csv(index=False).encode(), "text/csv")}


def _fastai(store: Path, name: str, texts: list[str]) -> np.ndarray:
    """fastai's own probabilities, each text alone (what every door must give)."""
    learn = load_exported_learner(store / name / "model.pkl").learn
    rows = []
    for text in texts:
        with learn.no_bar():
            probs, _ = learn.get_preds(dl=learn.dls.test_dl([text], num_workers=0))
        rows.append(probs.numpy()[0])
    return np.stack(rows)


# -- 200 --------------------------------------------------------------------------------------------------
async def test_classification_gives_label_probabilities_top_k_and_warnings(
    text_client: httpx.AsyncClient, text_store: Path
) -> None:
    answer = await text_client.post(_predict(TEXT_CLS), json={"texts": TEXTS}, params={"top_k": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == TEXT_CLS
    items = body["predictions"]
    assert [set(i) for i in items] == [{"id", "label", "probabilities", "top_k", "warnings"}] * 3
    got = np.array([[i["probabilities"][c] for c in ("neg", "pos")] for i in items])
    np.testing.assert_allclose(got, _fastai(text_store, TEXT_CLS, TEXTS), atol=1e-4)
    for item in items:
        assert abs(sum(item["probabilities"].values()) - 1) < 1e-5
        assert item["top_k"] == [
            {"label": item["label"], "probability": item["probabilities"][item["label"]]}
        ]


async def test_unknown_tokens_are_a_warning_with_their_share(text_client: httpx.AsyncClient) -> None:
    answer = await text_client.post(_predict(TEXT_CLS), json={"texts": ["the movie", "the zyzzyva"]})
    known, half = answer.json()["predictions"]
    assert known["warnings"] == []
    assert half["warnings"] == [MSG_TEXT_UNKNOWN_TOKENS.format(share="50%")]


async def test_multi_label_gives_labels_over_the_threshold(
    text_client: httpx.AsyncClient, text_store: Path
) -> None:
    answer = await text_client.post(_predict(TEXT_MULTI), json={"texts": TEXTS})
    assert answer.status_code == 200, answer.text
    items = answer.json()["predictions"]
    classes = list(items[0]["probabilities"])
    assert sorted(classes) == ["long", "neg", "pos"]
    np.testing.assert_allclose(
        [[i["probabilities"][c] for c in classes] for i in items],
        _fastai(text_store, TEXT_MULTI, TEXTS),
        atol=1e-4,
    )
    for item in items:
        assert item["threshold"] == 0.5
        assert item["labels"] == [c for c in classes if item["probabilities"][c] > 0.5]
    low = await text_client.post(_predict(TEXT_MULTI), json={"texts": TEXTS}, params={"threshold": 0.001})
    assert [sorted(i["labels"]) for i in low.json()["predictions"]] == [sorted(classes)] * 3


async def test_csv_in_json_or_csv_out(text_client: httpx.AsyncClient) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "review": TEXTS})
    json_answer = await text_client.post(
        f"/api/v1/text/{TEXT_CLS}/predict/csv", files=_csv(frame), params={"column": "review"}
    )
    assert json_answer.status_code == 200, json_answer.text
    direct = await text_client.post(_predict(TEXT_CLS), json={"texts": TEXTS})

    def unnamed(answer: httpx.Response) -> list[dict[str, object]]:
        return [{k: v for k, v in p.items() if k != "id"} for p in answer.json()["predictions"]]

    assert unnamed(json_answer) == unnamed(direct)
    csv_answer = await text_client.post(
        f"/api/v1/text/{TEXT_CLS}/predict/csv",
        files=_csv(frame.rename(columns={"review": "text"})),
        headers={"Accept": "text/csv"},
    )
    assert csv_answer.headers["content-type"].startswith("text/csv")
    scored = pd.read_csv(io.StringIO(csv_answer.text))
    assert list(scored.columns) == ["id", "text", "prediction_id", "prediction", "p_neg", "p_pos"]
    assert scored["prediction"].tolist() == [p["label"] for p in direct.json()["predictions"]]
    multi = await text_client.post(
        f"/api/v1/text/{TEXT_MULTI}/predict/csv",
        files=_csv(frame.rename(columns={"review": "text"})),
        headers={"Accept": "text/csv"},
        params={"threshold": 0.001},
    )
    scored = pd.read_csv(io.StringIO(multi.text))
    assert set(scored["prediction"]) == {"long;neg;pos"}


async def test_evaluate_scores_the_task(text_client: httpx.AsyncClient) -> None:
    frame = sentences(12, seed=7)
    answer = await text_client.post(f"/api/v1/text/{TEXT_CLS}/evaluate", files=_csv(frame))
    assert answer.status_code == 200, answer.text
    scores = answer.json()
    assert scores["n"] == 12 and 0 <= scores["accuracy"] <= 1
    assert scores["confusion_matrix"]["labels"] == ["neg", "pos"]
    assert sum(map(sum, scores["confusion_matrix"]["matrix"])) == 12
    # multi_label: the learner's own target column (`tags`, labels joined by ';') by default
    multi = await text_client.post(f"/api/v1/text/{TEXT_MULTI}/evaluate", files=_csv(frame))
    assert multi.status_code == 200, multi.text
    assert multi.json()["n"] == 12 and {"accuracy_multi", "f1", "threshold"} <= set(multi.json())
    renamed = frame.rename(columns={"tags": "labels", "text": "review"})
    again = await text_client.post(
        f"/api/v1/text/{TEXT_MULTI}/evaluate",
        files=_csv(renamed),
        params={"target": "labels", "column": "review"},
    )
    assert again.json() == multi.json()


async def test_schema_and_detail_describe_one_text(text_client: httpx.AsyncClient) -> None:
    schema = (await text_client.get(f"/api/v1/models/{TEXT_CLS}/schema")).json()
    assert schema["type"] == "string" and schema["minLength"] == 1
    detail = (await text_client.get(f"/api/v1/models/{TEXT_CLS}")).json()
    assert detail["kind"] == "text" and detail["task"] == "classification"
    assert detail["classes"] == ["neg", "pos"]
    shape = detail["input_schema"]
    assert shape["tokenizer"] == "SpacyTokenizer" and shape["max_len"] == 40 and shape["vocab_size"] > 8
    assert detail["runtime"] in {"torch", "onnx"} and detail["runtime_note"]


async def test_v2_infer_takes_text_bytes_and_answers_the_task(text_client: httpx.AsyncClient) -> None:
    meta = (await text_client.get(f"/v2/models/{TEXT_CLS}")).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("text", "BYTES")]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": TEXTS}]}
    answer = await text_client.post(f"/v2/models/{TEXT_CLS}/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    v1 = (await text_client.post(_predict(TEXT_CLS), json={"texts": TEXTS})).json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in v1]
    np.testing.assert_allclose(
        np.array(outputs["probabilities"]["data"]).reshape(3, 2),
        [[p["probabilities"][c] for c in ("neg", "pos")] for p in v1],
        atol=1e-6,
    )
    multi = await text_client.post(f"/v2/models/{TEXT_MULTI}/infer", json=body)
    names = {o["name"]: o for o in multi.json()["outputs"]}
    assert names["predicted"]["datatype"] == "BOOL" and names["predicted"]["shape"] == [3, 3]
    empty = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["fine", " "]}]}
    refused = await text_client.post(f"/v2/models/{TEXT_CLS}/infer", json=empty)
    assert refused.status_code == 400 and "index 1" in refused.json()["error"]


# -- 404 --------------------------------------------------------------------------------------------------
async def test_unknown_model_is_404(text_client: httpx.AsyncClient) -> None:
    problem(await text_client.post(_predict("nope"), json={"texts": ["x"]}), 404)


async def test_a_text_model_at_another_kinds_path_is_404_naming_its_path(
    text_client: httpx.AsyncClient,
) -> None:
    answer = await text_client.post(f"/api/v1/tabular/{TEXT_CLS}/predict", json={"rows": [{"a": 1}]})
    assert problem(answer, 404)["detail"] == MSG_WRONG_KIND_PATH.format(
        name=TEXT_CLS, kind="text", path=_predict(TEXT_CLS)
    )
    files = [("files", ("a.png", image_bytes(), "image/png"))]
    answer = await text_client.post(f"/api/v1/vision/{TEXT_CLS}/predict", files=files)
    assert _predict(TEXT_CLS) in problem(answer, 404)["detail"]


async def test_another_kind_at_the_text_path_is_404_naming_its_path(task_client: httpx.AsyncClient) -> None:
    answer = await task_client.post(_predict("adult-tags"), json={"texts": ["x"]})
    assert "/api/v1/tabular/adult-tags/predict" in problem(answer, 404)["detail"]


# -- 413 --------------------------------------------------------------------------------------------------
async def test_too_many_texts_is_413(text_client: httpx.AsyncClient) -> None:
    answer = await text_client.post(_predict(TEXT_CLS), json={"texts": ["fine"] * (MAX_TEXTS + 1)})
    assert problem(answer, 413)["detail"] == MSG_TOO_MANY_TEXTS.format(count=MAX_TEXTS + 1, limit=MAX_TEXTS)


async def test_a_too_long_text_is_413_naming_its_index(text_client: httpx.AsyncClient) -> None:
    texts = ["fine", "good " * (MAX_CHARS // 5) + "x"]
    detail = problem(await text_client.post(_predict(TEXT_CLS), json={"texts": texts}), 413)["detail"]
    assert detail.startswith("text 1 has 401 characters; at most 400")
    frame = pd.DataFrame({"text": texts})
    answer = await text_client.post(f"/api/v1/text/{TEXT_CLS}/predict/csv", files=_csv(frame))
    assert problem(answer, 413)["detail"] == detail


# -- 415 / 422 --------------------------------------------------------------------------------------------
async def test_texts_not_sent_as_json_are_415(text_client: httpx.AsyncClient) -> None:
    answer = await text_client.post(
        _predict(TEXT_CLS),
        content=b"texts=fine",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    problem(answer, 415)


async def test_empty_or_whitespace_text_is_422_naming_its_index(text_client: httpx.AsyncClient) -> None:
    answer = await text_client.post(_predict(TEXT_CLS), json={"texts": ["fine", "", "  \n"]})
    body = problem(answer, 422)
    assert "index 1, 2" in body["detail"]
    assert [e["loc"] for e in body["errors"]] == [["texts", 1], ["texts", 2]]
    frame = pd.DataFrame({"text": ["fine", None, "good"]})
    csv_answer = await text_client.post(f"/api/v1/text/{TEXT_CLS}/predict/csv", files=_csv(frame))
    assert [e["loc"] for e in problem(csv_answer, 422)["errors"]] == [["rows", 1]]


@pytest.mark.parametrize(
    "content",
    [b'{"texts": ["fine"', b'{"text": ["fine"]}', b'{"texts": []}', b'{"texts": [3]}', b'{"texts": "fine"}'],
    ids=["bad-json", "no-texts", "none", "not-text", "not-a-list"],
)
async def test_bad_json_is_422(text_client: httpx.AsyncClient, content: bytes) -> None:
    answer = await text_client.post(
        _predict(TEXT_CLS), content=content, headers={"Content-Type": "application/json"}
    )
    problem(answer, 422)


async def test_a_csv_without_the_text_or_target_column_is_422(text_client: httpx.AsyncClient) -> None:
    frame = pd.DataFrame({"review": TEXTS, "label": ["pos", "neg", "pos"]})
    answer = await text_client.post(f"/api/v1/text/{TEXT_CLS}/predict/csv", files=_csv(frame))
    assert problem(answer, 422)["errors"] == [
        {"loc": ["file", "text"], "msg": "column missing", "type": "missing"}
    ]
    evaluated = await text_client.post(
        f"/api/v1/text/{TEXT_CLS}/evaluate",
        files=_csv(frame.drop(columns="label")),
        params={"column": "review"},
    )
    assert "'label'" in problem(evaluated, 422)["detail"]
    unknown = await text_client.post(
        f"/api/v1/text/{TEXT_CLS}/evaluate",
        files=_csv(frame.assign(label=["pos", "meh", "neg"])),
        params={"column": "review"},
    )
    assert "meh" in problem(unknown, 422)["detail"]


async def test_a_threshold_for_a_single_label_model_is_422(text_client: httpx.AsyncClient) -> None:
    answer = await text_client.post(_predict(TEXT_CLS), json={"texts": TEXTS}, params={"threshold": 0.3})
    assert problem(answer, 422)["detail"] == MSG_THRESHOLD_TASK.format(name=TEXT_CLS, task="classification")


# -- 503 and access ---------------------------------------------------------------------------------------
async def test_a_text_model_that_failed_to_load_is_503(tmp_path: Path) -> None:
    folder = tmp_path / "broken-text"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"not a pickle")
    (folder / "model.json").write_text(json.dumps({"kind": "text"}))
    async for client in client_for(tmp_path):
        body = problem(await client.post(_predict("broken-text"), json={"texts": ["fine"]}), 503)
        assert "broken-text" in body["detail"]


async def test_text_routes_need_a_key_when_keys_are_set(text_store: Path) -> None:
    async for client in client_for(text_store, predict_api_keys=["k1"]):
        assert (await client.post(_predict(TEXT_CLS), json={"texts": TEXTS})).status_code == 401
        keyed = await client.post(_predict(TEXT_CLS), json={"texts": TEXTS}, headers={"X-API-Key": "k1"})
        assert keyed.status_code == 200
