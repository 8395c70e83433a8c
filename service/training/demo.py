"""The demo models `make run`, `make models` and the Docker build put into a store, and how they get there.

Each model is built in `<store>/.building/<name>-<pid>-*/` (hidden: the registry never lists it) and its
finished folder moved into the store with one rename, so a server rescanning the store (`RESCAN_S`) sees
no model or a whole one, never half. While a model trains, `<store>/.training.json` says so, with its epochs
(`progress.py`); `GET /api/v1/models` lists it as `training`. `existing` (the tabular and vision models)
train in about a minute and `make run` builds them before serving; `new` ones (text, collab, segmentation)
train after that in a background process and appear when done.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.cli import DEMO_COLLAB, DEMO_SEGMENTATION, DEMO_TABULAR, DEMO_TEXT, DEMO_VISION
from service.errors import MSG_UNKNOWN_DEMO, TrainingInputError
from service.training import progress

logger = logging.getLogger(__name__)


# build(store, name): writes `store/name/` (model.pkl, model.json, report/).
Builder = Callable[[Path, str], None]


@dataclass(frozen=True)
class DemoModel:
    name: str
    kind: str
    task: str
    group: str  # "existing": built before `make run` serves; "new": may train in the background
    build: Builder


def _cli(argv: list[str]) -> Builder:
    """A demo built by the `train` command line itself, with the recipe's own defaults."""

    def build(store: Path, name: str) -> None:
        from service.cli import build_parser

        args = build_parser().parse_args([*argv, "--name", name, "--store", str(store)])
        args.func(args)

    return build


def _collab(store: Path, name: str) -> None:
    from service.training.collab import DEMO_ITEMS, DEMO_RATINGS, CollabRecipe, train_collab
    from service.training.common import FitOptions

    train_collab(
        CollabRecipe(
            ratings=DEMO_RATINGS,
            items=DEMO_ITEMS,
            out_dir=store / name,
            **DEMO_COLLAB_RECIPE,  # type: ignore[arg-type]
            description="MovieLens ml-latest-small recommender (collab_learner), titles in items.csv",
            fit=FitOptions(),
        )
    )


def _segmentation(store: Path, name: str) -> None:
    from service.training.common import FitOptions
    from service.training.segmentation import SegmentationRecipe, train_segmentation

    train_segmentation(
        SegmentationRecipe(
            out_dir=store / name,
            description="circles, squares and triangles on noise (generated): the recipe's defaults, 48 px",
            fit=FitOptions(),
        )
    )


def _text(store: Path, name: str) -> None:
    from service.training.text import build_demo

    built = store / DEMO_TEXT
    build_demo(store, seed=42)
    if name != DEMO_TEXT:
        built.rename(store / name)


# The tuned recipe (docs/recipes.md: the table of what was tried).
DEMO_COLLAB_RECIPE = {
    "factors": 50,
    "wd": 0.15,  # fastai's default 0.1 overfits by the 5th epoch here
    "epochs": 6,
    "lr": 5e-3,
    "bs": 64,
    "y_range": (0.0, 5.5),
    "valid_pct": 0.02,  # the test part is held out already: more ratings to learn from
}

DEMOS: list[DemoModel] = [
    DemoModel(DEMO_TABULAR, "tabular", "classification", "existing", _cli(["train", "tabular"])),
    DemoModel(DEMO_VISION, "vision", "classification", "existing", _cli(["train", "vision"])),
    # Quickest first: each appears as soon as it is done.
    DemoModel(DEMO_COLLAB, "collab", "rating", "new", _collab),
    DemoModel(DEMO_SEGMENTATION, "vision", "segmentation", "new", _segmentation),
    DemoModel(DEMO_TEXT, "text", "classification", "new", _text),
]


def selected(group: str = "all", names: list[str] | None = None) -> list[DemoModel]:
    known = {d.name for d in DEMOS}
    if names and (unknown := sorted(set(names) - known)):
        raise TrainingInputError(MSG_UNKNOWN_DEMO.format(names=", ".join(unknown), choices=", ".join(known)))
    return [d for d in DEMOS if (group == "all" or d.group == group) and (not names or d.name in names)]


def present(store: Path, name: str) -> bool:
    return (store / name / "model.pkl").is_file()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(store: Path) -> None:
    """Remove what a builder that died left behind: its half-built folders, and its names on the board."""
    building = store / progress.BUILDING_DIR
    if building.is_dir():
        for folder in building.iterdir():
            pid = folder.name.split("-")[-2] if folder.name.count("-") >= 2 else ""
            if not (pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(folder, ignore_errors=True)
    board = progress.read_progress(store)
    stale = [n for n, e in board.items() if not (isinstance(e.get("pid"), int) and _alive(e["pid"]))]
    progress.clear(store, *stale)


def publish_folder(built: Path, target: Path) -> None:
    """Move a finished model folder into the store in one rename (same file system: inside the store). A
    folder already there (`--force`) is moved aside first, then removed."""
    old = None
    if target.exists():
        old = built.parent / f"replaced-{target.name}"
        target.rename(old)
    built.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_one(store: Path, demo: DemoModel) -> None:
    """Build `demo` out of sight, then move it into the store; the board says it trains meanwhile."""
    building = store / progress.BUILDING_DIR
    building.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{demo.name}-{os.getpid()}-", dir=building))
    try:
        with progress.training(store, demo.name, kind=demo.kind, task=demo.task):
            demo.build(scratch, demo.name)
            publish_folder(scratch / demo.name, store / demo.name)
        progress.clear(store, demo.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def build_demos(
    store: Path, *, group: str = "all", names: list[str] | None = None, force: bool = False
) -> list[str]:
    """Build the chosen demo models that are missing (all with `force`), each as `build_one` does; one
    failing never stops the others. Returns the names that failed."""
    chosen = selected(group, names)
    store.mkdir(parents=True, exist_ok=True)
    clean_leftovers(store)
    failed = []
    for demo in chosen:
        if present(store, demo.name) and not force:
            print(f"{demo.name}: present in {store}, skipping (use --force to rebuild)", flush=True)
            continue
        started = time.perf_counter()
        print(f"{demo.name}: training ({demo.kind} {demo.task})", flush=True)
        try:
            build_one(store, demo)
        except Exception as exc:  # noqa: BLE001 - one demo failing never stops the others
            logger.exception("demo model %s failed", demo.name)
            print(f"{demo.name}: failed ({type(exc).__name__}: {exc})", flush=True)
            failed.append(demo.name)
            continue
        print(f"{demo.name}: ready in {time.perf_counter() - started:.1f}s", flush=True)
    return failed
