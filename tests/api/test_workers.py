"""The real server under uvicorn with several worker processes, each with its own registry and batcher."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from tests.helpers import ROOT, TABULAR, UVICORN_APP, adult_rows, free_port, wait_until_ready


async def test_two_uvicorn_workers_serve_concurrent_requests(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "FASTAI_SERVE_MODEL_STORE": str(trained_store), "FASTAI_SERVE_DEVICE": "cpu"}
    cmd = [*UVICORN_APP, "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_until_ready(client)
            rows = adult_rows(adult_frame, 24)
            responses = await asyncio.gather(
                *(client.post(f"/api/v1/tabular/{TABULAR}/predict", json={"rows": [row]}) for row in rows)
            )
        assert [r.status_code for r in responses] == [200] * len(rows)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    text = (tmp_path / "server.log").read_text()
    assert text.count("Started server process") >= 2, text[-2000:]


def _requests_counted(metrics_text: str, route: str) -> float:
    """The sum of fastai_serve_requests_total over the series of `route` with status 200."""
    total = 0.0
    for line in metrics_text.splitlines():
        if (
            line.startswith("fastai_serve_requests_total{")
            and f'route="{route}"' in line
            and 'status="200"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _workers(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker, also its child)."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True, check=False
    )
    return [int(p) for p in found.stdout.split()]


async def test_several_workers_answer_as_one_server(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    """`fastai-serve serve --workers 2`: /metrics sums every worker, whichever one answers; readiness
    means every worker, so a killed worker makes it 503 until its replacement has loaded."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    env = {
        **os.environ,
        "FASTAI_SERVE_MODEL_STORE": str(trained_store),
        "FASTAI_SERVE_DEVICE": "cpu",
        "FASTAI_SERVE_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*cmd, "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    route = "/api/v1/tabular/{name}/predict"
    # A new connection per request, so the kernel spreads them over both workers' accept queues.
    fresh = {"Connection": "close"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_until_ready(client)
            ready = (await client.get("/health/ready", headers=fresh)).json()
            assert ready["workers"] == {"ready": 2, "running": 2, "expected": 2}
            rows = adult_rows(adult_frame, 20)
            for row in rows:
                response = await client.post(
                    f"/api/v1/tabular/{TABULAR}/predict", json={"rows": [row]}, headers=fresh
                )
                assert response.status_code == 200
            # A request is counted just after its answer is sent: wait for the last one, then every scrape
            # (whichever worker answers it) counts every worker's requests.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = (await client.get("/metrics", headers=fresh)).text
                if _requests_counted(text, route) == len(rows):
                    break
                await asyncio.sleep(0.2)
            for _ in range(6):
                text = (await client.get("/metrics", headers=fresh)).text
                assert _requests_counted(text, route) == len(rows)

            workers = _workers(server.pid)
            assert len(workers) == 2, workers
            os.kill(workers[0], signal.SIGKILL)
            # Not ready from the moment the worker dies until its replacement has loaded every model.
            deadline = time.monotonic() + 5
            down = await client.get("/health/ready", headers=fresh)
            while down.status_code == 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                down = await client.get("/health/ready", headers=fresh)
            assert down.status_code == 503
            assert down.json()["workers"]["ready"] < 2
            await wait_until_ready(client)  # the supervisor started a replacement, which loaded every model
            back = (await client.get("/health/ready", headers=fresh)).json()
            assert back["workers"] == {"ready": 2, "running": 2, "expected": 2}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    text = (tmp_path / "server.log").read_text()
    assert "Traceback" not in text.split("Child process")[0], text[-3000:]
