"""The bench's own store: the demo models linked in, and the models the bench trains itself when missing.

The task cases (a tabular regression, a vision multi-label model) are timed beside the demo classifier of the
same architecture, so each is built with exactly the demo recipe's network (`fastai-serve train demo`, see
service/cli.py and service/training/): same columns, layers, dropout and weight decay for tabular; resnet18
from scratch on 32x32 images, the same item and batch transforms, head dropout and stem for vision. One
epoch, offline, from the repo's data: a model's speed does not depend on its accuracy.

The kinds of issue #22 are timed on the demo models (`reviews-sentiment`, `movie-recommender`,
`shapes-segmentation`) when the demo store has them, linked like the demo classifiers; until then the bench
builds a stand-in of the same kind under the same name (DEMO_OR_BUILT): a small AWD_LSTM text classifier
(from scratch) on the rt-polarity sentences, collab_learner (50 factors) on the MovieLens ratings with its
titles, a unet_learner with a small encoder on generated shapes. `bench-recommender-10k` is always the
bench's: a collab_learner over 10,000 synthetic item ids, for the `recommend` latency.

The server reads one store (FASTAI_SERVE_MODEL_STORE) and refuses symlinks that leave it, so the demo
models' files are hard-linked into the bench's store (copied where a link cannot be made).

`python -m bench.models NAME FOLDER` builds one into FOLDER/model.pkl; the bench runs it in a subprocess,
so that training leaves nothing behind (threads, RNG, memory) in the process that times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import CACHE, ROOT

if TYPE_CHECKING:
    from bench.cases import RecommendCase

STORE = CACHE / "bench" / "store"
SEED = 42
# The demo models' files that the bench's store needs (the learner, and its manifest with its sha256).
LINKED_FILES = ("model.pkl", "model.json", "items.csv")


# -- the models ----------------------------------------------------------------------------------------
def adult_hours(folder: Path) -> str:
    """tabular_learner predicting `hours-per-week` (a RegressionBlock) from the demo's other columns, with
    the demo's procs, layers [200, 100], ps 0.2 and wd 0.1."""
    from fastai.tabular.all import (
        Categorify,
        FillMissing,
        Normalize,
        RegressionBlock,
        TabularDataLoaders,
        tabular_config,
        tabular_learner,
    )

    from service.training import data
    from service.training.tabular import read_table, split_indices

    target = "hours-per-week"
    frame = read_table(data.demo_adult_csv())
    frame[target] = frame[target].astype("float32")
    _, valid_idx = split_indices(len(frame), pct=0.2, seed=SEED + 1)
    _seed()
    dls = TabularDataLoaders.from_df(
        frame,
        path=folder,
        procs=[Categorify, FillMissing, Normalize],
        cat_names=list(data.DEMO_ADULT_CATEGORICAL),
        cont_names=[c for c in data.DEMO_ADULT_CONTINUOUS if c != target],
        y_names=target,
        y_block=RegressionBlock(),
        valid_idx=list(valid_idx),
        bs=1024,
        num_workers=0,
    )
    learn = tabular_learner(dls, layers=[200, 100], config=tabular_config(ps=0.2), wd=0.1)
    _fit(learn, folder)
    return f"bench: tabular_learner on adult.csv predicting {target} (regression, 1 epoch)"


# The multi-label targets: each image's class, plus `vehicle` for the vehicles.
VEHICLES = frozenset({"airplane", "automobile", "ship", "truck"})


