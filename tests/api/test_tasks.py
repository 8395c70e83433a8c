"""Every task through every front door: v1 JSON, CSV (JSON and text/csv), evaluation, the Open Inference
Protocol and the model list, on tiny real learners (tests/tiny.py); bad input per task is a clear 4xx."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from service.errors import MSG_EVAL_ARCHIVE_TASK, MSG_THRESHOLD_TASK
from tests.helpers import client_for, image_bytes, problem
from tests.tiny import (
    MULTI_TAGS,
    POINTS,
    REFUSED,
    TAB_CAT,
    TAB_CONT,
    TAB_MULTI,
    TAB_REGRESSION,
    TAB_REGRESSION_2,
    VIS_MULTI,
    VIS_POINTS,
    VIS_REGRESSION,
    tag_frame,
)


def _unnamed(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predictions without their ids (each request numbers its own)."""
    return [{k: v for k, v in p.items() if k != "id"} for p in predictions]


def _rows(frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    subset = frame[TAB_CAT + TAB_CONT].dropna().iloc[:n]
    return [
        {c: (float(v) if c in TAB_CONT else str(v)) for c, v in row.items()}
        for row in subset.to_dict(orient="records")
    ]


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _images(*sizes: tuple[int, int]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", image_bytes(size=s, seed=i), "image/png")) for i, s in enumerate(sizes)]


# -- the model list ---------------------------------------------------------------------------------------
async def test_models_say_their_kind_task_classes_and_targets(task_client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await task_client.get("/api/v1/models")).json()["models"]}
    expect = {
        TAB_REGRESSION: ("tabular", "regression", [], ["hours-per-week"]),
        TAB_REGRESSION_2: ("tabular", "regression", [], ["hours-per-week", "capital-gain"]),
        TAB_MULTI: ("tabular", "multi_label", MULTI_TAGS, []),
        VIS_REGRESSION: ("vision", "regression", [], ["target_0", "target_1"]),
        VIS_POINTS: ("vision", "points", [], ["point_0", "point_1"]),
    }
    for name, (kind, task, classes, targets) in expect.items():
        model = models[name]
        assert (model["status"], model["kind"], model["task"]) == ("ready", kind, task), model
        assert (model["classes"], model["targets"]) == (classes, targets)
    assert models[VIS_MULTI]["task"] == "multi_label" and "vehicle" in models[VIS_MULTI]["classes"]
    assert models[VIS_MULTI]["threshold"] == models[TAB_MULTI]["threshold"] == 0.5  # the loss's `thresh`
    assert models[TAB_REGRESSION]["threshold"] is None
    detail = (await task_client.get(f"/api/v1/models/{TAB_REGRESSION_2}")).json()
    assert detail["input_schema"]["targets"] == ["hours-per-week", "capital-gain"]
    vision = (await task_client.get(f"/api/v1/models/{VIS_POINTS}")).json()
    assert vision["input_schema"]["task"] == "points" and vision["input_schema"]["image_size"] == [16, 16]


async def test_refused_learners_fail_with_what_they_are_and_what_is_served(refused_store: Path) -> None:
    async for client in client_for(refused_store):
        models = {m["name"]: m for m in (await client.get("/api/v1/models")).json()["models"]}
        assert sorted(models) == sorted(REFUSED)
        for model in models.values():
            assert model["status"] == "failed"
            assert "served: tabular classification" in model["error"], model
            assert "vision points" in model["error"]
            assert "AttributeError" not in model["error"]
        assert "TensorBBox.create" in models["vision-bbox"]["error"]
        assert "DynamicUnet" in models["image-to-image"]["error"]
        assert "model Linear" in models["plain-learner"]["error"]
        assert (await client.get("/health/ready")).status_code == 503  # nothing servable


# -- tabular regression -----------------------------------------------------------------------------------
async def test_tabular_regression_answers_values_per_target_at_every_door(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = _rows(adult_frame, 5)
    body = (await task_client.post(f"/api/v1/tabular/{TAB_REGRESSION_2}/predict", json={"rows": rows})).json()
    values = np.array(
        [[p["values"]["hours-per-week"], p["values"]["capital-gain"]] for p in body["predictions"]]
    )
    assert all(set(p) == {"id", "values", "warnings"} for p in body["predictions"])
    frame = pd.DataFrame(rows)
    as_json = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION_2}/predict/csv", files={"file": ("r.csv", _csv(frame))}
    )
    assert _unnamed(as_json.json()["predictions"]) == _unnamed(body["predictions"])
    as_csv = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION_2}/predict/csv",
        files={"file": ("r.csv", _csv(frame))},
        headers={"accept": "text/csv"},
    )
    scored = pd.read_csv(io.StringIO(as_csv.text))
    assert list(scored.columns[-2:]) == ["prediction_hours-per-week", "prediction_capital-gain"]
    np.testing.assert_allclose(scored.iloc[:, -2:].to_numpy(), values, rtol=1e-6)
    one = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION}/predict/csv",
        files={"file": ("r.csv", _csv(frame))},
        headers={"accept": "text/csv"},
    )
    assert pd.read_csv(io.StringIO(one.text)).columns[-1] == "prediction"


