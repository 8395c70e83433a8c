"""The bench's own store: the demo models linked in, and the models the bench trains itself when missing.

The task cases (a tabular regression, a vision multi-label model) are timed beside the demo classifier of the
same architecture, so each is built with exactly the demo recipe's network (`fastai-serve train demo`, see
service/cli.py and service/training/): same columns, layers, dropout and weight decay for tabular; resnet18
from scratch on 32x32 images, the same item and batch transforms, head dropout and stem for vision. One
epoch, offline, from the repo's data: a model's speed does not depend on its accuracy.

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
from typing import Any

from bench import CACHE, ROOT

STORE = CACHE / "bench" / "store"
SEED = 42
# The demo models' files that the bench's store needs (the learner, and its manifest with its sha256).
LINKED_FILES = ("model.pkl", "model.json")


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


BUILDERS: dict[str, Callable[[Path], str]] = {"adult-hours": adult_hours, "cifar10-tags": cifar_tags}


def _seed() -> None:
    from service.training.common import seed_everything

    seed_everything(SEED)


def _fit(learn: Any, folder: Path) -> None:
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-2)
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
    the others' files linked from `demo_store`. Folders of models no case names are removed."""
    store.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in store.iterdir() if p.is_dir() and p.name not in models):
        shutil.rmtree(stale)
    for name in models:
        folder = store / name
        if name in BUILDERS:
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
