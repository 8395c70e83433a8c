"""What the GPU check needs on this workplace's device machine that its image lacks (docs/GPU_CHECK.md):
`make gpu-carry` (`python -m bench.gpu_carry`) fills `.cache/gpu-carry/{a,b,c}`, one folder per call, each
small enough to travel with the working tree (64 MiB a call in all):

- `a/`: spaCy and its compiled parts as cp312 wheels (text learners' tokenizer), ~56 MB;
- `b/wheels/`: fastai, fastapi, uvicorn, pydantic, captum, ... as cp312 wheels; `b/models/`: the small demo
  models (learner and manifest);
- `c/models/`: the demo `cifar10` (46 MB).

Wheels are the versions this venv runs (the image's own torch, numpy, pandas, pyarrow are used there), and
`bench/gpu_device.sh` installs each folder in its call. Nothing here runs on a GPU.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from bench import CACHE, DEFAULT_STORE

CARRY = CACHE / "gpu-carry"
LIMIT_MB = 64 * 2**20 / 1e6  # a call's working tree, carried paths included (the device tool's limit)
TREE_MB = 8.0  # the tracked files (about 7 MB)
# Not in the device image (its package list, .library/device/KINDS.md), split so that each call fits.
SPACY = [
    "spacy",
    "thinc",
    "blis",
    "cymem",
    "preshed",
    "murmurhash",
    "srsly",
    "wasabi",
    "catalogue",
    "weasel",
    "confection",
    "spacy-legacy",
    "spacy-loggers",
    "cloudpathlib",
    "smart-open",
]
SERVICE = [
    "fastai",
    "fastcore",
    "fasttransform",
    "fastprogress",
    "fastdownload",
    "plum-dispatch",
    "beartype",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "python-multipart",
    "annotated-types",
    "typing-inspection",
    "captum",
    "protobuf",
    "grpcio",
]
SMALL_DEMOS = ["adult-income", "movie-recommender", "reviews-sentiment", "shapes-segmentation"]
BIG_DEMOS = ["cifar10"]
PLATFORM = [
    "--no-deps",
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
    *(
        "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64".split()
    ),
    "--platform",
    "any",
]


def _download(names: list[str], folder: Path) -> None:
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in names]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", *PLATFORM, "-d", str(folder), *pinned]
    subprocess.run(cmd, check=True)


def _models(store: Path, names: list[str], folder: Path) -> None:
    for name in names:
        source = store / name
        if not (source / "model.pkl").is_file():
            raise SystemExit(f"{source}/model.pkl is missing: run `make models` first")
        shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("report", ".*"))


def _mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_carry", description=__doc__)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    args = parser.parse_args()
    shutil.rmtree(CARRY, ignore_errors=True)
    _download(SPACY, CARRY / "a")
    _download(SERVICE, CARRY / "b" / "wheels")
    _models(args.store, SMALL_DEMOS, CARRY / "b" / "models")
    _models(args.store, BIG_DEMOS, CARRY / "c" / "models")
    for part in ("a", "b", "c"):
        size = _mb(CARRY / part)
        fits = "fits" if size + TREE_MB <= LIMIT_MB else "TOO BIG"
        print(f"{CARRY / part}: {size:.1f} MB (+ ~{TREE_MB:g} MB of tree, limit {LIMIT_MB:.1f}): {fits}")


if __name__ == "__main__":
    main()
