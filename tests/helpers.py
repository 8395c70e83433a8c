"""Helpers the tests share: names of the tiny models, settings and started clients, inputs, assertions.

Fixtures live in conftest.py files; everything a test imports comes from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI
from PIL import Image

from service.api.app import create_app
from service.settings import Settings
from service.training import data

TABULAR = "adult-tiny"
VISION = "cifar-tiny"
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
# The server as uvicorn runs it: the app factory, never an app built at import.
UVICORN_APP = [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app"]


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
    """An httpx client over `app` with its lifespan run and its models loaded."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await asyncio.to_thread(app.state.registry.wait_loaded, 120)
            yield client


async def client_for(store: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """A started app over `store` with settings overridden, for tests that need their own."""
    async for c in started_client(create_app(make_settings(store, **overrides))):
        yield c


async def wait_until_ready(client: httpx.AsyncClient, *, seconds: float = 120) -> None:
    """Poll /health/ready until the server answers 200 (it loads its models first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await client.get("/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"not ready after {seconds:g} s")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of a refusal with `status`, checked for shape and for leaked tracebacks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


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


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """`app` under a real uvicorn on a loopback port, in a thread, once its models are loaded; yields
    host:port and stops the server on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (server.started and app.state.registry.wait_loaded(0.1)):
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def fastai_probabilities(learn: Any, items: Any) -> np.ndarray:
    """fastai's own answer for `items` (`test_dl` + `get_preds`): the reference for parity tests."""
    dl = learn.dls.test_dl(items, num_workers=0)
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    return np.asarray(probs.numpy())


def predicted_probabilities(predictor: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """A predictor's `predict` as an (n, classes) matrix in its class order."""
    predictions = predictor.predict(*args, **kwargs)
    return np.array([[p.probabilities[c] for c in predictor.classes] for p in predictions])
