"""A segmentation model through every front door: the v1 item and its mask PNG, `Accept: image/png`,
evaluation with mask images, the Open Inference Protocol's `mask`; bad input is a clear 4xx."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.errors import MSG_EVAL_MASK_COUNT, MSG_MASK_PNG_ONE_FILE
from tests.helpers import image_bytes, problem
from tests.tiny_segmentation import CODES, SEGMENTATION, shapes

PREDICT = f"/api/v1/vision/{SEGMENTATION}/predict"
EVALUATE = f"/api/v1/vision/{SEGMENTATION}/evaluate"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_of(encoded: str | bytes) -> Image.Image:
    data = base64.b64decode(encoded) if isinstance(encoded, str) else encoded
    return Image.open(io.BytesIO(data))


def _labelled(*sizes: tuple[int, int]) -> tuple[list[Any], list[np.ndarray]]:
    """Generated shape images of `sizes` (width, height) as `files` parts with their masks as `masks`
    parts, and the masks themselves."""
    parts, truths = [], []
    for i, size in enumerate(sizes):
        pixels, mask = shapes(100 + i, size)
        parts.append(("files", (f"img{i}.png", _png(pixels), "image/png")))
        parts.append(("masks", (f"mask{i}.png", _png(mask), "image/png")))
        truths.append(mask)
    return parts, truths


async def test_the_model_list_says_segmentation_and_its_codes(seg_client: httpx.AsyncClient) -> None:
    model = (await seg_client.get(f"/api/v1/models/{SEGMENTATION}")).json()
    assert (model["status"], model["kind"], model["task"]) == ("ready", "vision", "segmentation"), model
    assert (model["classes"], model["targets"]) == (CODES, [])
    assert model["input_schema"]["task"] == "segmentation" and model["input_schema"]["image_size"] == [32, 32]


async def test_predict_answers_a_mask_of_each_uploaded_images_size(seg_client: httpx.AsyncClient) -> None:
    files = [
        ("files", ("square.png", image_bytes(size=(32, 32), seed=1), "image/png")),
        ("files", ("wide.png", image_bytes(size=(48, 30), seed=2), "image/png")),
    ]
    answer = await seg_client.post(PREDICT, files=files)
    assert answer.status_code == 200, answer.text
    items = answer.json()["predictions"]
    assert [p["filename"] for p in items] == ["square.png", "wide.png"]
    for item, (width, height) in zip(items, [(32, 32), (48, 30)], strict=True):
        assert set(item) == {"id", "filename", "classes", "size", "class_fractions", "mask_png", "warnings"}
        assert item["classes"] == CODES and item["size"] == [height, width]
        mask = _mask_of(item["mask_png"])
        assert mask.mode == "P" and mask.size == (width, height)
        counts = np.bincount(np.asarray(mask).ravel(), minlength=len(CODES))
        assert len(counts) == len(CODES)  # no index past the classes
        shares = [item["class_fractions"][c] for c in CODES]
        np.testing.assert_allclose(shares, counts / counts.sum(), atol=1e-9)
    assert items[0]["warnings"] == [] and "centre crop" in items[1]["warnings"][0]


async def test_accept_png_answers_one_images_mask_with_a_palette(seg_client: httpx.AsyncClient) -> None:
    pixels, _ = shapes(7, (40, 28))
    files = [("files", ("shapes.png", _png(pixels), "image/png"))]
    as_json = (await seg_client.post(PREDICT, files=files)).json()["predictions"][0]
    answer = await seg_client.post(PREDICT, files=files, headers={"accept": "image/png"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    mask = _mask_of(answer.content)
    assert mask.mode == "P" and mask.size == (40, 28)
    assert np.array_equal(np.asarray(mask), np.asarray(_mask_of(as_json["mask_png"])))
    colours = mask.getpalette()
    assert colours is not None
    assert len({tuple(colours[3 * i : 3 * i + 3]) for i in range(len(CODES))}) == len(CODES)


async def test_accept_png_with_several_files_is_422_saying_one_file(seg_client: httpx.AsyncClient) -> None:
    files = [("files", (f"{i}.png", image_bytes(size=(32, 32), seed=i), "image/png")) for i in range(2)]
    answer = await seg_client.post(PREDICT, files=files, headers={"accept": "image/png"})
    assert problem(answer, 422)["detail"] == MSG_MASK_PNG_ONE_FILE.format(count=2)


async def test_an_image_over_the_pixel_limit_is_413(seg_client: httpx.AsyncClient) -> None:
    files = [("files", ("big.png", image_bytes(size=(80, 80)), "image/png"))]
    assert "big.png" in problem(await seg_client.post(PREDICT, files=files), 413)["detail"]


async def test_evaluate_scores_pixels_iou_and_dice_as_computed_directly(
    seg_client: httpx.AsyncClient,
) -> None:
    parts, truths = _labelled((32, 32), (40, 28), (28, 40))
    answer = await seg_client.post(EVALUATE, files=parts)
    assert answer.status_code == 200, answer.text
    scores = answer.json()
    predicted = await seg_client.post(PREDICT, files=[p for p in parts if p[0] == "files"])
    masks = [np.asarray(_mask_of(p["mask_png"])) for p in predicted.json()["predictions"]]
    truth, guess = np.concatenate([t.ravel() for t in truths]), np.concatenate([m.ravel() for m in masks])
    assert scores["n"] == 3
    assert scores["pixel_accuracy"] == pytest.approx(float((truth == guess).mean()))
    iou, dice = {}, {}
    for index, code in enumerate(CODES):
        hit = int(((truth == index) & (guess == index)).sum())
        said, real = int((guess == index).sum()), int((truth == index).sum())
        if said + real:
            iou[code] = hit / (said + real - hit)
            dice[code] = 2 * hit / (said + real)
    assert set(scores["iou"]) == {*iou, "mean"}
    for code in iou:
        assert scores["iou"][code] == pytest.approx(iou[code])
        assert scores["dice"][code] == pytest.approx(dice[code])
    assert scores["iou"]["mean"] == pytest.approx(float(np.mean(list(iou.values()))))


async def test_evaluate_refuses_a_mask_of_the_wrong_size_naming_the_file(
    seg_client: httpx.AsyncClient,
) -> None:
    parts, _ = _labelled((32, 32), (40, 28))
    parts[3] = ("masks", ("mask1.png", _png(np.zeros((40, 28), dtype=np.uint8)), "image/png"))
    body = problem(await seg_client.post(EVALUATE, files=parts), 422)
    assert "'mask1.png'" in body["detail"] and "'img1.png'" in body["detail"]
    assert body["errors"][0]["loc"] == ["masks", "mask1.png"]


async def test_evaluate_refuses_a_class_index_out_of_range(seg_client: httpx.AsyncClient) -> None:
    parts, truths = _labelled((32, 32))
    bad = truths[0].copy()
    bad[0, 0] = 7
    parts[1] = ("masks", ("mask0.png", _png(bad), "image/png"))
    detail = problem(await seg_client.post(EVALUATE, files=parts), 422)["detail"]
    assert "'mask0.png'" in detail and "[7]" in detail


async def test_evaluate_refuses_labels_an_rgb_mask_or_a_missing_mask(seg_client: httpx.AsyncClient) -> None:
    parts, _ = _labelled((32, 32))
    files_only = [p for p in parts if p[0] == "files"]
    labels = await seg_client.post(EVALUATE, files=files_only, data={"labels": ["square"]})
    assert "masks" in problem(labels, 422)["detail"]
    rgb = [parts[0], ("masks", ("rgb.png", image_bytes(size=(32, 32)), "image/png"))]
    assert "one channel" in problem(await seg_client.post(EVALUATE, files=rgb), 422)["detail"]
    two_files = [*files_only, ("files", ("b.png", image_bytes(size=(32, 32)), "image/png")), parts[1]]
    detail = problem(await seg_client.post(EVALUATE, files=two_files), 422)["detail"]
    assert detail == MSG_EVAL_MASK_COUNT.format(files=2, masks=1)


# -- the Open Inference Protocol --------------------------------------------------------------------------
def _infer_body(*sizes: tuple[int, int]) -> dict[str, Any]:
    data = [base64.b64encode(image_bytes(size=s, seed=i)).decode() for i, s in enumerate(sizes)]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(sizes)], "data": data}]}


async def test_v2_answers_a_uint8_mask_tensor_with_the_classes(seg_client: httpx.AsyncClient) -> None:
    meta = (await seg_client.get(f"/v2/models/{SEGMENTATION}")).json()
    [output] = meta["outputs"]
    assert (output["name"], output["datatype"], output["parameters"]["classes"]) == ("mask", "UINT8", CODES)
    answer = await seg_client.post(f"/v2/models/{SEGMENTATION}/infer", json=_infer_body((40, 28), (40, 28)))
    assert answer.status_code == 200, answer.text
    [tensor] = answer.json()["outputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("mask", "UINT8", [2, 28, 40])
    assert tensor["parameters"]["classes"] == CODES
    v1 = await seg_client.post(
        PREDICT, files=[("files", ("a.png", image_bytes(size=(40, 28), seed=0), "image/png"))]
    )
    first = np.array(tensor["data"]).reshape(2, 28, 40)[0]
    assert np.array_equal(first, np.asarray(_mask_of(v1.json()["predictions"][0]["mask_png"])))


async def test_v2_images_of_different_sizes_are_400_saying_so(seg_client: httpx.AsyncClient) -> None:
    answer = await seg_client.post(f"/v2/models/{SEGMENTATION}/infer", json=_infer_body((32, 32), (40, 28)))
    assert answer.status_code == 400
    assert "share a size" in answer.json()["error"] and "40x28" in answer.json()["error"]


async def test_a_segmentation_model_at_the_tabular_path_is_404_naming_the_vision_path(
    seg_client: httpx.AsyncClient,
) -> None:
    answer = await seg_client.post(f"/api/v1/tabular/{SEGMENTATION}/predict", json={"rows": [{"a": 1}]})
    assert f"/api/v1/vision/{SEGMENTATION}/predict" in problem(answer, 404)["detail"]
