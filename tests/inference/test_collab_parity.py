"""Collab learners are served the learner's way: ratings equal fastai's own `get_preds(dl=test_dl(...))` for
known pairs (≤ 1e-4) on torch and on ONNX Runtime, for both `EmbeddingDotBias` and `EmbeddingNN`; unknown
users or items never reach the model; `recommend` ranks exactly what predicting every pair gives; `similar`
is the cosine similarity of the learner's item embeddings; items.csv gives titles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.errors import MSG_COLLAB_EXCLUDE_UNKNOWN, LoadError, NotFound
from service.inference.collab import CollabPredictor
from service.inference.kinds import build_predictor, predictor_for, recognise
from service.inference.runtime import RuntimeOptions, RuntimeSetting, select_runtime
from service.inference.tasks import Task
from service.loading import load_exported_learner
from tests.tiny_collab import COLLAB_DOT, COLLAB_MODELS, COLLAB_NN, ratings, title_of

TOLERANCE = 1e-4
TEXT_USERS = {COLLAB_DOT: False, COLLAB_NN: True}


def _learner(store: Path, name: str) -> Any:
    return load_exported_learner(store / name / "model.pkl").learn


def _predictor(store: Path, name: str) -> CollabPredictor:
    predictor = predictor_for(_learner(store, name))
    assert isinstance(predictor, CollabPredictor)
    return predictor


def _pairs(name: str, n: int = 200) -> pd.DataFrame:
    """Pairs the learner knows both ids of (its training data), and new combinations of them."""
    frame = ratings(text_users=TEXT_USERS[name])
    pairs = frame.iloc[:, :2].copy()
    mixed = pairs.iloc[: n // 2].copy()
    mixed.iloc[:, 1] = pairs.iloc[::-1, 1].to_numpy()[: n // 2]
    return pd.concat([pairs.iloc[: n // 2], mixed], ignore_index=True)


def _fastai(learn: Any, pairs: pd.DataFrame) -> np.ndarray:
    with learn.no_bar():
        outputs, _ = learn.get_preds(dl=learn.dls.test_dl(pairs, num_workers=0))
    return np.asarray(outputs.numpy()).reshape(-1)


def _ratings(predictor: CollabPredictor, pairs: pd.DataFrame) -> np.ndarray:
    predictions = predictor.predict(list(pairs.itertuples(index=False, name=None)))
    return np.array([np.nan if p.rating is None else p.rating for p in predictions])  # type: ignore[union-attr]


@pytest.mark.parametrize("name", COLLAB_MODELS)
def test_ratings_equal_fastai_on_both_runtimes(name: str, collab_store: Path, tmp_path: Path) -> None:
    learn = _learner(collab_store, name)
    assert str(recognise(learn)) == "collab rating"
    predictor = predictor_for(learn)
    assert isinstance(predictor, CollabPredictor) and predictor.head.task is Task.RATING
    pairs = _pairs(name)
    reference = _fastai(learn, pairs)
    for runtime in ("torch", "onnx"):
        if runtime == "onnx":
            options = RuntimeOptions(RuntimeSetting.ONNX, tmp_path / "onnx")
            assert select_runtime(predictor, options, sha256=None).name == "onnx"
        assert predictor.runtime.name == runtime
        got = _ratings(predictor, pairs)
        np.testing.assert_allclose(got, reference, atol=TOLERANCE, rtol=0)
        low, high = predictor.input_schema()["rating_range"]
        assert ((got > low) & (got < high)).all()


@pytest.mark.parametrize("name", COLLAB_MODELS)
def test_unknown_users_and_items_rate_none_with_a_warning_never_the_na_embedding(
    name: str, collab_store: Path
) -> None:
    predictor = _predictor(collab_store, name)
    user, item = predictor.users.ids[1], predictor.items.ids[2]
    pairs = [
        (user, item),
        ("nobody", item),
        (user, "nothing"),
        ("#na#", item),
        (user, "#na#"),
        (str(user), item),
    ]
    predictions = predictor.predict(pairs)
    alone = predictor.predict([(user, item)])[0].rating  # type: ignore[union-attr]
    ratings_ = [p.rating for p in predictions]  # type: ignore[union-attr]
    assert ratings_[0] == pytest.approx(alone, abs=1e-6) and ratings_[-1] == ratings_[0]  # "7" names user 7
    assert ratings_[1:5] == [None, None, None, None]
    assert predictions[1].warnings == [
        f"user 'nobody' is not one the learner knows ({predictor.users.column}); no rating"
    ]
    assert "'nothing'" in predictions[2].warnings[0] and predictions[2].warnings[0].startswith("item")
    assert predictions[0].warnings == [] and predictions[-1].warnings == []
    # fastai itself rates an unknown user with the untrained #na# embedding: a number, not None (two rows:
    # fastai's own get_preds cannot take one pair of an EmbeddingDotBias, whose forward squeezes it away).
    learn = _learner(collab_store, name)
    stranger = "nobody" if TEXT_USERS[name] else 10**6
    unknown = pd.DataFrame(
        [[stranger, item], [stranger, item]], columns=[predictor.users.column, predictor.items.column]
    )
    assert np.isfinite(_fastai(learn, unknown)).all()


@pytest.mark.parametrize("name", COLLAB_MODELS)
def test_recommend_ranks_exactly_what_predicting_every_pair_gives(name: str, collab_store: Path) -> None:
    predictor = _predictor(collab_store, name)
    # Each variant ranks by its own shortcut, not full forwards: the dot product on matrices copied at load,
    # EmbeddingNN with its first Linear's item half computed at load (what this test holds to the pairs').
    assert (predictor._dot is not None) == (name == COLLAB_DOT)
    assert (predictor._split is not None) == (name == COLLAB_NN)
    user = predictor.users.ids[3]
    every = predictor.items.ids[1:]
    expected = _ratings(predictor, pd.DataFrame({"u": [user] * len(every), "i": every}))
    ranked = predictor.recommend(user, count=len(every) + 5)
    assert sorted(r.item for r in ranked) == sorted(every)  # every known item once, never #na#
    by_item = dict(zip(every, expected, strict=True))
    np.testing.assert_allclose([r.score for r in ranked], [by_item[r.item] for r in ranked], atol=TOLERANCE)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    top = predictor.recommend(user, count=5)
    assert [r.item for r in top] == [r.item for r in ranked[:5]]
    assert np.sort(expected)[::-1][:5] == pytest.approx([r.score for r in top], abs=TOLERANCE)


def test_recommend_leaves_excluded_items_out_and_warns_of_unknown_ones(collab_store: Path) -> None:
    predictor = _predictor(collab_store, COLLAB_DOT)
    user = predictor.users.ids[1]
    best = predictor.recommend(user, count=3)
    excluded = [best[0].item, best[2].item]
    prepared = predictor.prepare_recommend(user, count=3, exclude=[*excluded, "m999"])
    again = predictor.recommended(prepared, predictor.forward_many([prepared])[0])
    assert [r.item for r in again][:1] == [best[1].item]
    assert not {r.item for r in again} & set(excluded) and len(again) == 3
    assert prepared.notes == [MSG_COLLAB_EXCLUDE_UNKNOWN.format(value="m999")]
    everything = predictor.recommend(user, count=1000, exclude=excluded)
    assert len(everything) == predictor.items.count - 2


@pytest.mark.parametrize("name", COLLAB_MODELS)
def test_similar_is_the_cosine_of_the_learners_item_embeddings(name: str, collab_store: Path) -> None:
    learn = _learner(collab_store, name)
    predictor = predictor_for(learn)
    assert isinstance(predictor, CollabPredictor)
    items = predictor.items.ids[1:]
    if name == COLLAB_DOT:
        vectors = learn.model.weight([str(i) for i in items], is_item=True).numpy()
    else:
        vectors = learn.model.embeds[1].weight.detach().numpy()[1:]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    target = 4
    cosine = unit @ unit[target]
    found, similar = predictor.similar(str(items[target]), count=len(items))
    assert found == items[target]
    assert [s.item for s in similar] == [items[j] for j in np.argsort(-cosine, kind="stable") if j != target]
    np.testing.assert_allclose(
        [s.score for s in similar], [cosine[items.index(s.item)] for s in similar], atol=1e-5
    )


def test_unknown_user_or_item_cannot_be_ranked(collab_store: Path) -> None:
    predictor = _predictor(collab_store, COLLAB_NN)
    with pytest.raises(NotFound, match="user 'stranger' is not one the learner knows"):
        predictor.prepare_recommend("stranger", count=5)
    with pytest.raises(NotFound, match="item 'u1' is not one the learner knows"):
        predictor.similar("u1", count=5)  # a user id, not an item


def test_items_csv_gives_titles_and_a_broken_one_fails_the_load(collab_store: Path, tmp_path: Path) -> None:
    learn = _learner(collab_store, COLLAB_DOT)
    served = build_predictor(recognise(learn), learn, folder=collab_store / COLLAB_DOT)
    assert isinstance(served, CollabPredictor)
    assert len(served.titles) == served.items.count  # every known item; m999 (never rated) ignored
    item = served.items.ids[1]
    [prediction] = served.predict([(served.users.ids[1], item)])
    assert prediction.title == title_of(str(item))  # type: ignore[union-attr]
    assert all(r.title == title_of(str(r.item)) for r in served.recommend(served.users.ids[1], count=3))
    assert served.input_schema()["item"]["titles"] == served.items.count
    (tmp_path / "items.csv").write_text("movieId,name\nm1,One\n")
    with pytest.raises(LoadError, match="no `title` column"):
        build_predictor(recognise(learn), learn, folder=tmp_path)