def cifar_tags(folder: Path) -> str:
    """vision_learner(resnet18) with a MultiCategoryBlock on the CIFAR-10 sample: the demo's size (32),
    item transforms (Resize, FlipItem), CIFAR normalisation, head dropout 0.25, from scratch."""
    import pandas as pd
    from fastai.data.transforms import ColReader, RandomSplitter, get_image_files
    from fastai.vision.all import (
        DataBlock,
        FlipItem,
        ImageBlock,
        MultiCategoryBlock,
        Normalize,
        Resize,
        vision_learner,
    )

    from service.training import data
    from service.training.vision import CIFAR_STATS, resolve_arch

    files = sorted(get_image_files(data.demo_cifar_folder() / "train"))
    tags = [" ".join([f.parent.name, *(["vehicle"] if f.parent.name in VEHICLES else [])]) for f in files]
    items = pd.DataFrame({"file": [str(f) for f in files], "tags": tags})
    # fastai's own readers (no function of ours in the exported file: any process can load it).
    block = DataBlock(
        blocks=(ImageBlock, MultiCategoryBlock),
        get_x=ColReader("file"),
        get_y=ColReader("tags", label_delim=" "),
        splitter=RandomSplitter(valid_pct=0.05, seed=SEED),
        item_tfms=[Resize(32), FlipItem(0.5)],
        batch_tfms=[Normalize.from_stats(*CIFAR_STATS)],
    )
    _seed()
    dls = block.dataloaders(items, bs=128, num_workers=0, path=folder)
    learn = vision_learner(dls, resolve_arch("resnet18"), pretrained=False, normalize=False, ps=0.25)
    learn.unfreeze()
    _fit(learn, folder)
    return "bench: vision_learner(resnet18) on cifar10_sample, multi-label (class + vehicle), 1 epoch"


# The small AWD_LSTM of the first try (100-wide embeddings, 256 hidden, 2 layers), from scratch.
TEXT_CONFIG = {"emb_sz": 100, "n_hid": 256, "n_layers": 2}


def reviews_sentiment(folder: Path) -> str:
    """text_classifier_learner(AWD_LSTM, small config, pretrained=False) on the rt-polarity sentences."""
    import pandas as pd
    from fastai.text.all import AWD_LSTM, TextDataLoaders, awd_lstm_clas_config, text_classifier_learner

    from bench.cases import _sentences as sentences
    from bench.cases import review_sentences

    texts = review_sentences(len(sentences()))
    # _sentences alternates the files: positive first.
    frame = pd.DataFrame(
        {"text": texts, "label": ["pos" if i % 2 == 0 else "neg" for i in range(len(texts))]}
    )
    _seed()
    dls = TextDataLoaders.from_df(
        frame, path=folder, text_col="text", label_col="label", valid_pct=0.1, seed=SEED, bs=64
    )
    config = {**awd_lstm_clas_config, **TEXT_CONFIG}
    learn = text_classifier_learner(dls, AWD_LSTM, config=config, pretrained=False, drop_mult=0.5)
    _fit(learn, folder)
    return f"bench: text_classifier_learner(AWD_LSTM {TEXT_CONFIG}, from scratch) on rt-polarity, 1 epoch"


def movie_recommender(folder: Path) -> str:
    """collab_learner (EmbeddingDotBias, 50 factors, y_range 0.5-5.5) on the MovieLens ratings, items.csv
    with the titles (as the demo model has them)."""
    import pandas as pd
    from fastai.collab import CollabDataLoaders, collab_learner

    from bench.cases import MOVIELENS

    ratings = pd.read_csv(MOVIELENS / "ratings.csv.gz")
    _seed()
    dls = CollabDataLoaders.from_df(
        ratings,
        user_name="userId",
        item_name="movieId",
        rating_name="rating",
        valid_pct=0.1,
        seed=SEED,
        bs=1024,
        path=folder,
    )
    learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5), wd=0.1)
    _fit(learn, folder, lr=5e-3)
    movies = pd.read_csv(MOVIELENS / "movies.csv.gz")
    movies[["movieId", "title"]].to_csv(folder / "items.csv", index=False)
    return "bench: collab_learner (dot product, 50 factors) on MovieLens ml-latest-small, 1 epoch, titles"


RECOMMEND_USERS = 1_000


