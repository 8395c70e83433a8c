"""The bench's helpers for text, collab and segmentation models (issue #22, item 7): their inputs, requests,
store, naive-server routes and in-process rows, on the tiny real learners of the session fixtures. Timings
are run at a tiny fraction of their length and never asserted: only that each row is made, and right."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench import models, shapes, timing
from bench.cases import (
    RECOMMEND,
    RECOMMEND_NN,
    CollabCase,
    RecommendCase,
    TextCase,
    VisionCase,
    movielens_pairs,
    review_sentences,
    shapes_pngs,
)
from bench.http_rows import kind_ratios, recommend_request
from bench.load import Request, one_item, one_item_v2, wrk_script
from bench.report import kind_ratio_lines, recommend_lines
from tests.tiny_collab import COLLAB_DOT, COLLAB_NN, Y_RANGE
from tests.tiny_segmentation import CODES as SEG_CODES
from tests.tiny_segmentation import IMAGE_SIZE, SEGMENTATION
from tests.tiny_text import TEXT_CLS

TINY_TEXT = TextCase(TEXT_CLS, "text", texts=lambda n: ["It was a lovely film."] * n)
TINY_COLLAB = CollabCase(COLLAB_DOT, "collab", pairs=lambda n: [{"user": 1, "item": "m1"}] * n)
TINY_SEG = VisionCase(
    SEGMENTATION, "segmentation", images=shapes_pngs, kind="segmentation", image_type="image/png"
)


@pytest.fixture
def short_timings() -> Iterator[None]:
    """Every bench timing at a sliver of its length (as --quick does), restored after."""
    timing.shorten(0.01)
    yield
    timing.shorten(1.0)


# -- inputs ----------------------------------------------------------------------------------------------
def test_review_sentences_alternate_the_two_files_and_repeat() -> None:
    first = review_sentences(4)
    assert len(first) == 4 and all(isinstance(s, str) and s.strip() for s in first)
    assert first[0].startswith("the rock is destined")  # rt-polarity.pos's first line
    assert first[1].startswith("simplistic , silly")  # rt-polarity.neg's
    many = review_sentences(30_000)  # more than the ~10,662 sentences: repeated
    assert len(many) == 30_000 and many[:4] == first


def test_movielens_pairs_are_the_ratings_ids_in_file_order() -> None:
    pairs = movielens_pairs(3)
    assert pairs[0] == {"user": 1, "item": 1}
    assert all(isinstance(p["user"], int) and isinstance(p["item"], int) for p in pairs)
    assert len(movielens_pairs(200_000)) == 200_000


def test_shapes_are_deterministic_pngs_with_masks_in_the_codes(tmp_path: Path) -> None:
    assert shapes_pngs(3) == shapes_pngs(3)
    assert shapes_pngs(2) != [shapes.png(image) for image, _ in shapes.shape_pairs(2, seed=0)]
    image = Image.open(io.BytesIO(shapes_pngs(1)[0]))
    assert image.size == (shapes.SIZE, shapes.SIZE) and image.mode == "RGB"
    paths = shapes.write_shapes(tmp_path, 5, seed=3)
    assert [p.name for p in paths] == sorted(p.name for p in (tmp_path / shapes.MASKS).iterdir())
    masks = [np.asarray(Image.open(tmp_path / shapes.MASKS / p.name)) for p in paths]
    assert all(m.shape == (shapes.SIZE, shapes.SIZE) for m in masks)
    values = set(np.unique(np.concatenate([m.ravel() for m in masks])).tolist())
    assert 0 in values and len(values) > 1 and values <= set(range(len(shapes.CODES)))


# -- requests --------------------------------------------------------------------------------------------
def test_one_item_requests_of_the_new_kinds() -> None:
    text = one_item(TINY_TEXT)
    assert text.path == f"/api/v1/text/{TEXT_CLS}/predict" and text.json == {
        "texts": ["It was a lovely film."]
    }
    collab = one_item(TINY_COLLAB)
    assert collab.path == f"/api/v1/collab/{COLLAB_DOT}/predict"
    assert collab.json == {"pairs": [{"user": 1, "item": "m1"}]}
    seg = one_item(TINY_SEG)
    assert seg.path == f"/api/v1/vision/{SEGMENTATION}/predict"
    assert seg.files is not None and seg.files[0][1][0] == "image.png" and seg.files[0][1][2] == "image/png"


def _v2_inputs(request: Request) -> dict[str, bytes]:
    """The binary-extension body's inputs by name: their raw bytes after the JSON header."""
    assert request.content is not None
    length = int(request.headers["Inference-Header-Content-Length"])
    header, rest = json.loads(request.content[:length]), request.content[length:]
    out = {}
    for spec in header["inputs"]:
        size = spec["parameters"]["binary_data_size"]
        out[spec["name"]], rest = rest[:size], rest[size:]
    assert rest == b""
    return out


