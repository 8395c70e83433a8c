"""Load on the real server over loopback: mixed traffic with reloads, then more than it can take.

Slow (minutes): `make test-slow` runs these, and CI does too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.helpers import ROOT, TABULAR, VISION, adult_rows, clone_store, free_port, image_bytes

pytestmark = pytest.mark.slow
KEY = "load-test-key"


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]

    def rss_mb(self, field_name: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field_name}")


@contextlib.contextmanager
def running_server(store: Path, log: Path, **env: str) -> Iterator[Server]:
    port = free_port()
    environment = {
        **os.environ,
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_API_KEY": KEY,
        "FASTAI_SERVE_LOG_LEVEL": "warning",
        **env,
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.base + "/health/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise AssertionError(log.read_text()[-3000:])
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    retry_after_missing: int = 0


async def _load(
    client: httpx.AsyncClient, *, clients: int, seconds: float, rows: list[dict[str, object]], tally: Tally
) -> None:
    png = image_bytes()
    deadline = time.monotonic() + seconds

    async def one_client(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            try:
                if rng.random() < 0.5:
                    response = await client.post(
                        f"/api/v1/tabular/{TABULAR}/predict", json={"rows": [rng.choice(rows)]}
                    )
                else:
                    response = await client.post(
                        f"/api/v1/vision/{VISION}/predict", files={"files": ("a.png", png)}
                    )
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            tally.statuses[response.status_code] += 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                tally.retry_after_missing += 1

    await asyncio.gather(*(one_client(i) for i in range(clients)))


@pytest.fixture
def store(trained_store: Path, tmp_path: Path) -> Path:
    return clone_store(trained_store, tmp_path / "store")


async def test_32_clients_for_60_s_with_5_reloads_fail_nothing(
    store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 200)
    tally, reloads = Tally(), []
    with running_server(store, tmp_path / "server.log") as server:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            await _load(client, clients=8, seconds=3, rows=rows, tally=Tally())  # warm-up
            warm_rss = server.rss_mb()
            load = asyncio.create_task(_load(client, clients=32, seconds=60, rows=rows, tally=tally))
            for _ in range(5):
                await asyncio.sleep(10)
                before = sum(tally.statuses.values())
                started = time.monotonic()
                response = await client.post(f"/api/v1/models/{TABULAR}/reload", headers={"X-API-Key": KEY})
                reloads.append(
                    (response.status_code, time.monotonic() - started, sum(tally.statuses.values()) - before)
                )
            await load
            end_rss, peak_rss = server.rss_mb(), server.rss_mb("VmHWM")
    served = sum(tally.statuses.values())
    print(
        f"\nload: {served} requests in 60 s ({served / 60:.0f}/s), statuses {dict(tally.statuses)}, "
        f"errors {len(tally.errors)}; reloads (status, seconds, requests served meanwhile) {reloads}; "
        f"RSS {warm_rss:.0f} MB after warm-up, {end_rss:.0f} MB at the end, peak {peak_rss:.0f} MB"
    )
    assert tally.errors == [] and set(tally.statuses) == {200}
    assert [status for status, _, _ in reloads] == [200] * 5
    assert all(during > 0 for _, _, during in reloads)  # traffic flowed while each reload ran
    assert served > 300
    assert end_rss < warm_rss * 1.5 + 200  # five reloads did not keep five copies of the model


async def test_over_capacity_gives_503_with_retry_after_and_keeps_serving(
    store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    rows = adult_rows(adult_frame, 50)
    tally = Tally()
    env = {"FASTAI_SERVE_BATCH_MAX_QUEUE": "8", "FASTAI_SERVE_BATCH_MAX_SIZE": "8"}
    with running_server(store, tmp_path / "server.log", **env) as server:
        limits = httpx.Limits(max_connections=256)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            warm_rss = server.rss_mb()
            await _load(client, clients=160, seconds=15, rows=rows, tally=tally)
            after = await client.get("/health/ready")
            rss = server.rss_mb()
        alive = server.process.poll() is None
    print(
        f"\nover capacity: statuses {dict(tally.statuses)}, errors {len(tally.errors)}, "
        f"RSS {warm_rss:.0f} -> {rss:.0f} MB"
    )
    assert alive and after.status_code == 200
    assert tally.statuses[503] > 0 and tally.retry_after_missing == 0
    assert set(tally.statuses) <= {200, 503} and tally.statuses[200] > 0
    assert tally.errors == []
    assert rss < warm_rss * 1.5 + 200