def recommender_10k(folder: Path) -> str:
    """collab_learner (50 factors) over synthetic ids: 1,000 users, 10,000 items (every item rated five
    times, by random users, random ratings): only its size matters to `recommend`'s speed."""
    from bench.cases import RECOMMEND

    return _synthetic_recommender(folder, RECOMMEND)


def recommender_10k_nn(folder: Path) -> str:
    """The same ratings, collab_learner(use_nn=True): fastai's embedding sizes (about 58 + 278) and one
    hidden layer of 100, the variant whose every forward runs a layer over both embeddings."""
    from bench.cases import RECOMMEND_NN

    return _synthetic_recommender(folder, RECOMMEND_NN)


def _synthetic_recommender(folder: Path, case: RecommendCase) -> str:
    import numpy as np
    import pandas as pd
    from fastai.collab import CollabDataLoaders, collab_learner

    rng = np.random.default_rng(SEED)
    items = np.repeat(np.arange(case.items), 5)
    users = np.concatenate([np.arange(RECOMMEND_USERS), rng.integers(0, RECOMMEND_USERS, len(items))])
    items = np.concatenate([rng.integers(0, case.items, RECOMMEND_USERS), items])
    ratings = pd.DataFrame({"user": users, "item": items, "rating": rng.integers(1, 11, len(items)) / 2.0})
    _seed()
    # Every user and item in training (valid_pct small): the vocab holds them all.
    dls = CollabDataLoaders.from_df(ratings, valid_pct=0.02, seed=SEED, bs=1024, path=folder)
    if case.use_nn:
        learn = collab_learner(dls, use_nn=True, layers=[100], y_range=(0.5, 5.5))
    else:
        learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5))
    _fit(learn, folder, lr=5e-3)
    n_items = len(dls.classes["item"]) - 1  # without #na#
    what = "use_nn=True, layers [100]" if case.use_nn else "50 factors"
    return f"bench: collab_learner ({what}) over synthetic ids, {RECOMMEND_USERS} users, {n_items} items"


SHAPES_TRAIN = 200  # enough to learn the shapes a little: the model's speed is what is timed


def shapes_segmentation(folder: Path) -> str:
    """unet_learner with the demo's small encoder on generated shapes at the demo's size (bench/shapes.py),
    MaskBlock with the codes: the demo model's network, trained briefly (its speed is what is timed)."""
    import tempfile

    import pandas as pd
    from fastai.data.transforms import ColReader, RandomSplitter
    from fastai.vision.all import (
        DataBlock,
        ImageBlock,
        MaskBlock,
        Normalize,
        Resize,
        imagenet_stats,
        unet_learner,
    )

    from bench import shapes
    from service.training.segmentation import SegmentationRecipe, small_encoder

    with tempfile.TemporaryDirectory() as tmp:
        paths = shapes.write_shapes(Path(tmp), SHAPES_TRAIN, seed=SEED)
        items = pd.DataFrame(
            {
                "image": [str(p) for p in paths],
                "mask": [str(p.parent.parent / shapes.MASKS / p.name) for p in paths],
            }
        )
        # fastai's own readers (no function of ours in the exported file: any process can load it).
        block = DataBlock(
            blocks=(ImageBlock, MaskBlock(shapes.CODES)),
            get_x=ColReader("image"),
            get_y=ColReader("mask"),
            splitter=RandomSplitter(valid_pct=0.1, seed=SEED),
            # The server maps masks back to the uploaded image through the learner's Resize (as the demo's).
            item_tfms=[Resize(shapes.SIZE)],
            batch_tfms=[Normalize.from_stats(*imagenet_stats)],
        )
        _seed()
        dls = block.dataloaders(items, bs=32, num_workers=0, path=folder)
        demo = SegmentationRecipe(out_dir=folder)
        learn = unet_learner(
            dls,
            small_encoder,
            pretrained=False,
            n_out=len(shapes.CODES),
            cut=-1,
            last_cross=demo.last_cross,
        )
        _fit(learn, folder)
    return f"bench: unet_learner(small encoder) on {SHAPES_TRAIN} generated shapes, {shapes.SIZE} px, 1 epoch"


