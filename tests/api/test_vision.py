"""Vision prediction over HTTP: batches of images, top_k, parity with fastai, and every bad input."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import FIXTURES, TABULAR, VISION, image_bytes, problem

PREDICT = f"/api/v1/vision/{VISION}/predict"


def _files(*items: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", item) for item in items]


async def test_predict_several_images_in_order(client: httpx.AsyncClient) -> None:
    uploads = _files(
        ("a.png", image_bytes(seed=1), "image/png"),
        ("b.jpg", image_bytes(seed=2, fmt="JPEG", size=(60, 40)), "image/jpeg"),
        ("c.png", image_bytes(seed=3, mode="RGBA"), "image/png"),
        ("d.png", image_bytes(seed=4, mode="L", size=(20, 50)), "image/png"),
    )
    response = await client.post(PREDICT, files=uploads, params={"top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["filename"] for p in body["predictions"]] == ["a.png", "b.jpg", "c.png", "d.png"]
    for prediction in body["predictions"]:
        assert len(prediction["probabilities"]) == 10
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(prediction["top_k"]) == 2
        assert prediction["top_k"][0]["label"] == prediction["label"]
        assert prediction["top_k"][0]["probability"] >= prediction["top_k"][1]["probability"]


async def test_top_k_defaults_to_3_and_is_capped_by_classes(client: httpx.AsyncClient) -> None:
    one = _files(("a.png", image_bytes(), "image/png"))
    assert len((await client.post(PREDICT, files=one)).json()["predictions"][0]["top_k"]) == 3
    assert (
        len((await client.post(PREDICT, files=one, params={"top_k": 50})).json()["predictions"][0]["top_k"])
        == 10
    )
    problem(await client.post(PREDICT, files=one, params={"top_k": 0}), 422)


async def test_predictions_equal_fastai_get_preds(
    client: httpx.AsyncClient, learners: dict[str, Any]
) -> None:
    from fastai.vision.core import PILImage

    paths = sorted((FIXTURES / "cookbook" / "test_images").glob("*.jpg"))
    uploads = _files(*[(p.name, p.read_bytes(), "image/jpeg") for p in paths])
    served = (await client.post(PREDICT, files=uploads)).json()["predictions"]
    learn = learners[VISION]
    dl = learn.dls.test_dl([PILImage.create(p) for p in paths], num_workers=0)
    probs, _ = learn.get_preds(dl=dl)
    ours = np.array([[p["probabilities"][c] for c in learn.dls.vocab] for p in served])
    np.testing.assert_allclose(ours, probs.numpy(), atol=1e-5)


async def test_non_image_is_415_naming_the_file(client: httpx.AsyncClient) -> None:
    uploads = _files(("ok.png", image_bytes(), "image/png"), ("notes.txt", b"hello, I am text", "image/png"))
    body = problem(await client.post(PREDICT, files=uploads), 415)
    assert "'notes.txt'" in body["detail"]


async def test_corrupt_image_is_422_naming_the_file(client: httpx.AsyncClient) -> None:
    truncated = image_bytes(fmt="JPEG", size=(64, 64))[:200]
    body = problem(await client.post(PREDICT, files=_files(("broken.jpg", truncated, "image/jpeg"))), 422)
    assert "'broken.jpg'" in body["detail"]


async def test_type_comes_from_bytes_not_from_the_header(client: httpx.AsyncClient) -> None:
    png_named_as_text = _files(("image.bin", image_bytes(), "text/plain"))
    assert (await client.post(PREDICT, files=png_named_as_text)).status_code == 200


async def test_more_files_than_max_files_is_413(client: httpx.AsyncClient) -> None:
    uploads = _files(*[(f"{i}.png", image_bytes(seed=i), "image/png") for i in range(5)])
    body = problem(await client.post(PREDICT, files=uploads), 413)
    assert body["detail"] == "5 files sent; at most 4 are accepted per request"


async def test_bytes_over_limit_is_413(client: httpx.AsyncClient) -> None:
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(big, "PNG")
    problem(await client.post(PREDICT, files=_files(("big.png", big.getvalue(), "image/png"))), 413)


async def test_no_files_is_422(client: httpx.AsyncClient) -> None:
    problem(await client.post(PREDICT, data={"x": "1"}), 422)


async def test_unknown_model_and_wrong_kind_are_404(client: httpx.AsyncClient) -> None:
    one = _files(("a.png", image_bytes(), "image/png"))
    problem(await client.post("/api/v1/vision/nope/predict", files=one), 404)
    body = problem(await client.post(f"/api/v1/vision/{TABULAR}/predict", files=one), 404)
    assert body["detail"] == f"model '{TABULAR}' is a tabular model; use /api/v1/tabular/{TABULAR}/predict"


def test_fixture_images_exist() -> None:
    assert len(list(Path(FIXTURES / "cookbook" / "test_images").glob("*.jpg"))) == 3