async def test_tabular_regression_evaluates_rmse_mae_r2_per_target(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    labelled = adult_frame[TAB_CAT + TAB_CONT + ["hours-per-week", "capital-gain"]].dropna().iloc[:60]
    answer = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION_2}/evaluate", files={"file": ("e.csv", _csv(labelled))}
    )
    assert answer.status_code == 200, answer.text
    scores = answer.json()
    assert scores["n"] == 60 and set(scores["targets"]) == {"hours-per-week", "capital-gain"}
    predicted = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION_2}/predict/csv", files={"file": ("e.csv", _csv(labelled))}
    )
    hours = np.array([p["values"]["hours-per-week"] for p in predicted.json()["predictions"]])
    error = hours - labelled["hours-per-week"].to_numpy()
    assert scores["targets"]["hours-per-week"]["rmse"] == pytest.approx(float(np.sqrt((error**2).mean())))
    assert scores["targets"]["hours-per-week"]["mae"] == pytest.approx(float(np.abs(error).mean()))


async def test_tabular_regression_refuses_a_missing_or_non_numeric_target(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    labelled = adult_frame[TAB_CAT + TAB_CONT + ["hours-per-week"]].dropna().iloc[:10]
    missing = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION_2}/evaluate", files={"file": ("e.csv", _csv(labelled))}
    )
    assert "'capital-gain'" in problem(missing, 422)["detail"]
    bad = labelled.astype({"hours-per-week": object})
    bad.iloc[3, bad.columns.get_loc("hours-per-week")] = "forty"
    answer = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION}/evaluate", files={"file": ("e.csv", _csv(bad))}
    )
    body = problem(answer, 422)
    assert body["errors"][0]["loc"] == ["rows", 3, "hours-per-week"]
    threshold = await task_client.post(
        f"/api/v1/tabular/{TAB_REGRESSION}/predict?threshold=0.3", json={"rows": _rows(adult_frame, 1)}
    )
    assert problem(threshold, 422)["detail"] == MSG_THRESHOLD_TASK.format(
        name=TAB_REGRESSION, task="regression"
    )


