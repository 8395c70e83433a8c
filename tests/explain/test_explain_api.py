"""The explain endpoints of every kind over tiny real learners: shapes and sizes, the model's own answer
beside each explanation, completeness, targets, limits and errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from service.explain.gradients import tolerance
from tests.helpers import TABULAR, VISION, adult_rows, client_for, image_bytes, problem
from tests.tiny import TAB_MULTI, TAB_REGRESSION, VIS_MULTI, VIS_POINTS, VIS_REGRESSION
from tests.tiny_collab import COLLAB_MODELS
from tests.tiny_segmentation import CODES, SEGMENTATION
from tests.tiny_text import TEXT_CLS, TEXT_MULTI


def _png(data: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data))


def _files(*sizes: tuple[int, int]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"img{i}.png", image_bytes(size=size, seed=i), "image/png"))
        for i, size in enumerate(sizes)
    ]


async def test_images_get_a_heatmap_and_an_overlay_of_their_own_size(client: httpx.AsyncClient) -> None:
    files = _files((48, 40), (32, 32))
    answer = await client.post(f"/api/v1/vision/{VISION}/explain", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    predicted = (await client.post(f"/api/v1/vision/{VISION}/predict", files=files)).json()["predictions"]
    assert [e["filename"] for e in body["explanations"]] == ["img0.png", "img1.png"]
    for explanation, prediction, size in zip(
        body["explanations"], predicted, [(48, 40), (32, 32)], strict=True
    ):
        assert explanation["method"] == "gradcam"
        assert explanation["label"] == prediction["label"] == explanation["target"]  # default: the answer
        assert explanation["layer"]
        heatmap, overlay = _png(explanation["heatmap_png"]), _png(explanation["overlay_png"])
        assert (heatmap.size, heatmap.mode) == (size, "L")
        assert (overlay.size, overlay.mode) == (size, "RGB")
        assert np.asarray(heatmap).max() > 0


async def test_integrated_gradients_explain_the_class_asked_for(client: httpx.AsyncClient) -> None:
    classes = (await client.get(f"/api/v1/models/{VISION}")).json()["classes"]
    answer = await client.post(
        f"/api/v1/vision/{VISION}/explain",
        files=_files((32, 32)),
        params={"method": "integrated_gradients", "target": classes[-1]},
    )
    assert answer.status_code == 200, answer.text
    (explanation,) = answer.json()["explanations"]
    assert (explanation["target"], explanation["method"], explanation["layer"]) == (
        classes[-1],
        "integrated_gradients",
        None,
    )
    assert _png(explanation["heatmap_png"]).size == (32, 32)


async def test_accept_png_answers_the_overlay_of_one_image(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"/api/v1/vision/{VISION}/explain", files=_files((50, 30)), headers={"accept": "image/png"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert _png(answer.content).size == (50, 30)
    two = await client.post(
        f"/api/v1/vision/{VISION}/explain", files=_files((32, 32), (32, 32)), headers={"accept": "image/png"}
    )
    assert "one" in problem(two, 422)["detail"]


@pytest.mark.parametrize(
    ("name", "target", "default"),
    [
        (VIS_MULTI, "vehicle", None),
        (VIS_REGRESSION, "target_1", "target_0"),
        (VIS_POINTS, "point_1", "point_0"),
    ],
)
async def test_every_vision_task_explains_its_own_targets(
    task_client: httpx.AsyncClient, name: str, target: str, default: str | None
) -> None:
    first = await task_client.post(f"/api/v1/vision/{name}/explain", files=_files((40, 36)))
    assert first.status_code == 200, first.text
    (explanation,) = first.json()["explanations"]
    if default is not None:
        assert explanation["target"] == default
    else:  # multi_label: the most likely class, repeated as `label`
        assert explanation["target"] == explanation["label"]
    assert _png(explanation["overlay_png"]).size == (40, 36)
    for method in ("gradcam", "integrated_gradients"):
        chosen = await task_client.post(
            f"/api/v1/vision/{name}/explain",
            files=_files((40, 36)),
            params={"target": target, "method": method},
        )
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["explanations"][0]["target"] == target


async def test_segmentation_explains_a_class_of_its_mask(seg_client: httpx.AsyncClient) -> None:
    for method in ("gradcam", "integrated_gradients"):
        answer = await seg_client.post(
            f"/api/v1/vision/{SEGMENTATION}/explain",
            files=_files((40, 28)),
            params={"target": CODES[1], "method": method},
        )
        assert answer.status_code == 200, answer.text
        (explanation,) = answer.json()["explanations"]
        assert explanation["target"] == CODES[1]
        assert _png(explanation["heatmap_png"]).size == (40, 28)


async def test_rows_get_one_attribution_per_column_that_sum_to_the_output(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 4)
    answer = await client.post(f"/api/v1/tabular/{TABULAR}/explain", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    predicted = (await client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": rows})).json()
    columns = set(rows[0])
    assert set(body["reference"]) == columns
    assert {body["reference"][c] for c in columns if isinstance(body["reference"][c], str)} == {"#na#"}
    for explanation, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert explanation["method"] == "integrated_gradients"
        assert explanation["label"] == prediction["label"] == explanation["target"]
        assert set(explanation["attributions"]) == columns
        # `output` is the explained class's probability, as predict gives it.
        assert explanation["output"] == pytest.approx(
            prediction["probabilities"][explanation["target"]], abs=1e-4
        )
        total = explanation["base_value"] + sum(explanation["attributions"].values())
        assert abs(total - explanation["output"]) <= tolerance(explanation["output"])
        assert explanation["completeness_error"] == pytest.approx(
            abs(total - explanation["output"]), abs=1e-4
        )
    assert len({e["base_value"] for e in body["explanations"]}) == 1  # one reference for every row


@pytest.mark.parametrize(("name", "target"), [(TAB_REGRESSION, "hours-per-week"), (TAB_MULTI, "long_hours")])
async def test_regression_and_multi_label_rows_explain_their_targets(
    task_client: httpx.AsyncClient, adult_frame: pd.DataFrame, name: str, target: str
) -> None:
    rows = adult_rows(adult_frame, 3)
    schema = (await task_client.get(f"/api/v1/models/{name}")).json()["input_schema"]
    wanted = {c["name"] for c in schema["columns"]}
    rows = [{k: v for k, v in row.items() if k in wanted} for row in rows]
    answer = await task_client.post(
        f"/api/v1/tabular/{name}/explain", json={"rows": rows}, params={"target": target}
    )
    assert answer.status_code == 200, answer.text
    predicted = (await task_client.post(f"/api/v1/tabular/{name}/predict", json={"rows": rows})).json()
    for explanation, prediction in zip(answer.json()["explanations"], predicted["predictions"], strict=True):
        assert explanation["target"] == target
        expected = (
            prediction["values"][target] if "values" in prediction else prediction["probabilities"][target]
        )
        assert explanation["output"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
        total = explanation["base_value"] + sum(explanation["attributions"].values())
        assert abs(total - explanation["output"]) <= tolerance(explanation["output"])


async def test_texts_get_an_attribution_per_fastai_token(text_client: httpx.AsyncClient) -> None:
    texts = ["the movie was really great", "awful and boring plot"]
    answer = await text_client.post(f"/api/v1/text/{TEXT_CLS}/explain", json={"texts": texts})
    assert answer.status_code == 200, answer.text
    predicted = (await text_client.post(f"/api/v1/text/{TEXT_CLS}/predict", json={"texts": texts})).json()
    for explanation, prediction in zip(answer.json()["explanations"], predicted["predictions"], strict=True):
        assert explanation["tokens"][0] == "xxbos" and explanation["special"][0]
        assert "great" in explanation["tokens"] or "awful" in explanation["tokens"]
        assert len(explanation["tokens"]) == len(explanation["special"]) == len(explanation["attributions"])
        assert explanation["label"] == prediction["label"] == explanation["target"]
        assert explanation["output"] == pytest.approx(
            prediction["probabilities"][explanation["target"]], abs=1e-4
        )
        total = explanation["base_value"] + sum(explanation["attributions"])
        assert abs(total - explanation["output"]) <= tolerance(explanation["output"])


async def test_a_long_text_spanning_chunks_keeps_completeness(text_client: httpx.AsyncClient) -> None:
    """Longer than several `bptt` chunks and than `max_len`: one pass keeps every gradient."""
    text = " ".join(["the movie was really quite good and the acting was fine"] * 6)
    answer = await text_client.post(f"/api/v1/text/{TEXT_MULTI}/explain", json={"texts": [text]})
    assert answer.status_code == 200, answer.text
    (explanation,) = answer.json()["explanations"]
    total = explanation["base_value"] + sum(explanation["attributions"])
    assert abs(total - explanation["output"]) <= tolerance(explanation["output"])


async def test_an_unknown_target_names_the_choices(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"/api/v1/vision/{VISION}/explain", files=_files((32, 32)), params={"target": "zebra"}
    )
    detail = problem(answer, 422)["detail"]
    assert "zebra" in detail and "airplane" in detail


async def test_a_method_the_kind_lacks_is_refused(
    client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    answer = await client.post(
        f"/api/v1/tabular/{TABULAR}/explain",
        json={"rows": adult_rows(adult_frame, 1)},
        params={"method": "gradcam"},
    )
    assert "integrated_gradients" in problem(answer, 422)["detail"]


async def test_too_many_items_is_413(trained_store: Path, adult_frame: pd.DataFrame) -> None:
    async for c in client_for(trained_store, max_explain_items=2):
        rows = await c.post(f"/api/v1/tabular/{TABULAR}/explain", json={"rows": adult_rows(adult_frame, 3)})
        assert "at most 2" in problem(rows, 413)["detail"]
        images = await c.post(f"/api/v1/vision/{VISION}/explain", files=_files((32, 32), (32, 32), (32, 32)))
        assert "at most 2" in problem(images, 413)["detail"]


async def test_a_kind_without_explanations_is_404_naming_those_with(collab_client: httpx.AsyncClient) -> None:
    answer = await collab_client.post(f"/api/v1/collab/{COLLAB_MODELS[0]}/explain")
    detail = problem(answer, 404)["detail"]
    assert "collab" in detail and "vision" in detail and "tabular" in detail and "text" in detail


async def test_unknown_model_and_wrong_kind_are_404(client: httpx.AsyncClient) -> None:
    problem(await client.post("/api/v1/vision/nope/explain", files=_files((32, 32))), 404)
    wrong = await client.post(f"/api/v1/vision/{TABULAR}/explain", files=_files((32, 32)))
    assert "tabular" in problem(wrong, 404)["detail"]


async def test_explanations_are_timed_in_the_metrics(client: httpx.AsyncClient) -> None:
    await client.post(f"/api/v1/vision/{VISION}/explain", files=_files((32, 32)))
    metrics = (await client.get("/metrics")).text
    assert f'fastai_serve_explain_seconds_count{{method="gradcam",model="{VISION}"}}' in metrics
