"""Fixtures: real tiny learners, trained once per session in seconds, and a client over the real app.

Helpers that tests import live in tests/helpers.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# Apps the tests build serve no gRPC unless a test asks for a port (tests/api/test_v2_grpc.py): the
# default, 8001, would have every app (and server subprocess) of the session listen on one port.
os.environ.setdefault("FASTAI_SERVE_GRPC_PORT", "0")

import httpx
import numpy as np
import pandas as pd
import pytest

from service.training import data
from service.training.common import FitOptions
from service.training.tabular import TabularRecipe, train_tabular
from service.training.vision import VisionRecipe, train_vision
from tests.helpers import TABULAR, VISION, client_for
from tests.tiny import build_refused_learners, build_task_learners
from tests.tiny_collab import build_collab_learners
from tests.tiny_segmentation import build_segmentation_learners


@pytest.fixture(scope="session")
def adult_frame() -> pd.DataFrame:
    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"]).iloc[:3000].copy()
    # Some ages missing, so FillMissing learns a fill value for `age` (and `age_na` becomes a flag column).
    frame.loc[frame.index % 23 == 0, "age"] = np.nan
    return frame


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    store = tmp_path_factory.mktemp("store")
    csv = store.parent / "adult-tiny.csv"
    adult_frame.to_csv(csv, index=False)
    train_tabular(
        TabularRecipe(
            csv=csv,
            target=data.ADULT_TARGET,
            cat_names=data.ADULT_CATEGORICAL,
            cont_names=data.ADULT_CONTINUOUS,
            out_dir=store / TABULAR,
            layers=[20, 10],
            epochs=2,
            bs=256,
            fit=FitOptions(quiet=True),
        )
    )
    train_vision(
        VisionRecipe(
            folder=data.demo_cifar_folder(),
            out_dir=store / VISION,
            epochs=1,
            bs=64,
            max_per_class=12,
            small_input_stem=False,
            fit=FitOptions(quiet=True),
        )
    )
    return store


@pytest.fixture(scope="session")
def task_store(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    """A tiny real learner of every task beyond classification (tests/tiny.py names them), in seconds."""
    store = tmp_path_factory.mktemp("task-store")
    build_task_learners(store, adult_frame)
    return store


@pytest.fixture(scope="session")
def refused_store(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    """Learners the service must refuse (object detection, image-to-image, a plain Learner), exported
    untrained: recognition reads what they are, not how good they are."""
    store = tmp_path_factory.mktemp("refused-store")
    build_refused_learners(store, adult_frame)
    return store


@pytest.fixture(scope="session")
async def task_client(task_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the task store, shared by the tests that only read."""
    async for c in client_for(task_store, max_rows=50, max_files=4, max_upload_mb=1.0):
        yield c


@pytest.fixture(scope="session")
async def client(trained_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the healthy tiny store, shared by the tests that only read."""
    async for c in client_for(trained_store, max_rows=50, max_files=4, max_upload_mb=1.0):
        yield c


@pytest.fixture
def learners(trained_store: Path) -> Iterator[dict[str, object]]:
    """The same learners as fastai itself loads them, for parity checks."""
    from fastai.learner import load_learner

    yield {
        TABULAR: load_learner(trained_store / TABULAR / "model.pkl"),
        VISION: load_learner(trained_store / VISION / "model.pkl"),
    }


# -- segmentation (tests/tiny_segmentation.py) ------------------------------------------------------------
@pytest.fixture(scope="session")
def seg_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated shapes the tiny segmentation learner trains on: `images/` and `masks/`."""
    return tmp_path_factory.mktemp("seg-data")


@pytest.fixture(scope="session")
def seg_store(tmp_path_factory: pytest.TempPathFactory, seg_data: Path) -> Path:
    """A tiny real `unet_learner` (MaskBlock with codes), trained in seconds."""
    store = tmp_path_factory.mktemp("seg-store")
    build_segmentation_learners(store, seg_data)
    return store


# -- collab (tests/tiny_collab.py) ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def collab_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both tiny collab learners (EmbeddingDotBias with items.csv titles, EmbeddingNN), in seconds."""
    store = tmp_path_factory.mktemp("collab-store")
    build_collab_learners(store)
    return store


# -- text models (tests/tiny_text.py) ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def text_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny text classifiers (single-label and multi-label), trained in seconds."""
    from tests.tiny_text import build_text_learners

    store = tmp_path_factory.mktemp("text-store")
    build_text_learners(store)
    return store


@pytest.fixture(scope="session")
async def seg_client(seg_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the segmentation store (images over 64 x 64 pixels are too large), for tests that
    only read."""
    async for c in client_for(seg_store, max_files=4, max_upload_mb=1.0, max_image_pixels=64 * 64):
        yield c


@pytest.fixture(scope="session")
async def collab_client(collab_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the collab store (ONNX Runtime where it passes parity), shared by the tests that read."""
    async for c in client_for(collab_store, max_rows=50, max_upload_mb=1.0, runtime="auto"):
        yield c


@pytest.fixture(scope="session")
async def text_client(text_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the text store, shared by the tests that only read."""
    async for c in client_for(text_store, max_rows=20, max_text_chars=400, max_upload_mb=1.0):
        yield c
