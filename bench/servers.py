"""The servers the bench drives: ours through its CLI, the naive one under uvicorn, each in its own group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench import CACHE, ROOT
from bench.cases import CASES, Case


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(store: Path) -> dict[str, str]:
    """What every server the bench starts is given: the model store, quiet logs, and no gRPC (two of ours
    run side by side in some steps; the gRPC row asks for a port of its own)."""
    return {
        "FASTAI_SERVE_MODEL_STORE": str(store),
        "FASTAI_SERVE_LOG_LEVEL": "warning",
        "FASTAI_SERVE_GRPC_PORT": "0",
    }


def start_ours(
    port: int, env: dict[str, str], *, workers: int = 1, grpc_port: int = 0
) -> subprocess.Popen[bytes]:
    """fastai-serve as users start it (`fastai-serve serve`): what the CLI sets up is measured too."""
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if grpc_port:
        cmd += ["--grpc-port", str(grpc_port)]
    return start_process(cmd, port=port, ready_path="/health/ready", env=env)


def start_naive(port: int, env: dict[str, str], cases: tuple[Case, ...] = CASES) -> subprocess.Popen[bytes]:
    """bench/naive_server.py under uvicorn, serving every case's model."""
    models = ",".join(f"{c.kind}:{c.model}" for c in cases)
    return start_server("bench.naive_server:app", port, {**env, "BENCH_NAIVE_MODELS": models})


def start_server(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Another ASGI app under uvicorn (the naive server)."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return start_process(cmd, port=port, ready_path="/health/ready", env=env)


def start_process(
    cmd: list[str], *, port: int, ready_path: str, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group and wait until `ready_path` answers 200."""
    CACHE.mkdir(exist_ok=True)
    log = (CACHE / f"bench-{port}.log").open("wb")  # a file: an unread pipe would fill and block
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers too are stopped with it (stop_process)
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_process(proc)
    raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:4])} did not become ready; see {log.name}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to the server's process group (a graceful stop), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A field of the process's /proc status, in kB (VmRSS now, VmHWM its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
