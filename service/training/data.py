"""Where training data comes from: the repo's shipped demo data, a local path, or fastai's downloads."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

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
ADULT_TARGET = "Salary"


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

    return Path(untar_data(getattr(URLs, name)))