def test_v2_requests_of_text_and_collab_are_length_prefixed_bytes() -> None:
    text = _v2_inputs(one_item_v2(TINY_TEXT, one_item(TINY_TEXT)))
    raw = b"It was a lovely film."
    assert text == {"text": len(raw).to_bytes(4, "little") + raw}
    pair = _v2_inputs(one_item_v2(TINY_COLLAB, one_item(TINY_COLLAB)))
    assert pair == {"user": b"\x01\x00\x00\x001", "item": b"\x02\x00\x00\x00m1"}


def test_recommend_is_a_get_without_a_body() -> None:
    request = recommend_request(RECOMMEND)
    assert request.method == "GET" and request.path.endswith(f"/recommend?user=1&n={RECOMMEND.count}")
    assert request.httpx_kwargs() == {"headers": {}}
    script = wrk_script(request)
    assert 'wrk.method = "GET"' in script and "wrk.body" not in script
    post = wrk_script(one_item(TINY_TEXT))
    assert 'wrk.method = "POST"' in post and "wrk.body" in post


# -- results and the table -------------------------------------------------------------------------------
def test_kind_ratios_and_their_lines() -> None:
    def row(rps: float, p50: float) -> dict[str, float]:
        return {"requests_per_s": rps, "p50_ms": p50, "p99_ms": 2 * p50, "errors": 0}

    h = {
        "ours_text_c1": row(100, 10),
        "naive_text_c1": row(50, 20),
        "ours_text_c32": row(400, 80),
        "naive_text_c32": row(50, 600),
    }
    ratios = kind_ratios(h, (TINY_TEXT,))
    assert ratios == {"text": {"c32_requests_vs_naive": 8.0, "c1_naive_p50_over_ours": 2.0}}
    lines = kind_ratio_lines(ratios)
    assert "text" in lines[1] and "8.0x" in lines[1] and "2.0x" in lines[1]
    # A step that answered nothing (a slow first call in a --quick run) has no ratio, not a crash.
    h["ours_text_c1"] = row(0, 0)
    ratios = kind_ratios(h, (TINY_TEXT,))
    assert ratios["text"]["c1_naive_p50_over_ours"] is None
    assert "n/a" in kind_ratio_lines(ratios)[1]


def test_recommend_lines_without_and_with_http() -> None:
    ip = {
        RECOMMEND.key: {
            "items": 10_000,
            "count": 10,
            "calls": 50,
            "p50_ms": 3.0,
            "p99_ms": 5.0,
            "target_p50_ms": 20.0,
        }
    }
    assert recommend_lines({}, None) == []
    alone = recommend_lines(ip, None)
    assert len(alone) == 1 and "10,000 items" in alone[0] and "p50 3.00 ms" in alone[0]
    assert "EmbeddingDotBias" in alone[0]
    both = recommend_lines({**ip, RECOMMEND_NN.key: ip[RECOMMEND.key]}, None)
    assert len(both) == 2 and "EmbeddingNN" in both[1]
    h = {
        f"ours_{RECOMMEND.key}_c{c}": {"requests_per_s": 9.0, "p50_ms": 4.0, "p99_ms": 6.0, "errors": 0}
        for c in (1, 32)
    }
    assert len(recommend_lines(ip, h)) == 3


# -- the bench's store -----------------------------------------------------------------------------------
def _fake_model(folder: Path, description: str, *, titles: bool = False) -> None:
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(description.encode())
    (folder / "model.json").write_text(json.dumps({"description": description}))
    if titles:
        (folder / "items.csv").write_text("movieId,title\n1,Toy Story\n")


def test_a_demo_model_is_linked_when_the_demo_store_has_it_else_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo, store = tmp_path / "demo", tmp_path / "bench"
    _fake_model(demo / "movie-recommender", "the demo's", titles=True)
    built: list[str] = []

    def run(cmd: list[str], **kwargs: Any) -> None:  # the training subprocess: its model written as it would
        built.append(cmd[-2])
        _fake_model(Path(cmd[-1]), f"bench: {cmd[-2]}")

    monkeypatch.setattr(models.subprocess, "run", run)
    names = ["movie-recommender", "reviews-sentiment", "bench-recommender-10k"]
    models.bench_store(demo, names, store)
    assert built == ["reviews-sentiment", "bench-recommender-10k"]
    assert os.path.samefile(
        demo / "movie-recommender" / "model.pkl", store / "movie-recommender" / "model.pkl"
    )
    assert (store / "movie-recommender" / "items.csv").read_text().startswith("movieId,title")
    assert models.descriptions(store, names) == {
        "movie-recommender": "the demo's",
        "reviews-sentiment": "bench: reviews-sentiment",
        "bench-recommender-10k": "bench: bench-recommender-10k",
    }
    # The demo model appears later: it replaces the bench's stand-in; the bench's own model stays.
    _fake_model(demo / "reviews-sentiment", "the demo's text model")
    models.bench_store(demo, names, store)
    assert built == ["reviews-sentiment", "bench-recommender-10k"]
    assert models.descriptions(store, names)["reviews-sentiment"] == "the demo's text model"