BUILDERS: dict[str, Callable[[Path], str]] = {
    "adult-hours": adult_hours,
    "cifar10-tags": cifar_tags,
    "reviews-sentiment": reviews_sentiment,
    "movie-recommender": movie_recommender,
    "shapes-segmentation": shapes_segmentation,
    "bench-recommender-10k": recommender_10k,
    "bench-recommender-10k-nn": recommender_10k_nn,
}
# Built only when the demo store does not have them (linked from there when it has).
DEMO_OR_BUILT = frozenset({"reviews-sentiment", "movie-recommender", "shapes-segmentation"})


def _seed() -> None:
    from service.training.common import seed_everything

    seed_everything(SEED)


def _fit(learn: Any, folder: Path, *, lr: float = 1e-2) -> None:
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, lr)
    folder.mkdir(parents=True, exist_ok=True)
    learn.export(folder / "model.pkl.tmp")


def build(name: str, folder: Path) -> None:
    """Train `name` and publish it in `folder` (model.pkl, then its model.json), replacing nothing half-made."""
    from service.loading import sha256_of

    started = time.perf_counter()
    description = BUILDERS[name](folder)
    took = time.perf_counter() - started
    (folder / "model.pkl.tmp").replace(folder / "model.pkl")
    manifest = {
        "description": description,
        "sha256": sha256_of(folder / "model.pkl"),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_seconds": round(took, 2),
        "seed": SEED,
    }
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{name}: built in {took:.1f}s -> {folder / 'model.pkl'}", flush=True)


# -- the bench's store -----------------------------------------------------------------------------------
def link(src: Path, dst: Path) -> None:
    """`dst` the same file as `src`: a hard link, else a copy; redone when `src` changed (a rebuilt demo)."""
    if dst.exists() and (
        os.path.samefile(src, dst)
        or (dst.stat().st_size, dst.stat().st_mtime_ns) == (src.stat().st_size, src.stat().st_mtime_ns)
    ):
        return
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def bench_store(demo_store: Path, models: list[str], store: Path = STORE) -> Path:
    """The store the bench serves: every model in `models`, the bench's own (BUILDERS) trained when missing,
    the others' files linked from `demo_store`; a DEMO_OR_BUILT model linked when `demo_store` has it, else
    built. Folders of models no case names are removed."""
    store.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in store.iterdir() if p.is_dir() and p.name not in models):
        shutil.rmtree(stale)
    for name in models:
        folder = store / name
        demo_has = (demo_store / name / "model.pkl").is_file()
        if name in BUILDERS and not (name in DEMO_OR_BUILT and demo_has):
            if not (folder / "model.pkl").is_file():
                print(f"{name}: not in {store}, training it (one epoch)...", flush=True)
                cmd = [sys.executable, "-m", "bench.models", name, str(folder)]
                subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "MPLBACKEND": "Agg"})
            continue
        source = demo_store / name
        if not (source / "model.pkl").is_file():
            raise FileNotFoundError(
                f"{source / 'model.pkl'} is missing: `make models` builds the demo models"
            )
        folder.mkdir(exist_ok=True)
        for file in LINKED_FILES:
            if (source / file).is_file():
                link(source / file, folder / file)
            else:
                (folder / file).unlink(missing_ok=True)
    return store


def descriptions(store: Path, models: list[str]) -> dict[str, str]:
    """Each model's description from its model.json (which says whether the bench built it), for results."""
    out = {}
    for name in models:
        manifest = store / name / "model.json"
        meta = json.loads(manifest.read_text()) if manifest.is_file() else {}
        out[name] = str(meta.get("description", "no model.json"))
    return out


def main() -> None:
    import argparse
    import warnings

    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    build(args.name, args.folder)


if __name__ == "__main__":
    main()
