"""The real server under uvicorn with several worker processes, each with its own registry and batcher."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
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