# -- the naive server ------------------------------------------------------------------------------------
@pytest.fixture
def naive_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text_store: Path, collab_store: Path, seg_store: Path
) -> Iterator[Any]:
    """bench/naive_server.py's app over the tiny text, collab and segmentation learners (one store)."""
    for store, name in ((text_store, TEXT_CLS), (collab_store, COLLAB_DOT), (seg_store, SEGMENTATION)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.pkl").symlink_to(store / name / "model.pkl")
    monkeypatch.setenv("FASTAI_SERVE_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv(
        "BENCH_NAIVE_MODELS", f"text:{TEXT_CLS},collab:{COLLAB_DOT},segmentation:{SEGMENTATION}"
    )
    sys.modules.pop("bench.naive_server", None)  # it loads its models on import
    yield importlib.import_module("bench.naive_server").app
    sys.modules.pop("bench.naive_server", None)


async def test_naive_server_predicts_a_text_a_pair_and_a_mask(naive_app: Any) -> None:
    transport = httpx.ASGITransport(app=naive_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://naive") as client:
        request = one_item(TINY_TEXT)
        r = await client.post(request.path, json=request.json)
        assert r.status_code == 200, r.text
        [text] = r.json()["predictions"]
        assert text["label"] in {"pos", "neg"} and sum(text["probabilities"].values()) == pytest.approx(1.0)

        request = one_item(TINY_COLLAB)
        r = await client.post(
            request.path, json={"pairs": [{"user": 1, "item": "m1"}, {"user": 2, "item": "m3"}]}
        )
        assert r.status_code == 200, r.text
        ratings = [p["rating"] for p in r.json()["predictions"]]
        assert len(ratings) == 2 and all(Y_RANGE[0] <= x <= Y_RANGE[1] for x in ratings)

        request = one_item(TINY_SEG)
        r = await client.post(request.path, files=request.files)
        assert r.status_code == 200, r.text
        [seg] = r.json()["predictions"]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(seg["mask_png"]))))
        assert mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and mask.max() < len(SEG_CODES)

        r = await client.post(f"/api/v1/text/{COLLAB_DOT}/predict", json={"texts": ["a"]})
        assert r.status_code == 404  # a model of another kind is not a text model


# -- in-process rows -------------------------------------------------------------------------------------
def test_in_process_rows_of_text_collab_and_recommend(
    short_timings: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text_store: Path,
    collab_store: Path,
) -> None:
    """The text and collab rows and recommend's (a segmentation case takes the vision row, as the other
    image models do). On torch: which runtime serves is not what these rows are tested for."""
    import torch

    from bench.inprocess import PAIRS, TEXTS, in_process

    monkeypatch.setenv("FASTAI_SERVE_RUNTIME", "torch")
    for store, name in ((text_store, TEXT_CLS), (collab_store, COLLAB_DOT), (collab_store, COLLAB_NN)):
        (tmp_path / name).mkdir()
        for file in (store / name).iterdir():  # copies: items.csv is read inside the store only
            shutil.copy(file, tmp_path / name / file.name)
    recommends = (
        RecommendCase(COLLAB_DOT, "recommend_tiny", items=10, count=3, users=5),
        RecommendCase(COLLAB_NN, "recommend_tiny_nn", items=10, count=3, users=5, use_nn=True),
    )
    out = in_process(torch.device("cpu"), tmp_path, (TINY_TEXT, TINY_COLLAB), recommends)
    assert {"ours_ms", "learn_predict_ms", "speedup"} <= set(out["text_one_text"])
    assert out[f"text_{TEXTS}_texts"]["ours_vs_get_preds"] > 0
    assert {"ours_ms", "get_preds_one_row_ms", "speedup"} <= set(out["collab_one_pair"])
    assert out[f"collab_{PAIRS // 1000}k_pairs"]["ours_pairs_per_s"] > 0
    assert out[f"runtime_{COLLAB_DOT}"]["runtime"] == "torch"
    for key in ("recommend_tiny", "recommend_tiny_nn"):
        row = out[key]
        assert row["items"] == 40 and row["count"] == 3 and row["calls"] >= 20
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    with pytest.raises(ValueError, match="knows 40 items"):
        in_process(torch.device("cpu"), tmp_path, (), (RecommendCase(COLLAB_DOT, "too_many", items=10_000),))
