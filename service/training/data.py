"""Where training data comes from: the repo's shipped demo data, a local path, or fastai's downloads; and
the checks that turn bad training input into one line for the user (no fastai imported here)."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path
from typing import Any

from service.errors import (
    MSG_DOWNLOAD_FAILED,
    MSG_MISSING_COLUMNS,
    MSG_NO_BATCH,
    MSG_NO_SUCH_PATH,
    MSG_NOT_A_FILE,
    MSG_NOT_A_FOLDER,
    TrainingInputError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
CACHE_DIR = REPO_ROOT / ".cache" / "data"

ADULT_CATEGORICAL = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
]
ADULT_CONTINUOUS = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
# The demo model's columns. Capital gain and loss are mostly 0 with a long tail of a few hundred distinct
# amounts: as categories (Categorify, an embedding per amount) instead of normalised numbers, held-out
# accuracy goes from 0.860 to 0.877 with the same network and budget (issue 16's tuning table).
ADULT_AMOUNTS = ["capital-gain", "capital-loss"]
DEMO_ADULT_CATEGORICAL = ADULT_CATEGORICAL + ADULT_AMOUNTS
DEMO_ADULT_CONTINUOUS = [c for c in ADULT_CONTINUOUS if c not in ADULT_AMOUNTS]
ADULT_TARGET = "Salary"

LISTED_COLUMNS = 30


def first_line(exc: BaseException) -> str:
    """The gist of a library's exception, for a message that must stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_one_batch(dls: Any, *, items: str, bs: int) -> None:
    """fastai drops the last partial training batch: with fewer items than --bs nothing would train."""
    if len(dls.train) == 0:
        raise TrainingInputError(MSG_NO_BATCH.format(n=len(dls.train_ds), items=items, bs=bs))


def existing_file(path: Path, *, what: str) -> Path:
    if not path.exists():
        raise TrainingInputError(MSG_NO_SUCH_PATH.format(what=what, path=path))
    if not path.is_file():
        raise TrainingInputError(MSG_NOT_A_FILE.format(what=what, path=path))
    return path


def existing_folder(path: Path, *, what: str) -> Path:
    if not path.exists():
        raise TrainingInputError(MSG_NO_SUCH_PATH.format(what=what, path=path))
    if not path.is_dir():
        raise TrainingInputError(MSG_NOT_A_FOLDER.format(what=what, path=path))
    return path


def check_columns(path: Path, columns: list[str], *, what: str, needed: dict[str, list[str]]) -> None:
    """`needed` maps an option (`--target`) to the columns it names; every one must be in the file."""
    have = set(columns)
    missing = [
        f"{', '.join(repr(c) for c in absent)} ({option})"
        for option, wanted in needed.items()
        if (absent := [c for c in wanted if c not in have])
    ]
    if missing:
        shown = ", ".join(columns[:LISTED_COLUMNS])
        if len(columns) > LISTED_COLUMNS:
            shown += f", ... ({len(columns)} in all)"
        raise TrainingInputError(
            MSG_MISSING_COLUMNS.format(what=what, path=path, missing="; ".join(missing), columns=shown)
        )


def demo_adult_csv(cache: Path = CACHE_DIR) -> Path:
    """The shipped UCI Adult CSV, unpacked once into the cache."""
    target = cache / "adult.csv"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with gzip.open(DATA_DIR / "adult.csv.gz", "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return target


def demo_cifar_folder(cache: Path = CACHE_DIR) -> Path:
    """The shipped CIFAR-10 sample (`train/<class>`, `test/<class>`), unpacked once into the cache."""
    target = cache / "cifar10_sample"
    if not (target / "train").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(DATA_DIR / "cifar10_sample.tar.gz") as archive:
            archive.extractall(cache, filter="data")
    return target


def downloaded(name: str) -> Path:
    """fastai's own data sets (`ADULT_SAMPLE`, `CIFAR`): needs the internet the first time."""
    from fastai.data.external import URLs, untar_data

    try:
        return Path(untar_data(getattr(URLs, name)))
    except OSError as exc:  # no network, DNS, a refused connection, a full disk
        raise TrainingInputError(MSG_DOWNLOAD_FAILED.format(name=name, reason=first_line(exc))) from exc
