"""`fastai-serve train segmentation`: shapes generated the same from a seed, a plain `unet_learner` export the
server recognises, per-class IoU on held-out images, overlays, the seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.cli import main
from service.inference.kinds import recognise
from service.inference.predictor import ModelKind
from service.inference.tasks import Task
from service.loading import load_exported_learner
from service.reports.store import read_report
from service.training import shapes
from service.training.common import TrainResult
from service.training.segmentation import MaskScores, train_segmentation
from tests.helpers import client_for
from tests.training.conftest import segmentation_recipe


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_the_shapes_are_the_same_for_a_seed_and_differ_for_another(tmp_path: Path) -> None:
    first = shapes.write_shapes(tmp_path / "a", n=6, size=32, seed=3)
    second = shapes.write_shapes(tmp_path / "b", n=6, size=32, seed=3)
    other = shapes.write_shapes(tmp_path / "c", n=6, size=32, seed=4)
    assert _bytes(first) == _bytes(second)
    assert _bytes(first) != _bytes(other)
    assert len(_bytes(first)) == 12


def test_each_mask_marks_the_shapes_drawn_on_its_image() -> None:
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for _ in range(30):
        image, mask = shapes.draw(rng, 48)
        pixels, codes = np.asarray(image), np.asarray(mask)
        assert pixels.shape == (48, 48, 3) and codes.shape == (48, 48)
        assert set(np.unique(codes)) <= set(range(len(shapes.CODES)))
        assert (codes > 0).any()  # at least one shape
        seen |= set(np.unique(codes).tolist())
    assert seen == set(range(len(shapes.CODES)))  # every class turns up


def test_a_mask_is_found_beside_its_image(tmp_path: Path) -> None:
    folder = shapes.write_shapes(tmp_path / "s", n=2, size=16, seed=0)
    image = folder / shapes.IMAGES / "00001.png"
    assert shapes.mask_of(image) == folder / shapes.MASKS / "00001.png"
    with Image.open(shapes.mask_of(image)) as mask:
        assert mask.mode == "L" and mask.size == (16, 16)


def test_the_export_is_a_unet_the_server_recognises(segmentation_model: TrainResult) -> None:
    learn = load_exported_learner(segmentation_model.learner_path).learn
    learner_type = recognise(learn)
    assert (learner_type.kind, learner_type.task) == (ModelKind.VISION, Task.SEGMENTATION)
    assert type(learn.model).__name__ == "DynamicUnet"
    manifest = json.loads((segmentation_model.learner_path.parent / "model.json").read_text())
    assert (manifest["kind"], manifest["task"]) == ("vision", "segmentation")
    assert manifest["classes"] == shapes.CODES


def test_the_report_has_per_class_iou_and_overlays(segmentation_model: TrainResult) -> None:
    folder = segmentation_model.learner_path.parent
    report = read_report(folder)
    assert report is not None and report["task"] == "segmentation"
    test = report["test"]
    assert set(test) == {"n", "pixel_accuracy", "iou", "dice"}
    assert test["n"] == 8  # 20% of 40 generated images
    assert "mean" in test["iou"] and "background" in test["iou"]
    present = [v for k, v in test["iou"].items() if k != "mean"]
    assert test["iou"]["mean"] == pytest.approx(float(np.mean(present)))
    assert set(report["artifacts"]) == {"loss_curve", "per_class_iou", "sample_overlays"}
    for name in report["artifacts"]:
        assert (folder / "report" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert "dice_multi" in report["history"][0]


def test_iou_dice_and_pixel_accuracy_are_counted_per_class() -> None:
    actual = np.array([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    predicted = np.array([[[0, 1, 1, 1], [0, 0, 1, 2]]])
    evaluation = MaskScores(predicted=predicted, actual=actual, codes=["bg", "a", "b", "c"]).evaluation()
    assert evaluation["pixel_accuracy"] == pytest.approx(6 / 8)
    assert evaluation["iou"]["bg"] == pytest.approx(3 / 4)
    assert evaluation["iou"]["a"] == pytest.approx(3 / 5)
    assert evaluation["iou"]["b"] == 0.0  # predicted, never true
    assert "c" not in evaluation["iou"]  # neither true nor predicted: no IoU, not in the mean
    assert evaluation["iou"]["mean"] == pytest.approx((3 / 4 + 3 / 5 + 0.0) / 3)
    assert evaluation["dice"]["a"] == pytest.approx(2 * 3 / (4 + 4))


def test_the_same_seed_trains_the_same_weights(segmentation_model: TrainResult, tmp_path: Path) -> None:
    again = train_segmentation(segmentation_recipe(tmp_path / "again"))
    assert again.metrics == segmentation_model.metrics
    first = load_exported_learner(segmentation_model.learner_path).learn.model.state_dict()
    second = load_exported_learner(again.learner_path).learn.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_cli_trains_on_a_folder_of_images_and_masks(tmp_path: Path) -> None:
    data = shapes.write_shapes(tmp_path / "data", n=24, size=32, seed=1)
    argv = ["train", "segmentation", "--data", str(data), "--size", "32", "--epochs", "1", "--bs", "4"]
    argv += ["--store", str(tmp_path / "store"), "--name", "mine", "--quiet"]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "store" / "mine" / "model.json").read_text())
    assert manifest["classes"] == shapes.CODES and manifest["metrics"]["test_items"] == 2.0


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastai-serve: error: "), err
    return lines[0]


def test_cli_refuses_a_folder_without_masks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    argv = ["train", "segmentation", "--data", str(tmp_path / "data"), "--store", str(tmp_path)]
    assert "has no images with masks" in _refused(capsys, argv)


def test_cli_refuses_an_unknown_architecture(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _refused(capsys, ["train", "segmentation", "--arch", "vgg99", "--store", str(tmp_path)])
    assert "unknown --arch 'vgg99'" in line and "small" in line


async def test_the_report_route_serves_the_segmentation_report(segmentation_model: TrainResult) -> None:
    folder = segmentation_model.learner_path.parent
    async for client in client_for(folder.parent):
        answer = await client.get(f"/api/v1/models/{folder.name}/report")
        assert answer.status_code == 200
        body = answer.json()
        assert body["test"]["iou"]["mean"] == read_report(folder)["test"]["iou"]["mean"]  # type: ignore[index]
        for name in ("per_class_iou", "sample_overlays"):
            plot = await client.get(body["artifacts"][name])
            assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