# -- tabular multi-label ----------------------------------------------------------------------------------
async def test_tabular_multi_label_answers_labels_over_the_threshold(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = _rows(adult_frame, 8)
    url = f"/api/v1/tabular/{TAB_MULTI}/predict"
    default = (await task_client.post(url, json={"rows": rows})).json()["predictions"]
    for prediction in default:
        assert prediction["threshold"] == 0.5
        assert prediction["labels"] == [c for c in MULTI_TAGS if prediction["probabilities"][c] > 0.5]
    probabilities = [p for item in default for p in item["probabilities"].values()]
    cut = float(np.median(probabilities))
    own = (await task_client.post(f"{url}?threshold={cut:.6f}", json={"rows": rows})).json()["predictions"]
    for prediction in own:
        assert prediction["threshold"] == pytest.approx(cut, abs=1e-6)
        assert prediction["labels"] == [c for c in MULTI_TAGS if prediction["probabilities"][c] > cut]
    assert [p["probabilities"] for p in own] == [p["probabilities"] for p in default]
    for bad in ["0", "1", "-0.2", "1.5", "x"]:
        assert (await task_client.post(f"{url}?threshold={bad}", json={"rows": rows})).status_code == 422
    as_csv = await task_client.post(
        f"{url}/csv?threshold={cut:.6f}",
        files={"file": ("m.csv", _csv(pd.DataFrame(rows)))},
        headers={"accept": "text/csv"},
    )
    scored = pd.read_csv(io.StringIO(as_csv.text), keep_default_na=False)
    assert list(scored.columns[-3:]) == ["prediction", "p_rich", "p_long_hours"]
    assert scored["prediction"].tolist() == [";".join(p["labels"]) for p in own]


async def test_tabular_multi_label_evaluates_accuracy_multi_and_f1_at_the_threshold(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    labelled = tag_frame(adult_frame)[TAB_CAT + TAB_CONT + MULTI_TAGS].dropna().iloc[:50]
    url = f"/api/v1/tabular/{TAB_MULTI}"
    scores = (await task_client.post(f"{url}/evaluate", files={"file": ("e.csv", _csv(labelled))})).json()
    assert scores["n"] == 50 and scores["threshold"] == 0.5
    assert set(scores["f1"]) == {*MULTI_TAGS, "micro", "macro"}
    predicted = (
        await task_client.post(f"{url}/predict/csv", files={"file": ("e.csv", _csv(labelled))})
    ).json()
    chosen = np.array([[c in p["labels"] for c in MULTI_TAGS] for p in predicted["predictions"]])
    assert scores["accuracy_multi"] == pytest.approx(
        float((chosen == labelled[MULTI_TAGS].to_numpy()).mean())
    )
    bad = labelled.astype({"rich": object})
    bad.iloc[2, bad.columns.get_loc("rich")] = "maybe"
    answer = await task_client.post(f"{url}/evaluate", files={"file": ("e.csv", _csv(bad))})
    assert problem(answer, 422)["errors"][0]["loc"] == ["rows", 2, "rich"]


# -- vision tasks -----------------------------------------------------------------------------------------
async def test_vision_multi_label_regression_and_points_answer_their_items(
    task_client: httpx.AsyncClient,
) -> None:
    files = _images((32, 32), (48, 24))
    tags = (await task_client.post(f"/api/v1/vision/{VIS_MULTI}/predict", files=files)).json()["predictions"]
    assert [p["filename"] for p in tags] == ["0.png", "1.png"]
    assert all(p["labels"] == [c for c, v in p["probabilities"].items() if v > p["threshold"]] for p in tags)
    values = (await task_client.post(f"/api/v1/vision/{VIS_REGRESSION}/predict", files=files)).json()[
        "predictions"
    ]
    assert all(set(p["values"]) == {"target_0", "target_1"} for p in values)
    points = (await task_client.post(f"/api/v1/vision/{VIS_POINTS}/predict", files=files)).json()[
        "predictions"
    ]
    assert all(len(p["points"]) == len(POINTS) and all(len(xy) == 2 for xy in p["points"]) for p in points)
    # The points are in each uploaded image's own pixels: a 48 x 24 image's lie within 48 x 24.
    assert all(-24 <= x <= 72 and -12 <= y <= 36 for x, y in points[1]["points"])
    refused = await task_client.post(f"/api/v1/vision/{VIS_REGRESSION}/predict?threshold=0.5", files=files)
    assert problem(refused, 422)["detail"] == MSG_THRESHOLD_TASK.format(
        name=VIS_REGRESSION, task="regression"
    )


async def test_vision_tasks_evaluate_with_labels_of_their_own_shape(task_client: httpx.AsyncClient) -> None:
    files = _images((32, 32), (32, 32), (40, 20))

    async def evaluate(name: str, labels: list[str]) -> httpx.Response:
        return await task_client.post(f"/api/v1/vision/{name}/evaluate", files=files, data={"labels": labels})

    tags = await evaluate(VIS_MULTI, ["cat", "airplane;vehicle", ""])
    assert tags.status_code == 200, tags.text
    assert tags.json()["n"] == 3 and "accuracy_multi" in tags.json()
    unknown = await evaluate(VIS_MULTI, ["cat", "unicorn", ""])
    assert "unicorn" in problem(unknown, 422)["detail"]
    regression = await evaluate(
        VIS_REGRESSION, ["[0.5, 0.2]", '{"target_0": 0.1, "target_1": 0.3}', "[1, 1]"]
    )
    assert set(regression.json()["targets"]) == {"target_0", "target_1"}
    wrong_count = await evaluate(VIS_REGRESSION, ["[0.5]", "[0.1, 0.3]", "[1, 1]"])
    assert problem(wrong_count, 422)["errors"][0]["loc"] == ["labels", 0]
    truth = json.dumps(POINTS)
    points = await evaluate(VIS_POINTS, [truth, truth, truth])
    assert points.status_code == 200 and points.json()["mean_pixel_error"] >= 0
    # Points sent to a model that predicts no points: the label is not what it scores.
    assert problem(await evaluate(VIS_REGRESSION, [truth, truth, truth]), 422)["errors"][0]["loc"] == [
        "labels",
        0,
    ]
    assert problem(await evaluate(VIS_POINTS, ["[[1, 2]]", truth, truth]), 422)["errors"][0]["loc"] == [
        "labels",
        0,
    ]
    archive = await task_client.post(
        f"/api/v1/vision/{VIS_POINTS}/evaluate", files={"archive": ("a.zip", b"PK\x05\x06" + b"\0" * 18)}
    )
    assert problem(archive, 422)["detail"].startswith(MSG_EVAL_ARCHIVE_TASK.split("{")[0])


# -- the Open Inference Protocol --------------------------------------------------------------------------
def _infer_body(name: str, rows: list[dict[str, Any]] | None = None, **parameters: Any) -> dict[str, Any]:
    if rows is None:
        image = image_bytes(size=(32, 32))
        import base64

        inputs = [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
        ]
    else:
        inputs = [
            {
                "name": c,
                "datatype": "FP64" if c in TAB_CONT else "BYTES",
                "shape": [len(rows)],
                "data": [r[c] for r in rows],
            }
            for c in TAB_CONT + TAB_CAT
        ]
    body: dict[str, Any] = {"inputs": inputs}
    if parameters:
        body["parameters"] = parameters
    return body


async def test_v2_outputs_per_task_match_v1(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = _rows(adult_frame, 3)
    v1 = (await task_client.post(f"/api/v1/tabular/{TAB_MULTI}/predict", json={"rows": rows})).json()
    meta = (await task_client.get(f"/v2/models/{TAB_MULTI}")).json()
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "predicted"]
    assert meta["parameters"] == {
        "kind": "tabular",
        "task": "multi_label",
        "classes": MULTI_TAGS,
        "targets": [],
    }
    answer = await task_client.post(f"/v2/models/{TAB_MULTI}/infer", json=_infer_body(TAB_MULTI, rows))
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["predicted"]["datatype"] == "BOOL" and outputs["predicted"]["shape"] == [3, 2]
    flags = np.array(outputs["predicted"]["data"]).reshape(3, 2)
    assert flags.tolist() == [[c in p["labels"] for c in MULTI_TAGS] for p in v1["predictions"]]
    low = await task_client.post(
        f"/v2/models/{TAB_MULTI}/infer", json=_infer_body(TAB_MULTI, rows, threshold=0.01)
    )
    assert {o["name"]: o for o in low.json()["outputs"]}["predicted"]["data"] == [True] * 6
    refused = await task_client.post(
        f"/v2/models/{TAB_REGRESSION}/infer", json=_infer_body(TAB_REGRESSION, rows, threshold=0.5)
    )
    assert refused.status_code == 400 and "threshold" in refused.json()["error"]

    values = await task_client.post(
        f"/v2/models/{TAB_REGRESSION_2}/infer", json=_infer_body(TAB_REGRESSION_2, rows)
    )
    [tensor] = values.json()["outputs"]
    assert (tensor["name"], tensor["shape"], tensor["parameters"]["targets"]) == (
        "values",
        [3, 2],
        ["hours-per-week", "capital-gain"],
    )
    points = await task_client.post(f"/v2/models/{VIS_POINTS}/infer", json=_infer_body(VIS_POINTS))
    [tensor] = points.json()["outputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("points", "FP32", [1, 2, 2])
    v1_points = await task_client.post(
        f"/api/v1/vision/{VIS_POINTS}/predict",
        files=[("files", ("a.png", image_bytes(size=(32, 32)), "image/png"))],
    )
    np.testing.assert_allclose(
        np.array(tensor["data"]).reshape(2, 2), v1_points.json()["predictions"][0]["points"], rtol=1e-5
    )
