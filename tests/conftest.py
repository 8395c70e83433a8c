"""Real tiny learners, trained once per session in seconds, and clients over the real app."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from PIL import Image

from service.api.app import create_app
from service.settings import Settings
from service.training import data
from service.training.common import FitOptions
from service.training.tabular import TabularRecipe, train_tabular
from service.training.vision import VisionRecipe, train_vision

TABULAR = "adult-tiny"
VISION = "cifar-tiny"
FIXTURES = Path(__file__).parent / "fixtures"


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


def clone_store(source: Path, target: Path, names: list[str] | None = None) -> Path:
    """A private copy of the store (hard links, so it is cheap) that a test may break."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in sorted(source.iterdir()):
        if folder.is_dir() and (names is None or folder.name in names):
            shutil.copytree(folder, target / folder.name, copy_function=os.link)
    return target


def make_settings(store: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_store": store, "device": "cpu", **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type, call-arg]


async def started_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await asyncio.to_thread(app.state.registry.wait_loaded, 120)
            yield client


async def client_for(store: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """A started app over `store` with settings overridden, for tests that need their own."""
    async for c in started_client(create_app(make_settings(store, **overrides))):
        yield c


@pytest.fixture(scope="session")
async def client(trained_store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the healthy tiny store, shared by the tests that only read."""
    settings = make_settings(trained_store, max_rows=50, max_files=4, max_upload_mb=1.0)
    async for c in started_client(create_app(settings)):
        yield c


@pytest.fixture
def learners(trained_store: Path) -> Iterator[dict[str, object]]:
    """The same learners as fastai itself loads them, for parity checks."""
    from fastai.learner import load_learner

    yield {
        TABULAR: load_learner(trained_store / TABULAR / "model.pkl"),
        VISION: load_learner(trained_store / VISION / "model.pkl"),
    }


def image_bytes(
    *, size: tuple[int, int] = (32, 32), mode: str = "RGB", fmt: str = "PNG", seed: int = 0
) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def adult_rows(frame: pd.DataFrame, n: int) -> list[dict[str, object]]:
    cols = data.ADULT_CONTINUOUS + data.ADULT_CATEGORICAL
    subset = frame[cols].dropna().iloc[:n]
    return [
        {c: (float(v) if c in data.ADULT_CONTINUOUS else str(v)) for c, v in row.items()}
        for row in subset.to_dict(orient="records")
    ]
