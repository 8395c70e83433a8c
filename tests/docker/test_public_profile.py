"""The compose `public` profile played offline, with docker-compose.yml's own commands and environment.

share-policy's command runs here as a process (the CLI it names, with the NGROK_* its `environment`
passes), writing into a folder that stands for the `tunnel_policy` volume; then the ngrok service's
command runs the stand-in agent (tests/fixtures/ngrok/fake-agent), which, like the real one, will not
start without the policy file; then /api/v1/share answers from an app configured as compose configures
the api. `docker/smoke-test.sh` runs the same chain in containers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.api.app import create_app
from service.errors import MSG_TUNNEL_ANONYMOUS, MSG_TUNNEL_UNPROTECTED
from service.share_policy import POLICY_FILE_NAME
from tests.helpers import FIXTURES, free_port, make_settings, started_client

ROOT = Path(__file__).resolve().parents[2]
SERVICES: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
FAKE_AGENT = FIXTURES / "ngrok" / "fake-agent" / "ngrok"
RECORDED_URL = "https://7c3e-203-0-113-42.ngrok-free.app"  # tests/fixtures/ngrok/api_tunnels_v3.json


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` with `env` as the shell and .env."""
    return re.sub(r"\$\{([A-Z0-9_]+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)


class Volume:
    """A folder standing for the `tunnel_policy` volume, wherever a service mounts it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        [mount] = [v for v in SERVICES["share-policy"]["volumes"] if v.startswith("tunnel_policy:")]
        self.target = mount.split(":")[1]

    def local(self, value: str) -> str:
        return value.replace(self.target, str(self.folder))


def share_policy(volume: Volume, **settings: str) -> subprocess.CompletedProcess[str]:
    service = SERVICES["share-policy"]
    env = {name: interpolate(value, settings) for name, value in service["environment"].items()}
    program, *args = (volume.local(arg) for arg in service["command"])
    assert program == "fastai-serve"
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def agent_port() -> int:
    return free_port()


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=10)


def start_agent(volume: Volume, port: int, agents: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """The ngrok service's command, run by the stand-in agent; returns once it serves or has exited."""
    args = [volume.local(arg) for arg in SERVICES["ngrok"]["command"]]
    process = subprocess.Popen(
        [sys.executable, str(FAKE_AGENT), *args],
        env={"PATH": os.environ.get("PATH", ""), "FAKE_NGROK_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    agents.append(process)
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/tunnels", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    return process


async def share_as_compose_configures_the_api(
    volume: Volume, port: int, **overrides: object
) -> dict[str, Any]:
    environment = SERVICES["api"]["environment"]
    settings = make_settings(
        volume.folder / "empty-store",
        ngrok_api_url=environment["FASTAI_SERVE_NGROK_API_URL"].replace("ngrok:4040", f"127.0.0.1:{port}"),
        ngrok_policy_file=volume.local(environment["FASTAI_SERVE_NGROK_POLICY_FILE"]),
        **overrides,
    )
    async for client in started_client(create_app(settings)):
        body: dict[str, Any] = (await client.get("/api/v1/share")).json()
        return body
    raise AssertionError("no client")


def test_refused_without_a_way_to_sign_in_and_then_no_agent(
    tmp_path: Path, agent_port: int, agents: list[subprocess.Popen[str]]
) -> None:
    volume = Volume(tmp_path)
    (tmp_path / POLICY_FILE_NAME).write_text("on_http_request: []\n")  # an earlier run's
    result = share_policy(volume)
    assert result.returncode == 2
    assert result.stderr.strip() == f"fastai-serve: error: {MSG_TUNNEL_UNPROTECTED}"
    assert list(tmp_path.iterdir()) == []
    # Were compose to start the agent anyway, it would find no policy and stop.
    agent = start_agent(volume, agent_port, agents)
    assert agent.wait(timeout=30) == 1
    assert "traffic policy file" in (agent.stderr.read() if agent.stderr else "")


async def test_basic_auth_from_settings_to_share(
    tmp_path: Path, agent_port: int, agents: list[subprocess.Popen[str]]
) -> None:
    volume = Volume(tmp_path)
    result = share_policy(volume, NGROK_BASIC_AUTH="smoke:a-long-password")
    assert result.returncode == 0, result.stderr
    assert "a-long-password" not in result.stderr
    agent = start_agent(volume, agent_port, agents)
    assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
    started = httpx.get(f"http://127.0.0.1:{agent_port}/fake/started", timeout=5).json()
    assert started["traffic_policy_file"] == str(tmp_path / POLICY_FILE_NAME)
    assert "type: basic-auth" in started["traffic_policy"]
    body = await share_as_compose_configures_the_api(volume, agent_port, predict_api_keys=["k"])
    assert body["public_url"] == RECORDED_URL
    assert (body["protected"], body["api_key_required"]) == ("basic", True)


async def test_anonymous_only_on_purpose_and_loudly(
    tmp_path: Path, agent_port: int, agents: list[subprocess.Popen[str]]
) -> None:
    volume = Volume(tmp_path)
    result = share_policy(volume, NGROK_ALLOW_ANONYMOUS="1")
    assert result.returncode == 0, result.stderr
    assert MSG_TUNNEL_ANONYMOUS in result.stderr
    agent = start_agent(volume, agent_port, agents)
    assert agent.poll() is None
    body = await share_as_compose_configures_the_api(volume, agent_port)
    assert body["public_url"] == RECORDED_URL
    assert (body["protected"], body["api_key_required"]) == (None, False)
