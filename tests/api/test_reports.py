"""Reports written by `fastai-serve train`, their plots, and evaluation on labelled uploads over HTTP."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from service.errors import (
    MSG_ARCHIVE_NO_CLASS_FOLDERS,
    MSG_EVAL_BOTH,
    MSG_EVAL_LABEL_COUNT,
    MSG_EVAL_NO_TARGET,
    MSG_EVAL_NOTHING,
    MSG_NO_REPORT,
)
from service.training import data
from tests.helpers import TABULAR, VISION, client_for, clone_store, image_bytes, problem

CLASSES_DIR = data.demo_cifar_folder() / "test"


@pytest.fixture(scope="module")
async def eval_client(trained_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(trained_store, max_files=16, max_archive_mb=1.0, max_eval_files=40):
        yield c


# --- reports -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TABULAR, VISION])
async def test_report_has_history_test_metrics_and_plots(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/api/v1/models/{name}/report")
    assert response.status_code == 200, response.text
    report = response.json()
    epochs = 2 if name == TABULAR else 1
    assert [row["epoch"] for row in report["history"]] == list(range(epochs))
    assert {"train_loss", "valid_loss", "accuracy", "precision_score", "recall_score"} <= set(
        report["history"][0]
    )
    assert report["seed"] == 42 and report["stopped_early"] is False and report["best_epoch"] is not None
    assert report["train_seconds"] > 0 and report["augmented"] is False
    assert report["datablock_summary"]
    test = report["test"]
    assert test["n"] == (600 if name == TABULAR else 120)
    assert sum(map(sum, test["confusion_matrix"]["matrix"])) == test["n"]
    assert set(report["artifacts"]) == {"loss_curve", "confusion_matrix", "top_losses"}
    for url in report["artifacts"].values():
        image = await client.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as png:
            assert png.format == "PNG" and png.size[0] > 100
    if name == TABULAR:
        rows = report["top_losses_rows"]
        assert len(rows) == 9 and rows == sorted(rows, key=lambda r: -r["loss"])


async def test_model_without_report_gives_404(trained_store: Path, tmp_path: Path) -> None:
    store = clone_store(trained_store, tmp_path / "store", [TABULAR])
    shutil.rmtree(store / TABULAR / "report")
    async for c in client_for(store):
        body = problem(await c.get(f"/api/v1/models/{TABULAR}/report"), 404)
        assert body["detail"] == MSG_NO_REPORT.format(name=TABULAR)
        problem(await c.get(f"/api/v1/models/{TABULAR}/report/loss_curve.png"), 404)


@pytest.mark.parametrize("path", ["secret.png", "..%2Fmodel.png", "report.png", "loss_curve.jpg"])
async def test_unknown_artifacts_give_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"/api/v1/models/{TABULAR}/report/{path}")
    assert response.status_code == 404


async def test_report_of_unknown_model_gives_404(client: httpx.AsyncClient) -> None:
    problem(await client.get("/api/v1/models/nope/report"), 404)


async def test_compare_lists_both_models_test_metrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/reports/compare", params={"models": [TABULAR, VISION]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["models"] == [TABULAR, VISION]
    assert [t["n"] for t in body["test"]] == [600, 120]


# --- evaluation equals scikit-learn on the served predictions --------------------------------------------


def _sklearn(actual: list[str], predicted: list[str], classes: list[str]) -> dict[str, Any]:
    present = sorted(set(actual) | set(predicted))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, labels=present, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(actual, predicted, average="macro", zero_division=0)
    return {
        "accuracy": accuracy_score(actual, predicted),
        "precision": {**dict(zip(present, p, strict=True)), "macro": mp},
        "recall": {**dict(zip(present, r, strict=True)), "macro": mr},
        "f1": {**dict(zip(present, f, strict=True)), "macro": mf},
        "matrix": confusion_matrix(actual, predicted, labels=classes).tolist(),
    }


def _assert_equals_sklearn(evaluation: dict[str, Any], expected: dict[str, Any]) -> None:
    assert evaluation["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    for key in ("precision", "recall", "f1"):
        assert evaluation[key].keys() == expected[key].keys()
        for cls, value in expected[key].items():
            assert evaluation[key][cls] == pytest.approx(value, abs=1e-12), (key, cls)
    assert evaluation["confusion_matrix"]["matrix"] == expected["matrix"]


async def test_tabular_evaluate_equals_sklearn(
    eval_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    csv = adult_frame.iloc[:300].to_csv(index=False)
    response = await eval_client.post(f"/api/v1/tabular/{TABULAR}/evaluate", files={"file": ("t.csv", csv)})
    assert response.status_code == 200, response.text
    evaluation = response.json()
    predicted = await eval_client.post(
        f"/api/v1/tabular/{TABULAR}/predict/csv", files={"file": ("t.csv", csv)}
    )
    labels = [p["label"] for p in predicted.json()["predictions"]]
    classes = evaluation["confusion_matrix"]["labels"]
    assert evaluation["n"] == 300
    _assert_equals_sklearn(evaluation, _sklearn(adult_frame["Salary"].iloc[:300].tolist(), labels, classes))
    pairs = evaluation["most_confused"]
    assert pairs == sorted(pairs, key=lambda p: -p[2]) and all(a != p for a, p, _ in pairs)


def _cifar_files(per_class: int) -> list[Path]:
    return [f for d in sorted(CLASSES_DIR.iterdir()) for f in sorted(d.glob("*.jpg"))[:per_class]]


async def test_vision_evaluate_files_and_zip_equal_sklearn(eval_client: httpx.AsyncClient) -> None:
    files = _cifar_files(1)  # 10 images, one per class
    by_files = await eval_client.post(
        f"/api/v1/vision/{VISION}/evaluate",
        files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files],
        data={"labels": [f.parent.name for f in files]},
    )
    assert by_files.status_code == 200, by_files.text
    predicted = await eval_client.post(
        f"/api/v1/vision/{VISION}/predict", files=[("files", (f.name, f.read_bytes())) for f in files]
    )
    labels = [p["label"] for p in predicted.json()["predictions"]]
    evaluation = by_files.json()
    classes = evaluation["confusion_matrix"]["labels"]
    _assert_equals_sklearn(evaluation, _sklearn([f.parent.name for f in files], labels, classes))

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.writestr(f"test/{f.parent.name}/{f.name}", f.read_bytes())
        zf.writestr("__MACOSX/._junk", b"x")
    by_zip = await eval_client.post(
        f"/api/v1/vision/{VISION}/evaluate",
        files={"archive": ("t.zip", archive.getvalue(), "application/zip")},
    )
    assert by_zip.status_code == 200, by_zip.text
    assert by_zip.json() == evaluation


# --- bad evaluation input: each says what is wrong ------------------------------------------------------


async def test_tabular_evaluate_without_target_column(
    eval_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    csv = adult_frame.drop(columns=["Salary"]).iloc[:5].to_csv(index=False)
    body = problem(
        await eval_client.post(f"/api/v1/tabular/{TABULAR}/evaluate", files={"file": ("t.csv", csv)}), 422
    )
    assert body["detail"] == MSG_EVAL_NO_TARGET.format(filename="t.csv", target="Salary")


async def test_tabular_evaluate_unknown_and_missing_labels(
    eval_client: httpx.AsyncClient, adult_frame: pd.DataFrame
) -> None:
    frame = adult_frame.iloc[:5].copy()
    frame.loc[frame.index[1], "Salary"] = "rich"
    body = problem(
        await eval_client.post(
            f"/api/v1/tabular/{TABULAR}/evaluate", files={"file": ("t.csv", frame.to_csv(index=False))}
        ),
        422,
    )
    assert "'rich'" in body["detail"] and body["errors"][0]["loc"] == ["rows", 1]
    frame.loc[frame.index[1], "Salary"] = np.nan
    body = problem(
        await eval_client.post(
            f"/api/v1/tabular/{TABULAR}/evaluate", files={"file": ("t.csv", frame.to_csv(index=False))}
        ),
        422,
    )
    assert body["errors"][0]["loc"] == ["rows", 1, "Salary"]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


JPEG = image_bytes(fmt="JPEG")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "detail"),
    [
        (
            {"files": [("files", ("a.jpg", JPEG)), ("files", ("b.jpg", JPEG))], "data": {"labels": ["cat"]}},
            422,
            MSG_EVAL_LABEL_COUNT.format(files=2, labels=1),
        ),
        ({"files": [("files", ("a.jpg", JPEG))], "data": {"labels": ["unicorn"]}}, 422, "unicorn"),
        ({"files": [("files", ("a.jpg", JPEG))], "data": {"labels": ["cat"]}}, 200, None),
        ({"files": [("files", ("a.txt", b"hello"))], "data": {"labels": ["cat"]}}, 415, "a.txt"),
        (
            {"files": {"archive": ("z.zip", _zip({"a.jpg": JPEG, "b.jpg": JPEG}))}},
            422,
            MSG_ARCHIVE_NO_CLASS_FOLDERS.format(filename="z.zip"),
        ),
        ({"files": {"archive": ("z.zip", _zip({"../../etc/cat/a.jpg": JPEG}))}}, 422, "unsafe path"),
        ({"files": {"archive": ("z.zip", _zip({"/abs/cat/a.jpg": JPEG}))}}, 422, "unsafe path"),
        ({"files": {"archive": ("z.zip", _zip({"unicorn/a.jpg": JPEG}))}}, 422, "unicorn"),
        ({"files": {"archive": ("z.zip", _zip({"cat/a.txt": b"not an image"}))}}, 415, "cat/a.txt"),
        ({"files": {"archive": ("z.zip", b"PK\x03\x04 not really a zip")}}, 400, "not a readable zip"),
        (
            {"files": {"archive": ("z.zip", _zip({"cat/big.bin": bytes(2 * 2**20)}))}},
            413,
            "unpacks to more than",
        ),
        ({"files": {"archive": ("z.zip", _zip({f"cat/{i}.jpg": JPEG for i in range(41)}))}}, 413, "41 files"),
        (
            {
                "files": {"archive": ("z.zip", _zip({"cat/a.jpg": JPEG})), "files": ("a.jpg", JPEG)},
                "data": {"labels": ["cat"]},
            },
            422,
            MSG_EVAL_BOTH,
        ),
        ({"data": {"labels": ["cat"]}}, 422, MSG_EVAL_NOTHING),
    ],
)
async def test_vision_evaluate_bad_input(
    eval_client: httpx.AsyncClient, request_kwargs: dict[str, Any], status: int, detail: str | None
) -> None:
    response = await eval_client.post(f"/api/v1/vision/{VISION}/evaluate", **request_kwargs)
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.json()["n"] == 1
        return
    body = problem(response, status)
    assert detail is not None and detail in body["detail"]


async def test_evaluate_on_the_wrong_kind_gives_404(eval_client: httpx.AsyncClient) -> None:
    problem(await eval_client.post(f"/api/v1/vision/{TABULAR}/evaluate", data={"labels": ["x"]}), 404)
