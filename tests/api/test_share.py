"""GET /api/v1/share against a real HTTP server on loopback playing the ngrok agent's local API, and the
traffic policy file the agent runs with (`protected`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.errors import (
    MSG_SHARE_BAD_ANSWER,
    MSG_SHARE_NO_SIDECAR,
    MSG_SHARE_NO_TUNNEL,
    MSG_SHARE_OFF,
    MSG_SHARE_TIMEOUT,
)
from service.share_policy import TunnelSettings, render_policy, write_policy
from tests.helpers import FIXTURES, free_port, make_settings, started_client

TUNNELS_V3 = (FIXTURES / "ngrok" / "api_tunnels_v3.json").read_bytes()
TUNNELS_HTTP_THEN_HTTPS = (FIXTURES / "ngrok" / "api_tunnels_http_then_https.json").read_bytes()
PUBLIC_URL_V3 = "https://7c3e-203-0-113-42.ngrok-free.app"
# What the endpoint says about protection when nothing protects anything (the defaults).
UNGUARDED = {"protected": None, "api_key_required": False}


@dataclass
class FakeAgent:
    """What the fake agent answers on /api/tunnels, and what it was asked."""

    body: bytes = TUNNELS_V3
    status: int = 200
    delay_s: float = 0.0
    paths: list[str] = field(default_factory=list)
    url: str = ""


def _handler(agent: FakeAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            agent.paths.append(self.path)
            time.sleep(agent.delay_s)
            found = self.path == "/api/tunnels"
            body = agent.body if found else b'{"status_code": 404, "msg": "not found"}'
            self.send_response(agent.status if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    state = FakeAgent()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/tunnels"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def share_client(store: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """A started app over an empty store: the share endpoint needs no model."""
    async for client in started_client(create_app(make_settings(store, **overrides))):
        yield client


async def get_share(store: Path, **overrides: object) -> dict[str, object]:
    async for client in share_client(store, **overrides):
        response = await client.get("/api/v1/share")
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body
    raise AssertionError("no client")


async def test_public_url_from_the_agent(tmp_path: Path, agent: FakeAgent) -> None:
    body = await get_share(tmp_path, ngrok_api_url=agent.url)
    assert body == {"public_url": PUBLIC_URL_V3, "source": "ngrok", "reason": None, **UNGUARDED}
    assert agent.paths == ["/api/tunnels"]


async def test_https_tunnel_preferred_over_http(tmp_path: Path, agent: FakeAgent) -> None:
    agent.body = TUNNELS_HTTP_THEN_HTTPS
    body = await get_share(tmp_path, ngrok_api_url=agent.url)
    assert body["public_url"] == "https://5d2a9b1c.ngrok.io"


async def test_no_sidecar_is_null_with_reason(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/tunnels"  # nothing listens there
    started = time.perf_counter()
    body = await get_share(tmp_path, ngrok_api_url=url)
    assert time.perf_counter() - started < 30  # the app's start-up included; the lookup itself is instant
    assert body["public_url"] is None
    assert body["source"] is None
    prefix = MSG_SHARE_NO_SIDECAR.split("{url}")[0]
    assert isinstance(body["reason"], str) and body["reason"].startswith(prefix + url)


async def test_unresolvable_sidecar_host_is_null_with_reason(tmp_path: Path) -> None:
    # What a plain `docker compose up` (no `public` profile) looks like: the name `ngrok` does not resolve.
    body = await get_share(tmp_path, ngrok_api_url="http://ngrok.invalid:4040/api/tunnels", share_timeout_s=3)
    assert body["public_url"] is None
    assert isinstance(body["reason"], str) and "ngrok.invalid" in body["reason"]


async def test_slow_sidecar_times_out(tmp_path: Path, agent: FakeAgent) -> None:
    agent.delay_s = 2.0
    async for client in share_client(tmp_path, ngrok_api_url=agent.url, share_timeout_s=0.3):
        started = time.perf_counter()
        response = await client.get("/api/v1/share")
        elapsed = time.perf_counter() - started
        assert elapsed < 1.5
        assert response.json() == {
            "public_url": None,
            "source": None,
            "reason": MSG_SHARE_TIMEOUT.format(url=agent.url, timeout=0.3),
            **UNGUARDED,
        }


async def test_agent_without_https_tunnel(tmp_path: Path, agent: FakeAgent) -> None:
    agent.body = json.dumps({"tunnels": [], "uri": "/api/tunnels"}).encode()
    body = await get_share(tmp_path, ngrok_api_url=agent.url)
    reason = MSG_SHARE_NO_TUNNEL.format(url=agent.url)
    assert body == {"public_url": None, "source": None, "reason": reason, **UNGUARDED}


@pytest.mark.parametrize(
    ("status", "payload", "what"),
    [(502, b"bad gateway", "HTTP 502"), (200, b"<html>not the API</html>", "something that is not JSON")],
)
async def test_agent_answering_nonsense(
    tmp_path: Path, agent: FakeAgent, status: int, payload: bytes, what: str
) -> None:
    agent.status, agent.body = status, payload
    body = await get_share(tmp_path, ngrok_api_url=agent.url)
    assert body["public_url"] is None
    assert body["reason"] == MSG_SHARE_BAD_ANSWER.format(url=agent.url, what=what)


async def test_sharing_off_when_url_empty(tmp_path: Path) -> None:
    body = await get_share(tmp_path, ngrok_api_url="")
    assert body == {"public_url": None, "source": None, "reason": MSG_SHARE_OFF, **UNGUARDED}


async def test_answer_cached_briefly(tmp_path: Path, agent: FakeAgent) -> None:
    async for client in share_client(tmp_path, ngrok_api_url=agent.url, share_cache_s=0.5):
        first = (await client.get("/api/v1/share")).json()
        agent.body = TUNNELS_HTTP_THEN_HTTPS  # the agent restarted with a new URL
        second = (await client.get("/api/v1/share")).json()
        assert second == first
        assert len(agent.paths) == 1
        await asyncio.sleep(0.6)
        third = (await client.get("/api/v1/share")).json()
        assert third["public_url"] == "https://5d2a9b1c.ngrok.io"
        assert len(agent.paths) == 2


async def test_in_openapi(tmp_path: Path) -> None:
    async for client in share_client(tmp_path, ngrok_api_url=""):
        spec = (await client.get("/openapi.json")).json()
        schema = spec["paths"]["/api/v1/share"]["get"]["responses"]["200"]["content"]["application/json"]
        assert schema["schema"]["$ref"].endswith("/ShareResponse")


def rendered(folder: Path, **env: str) -> Path:
    """The policy file `fastai-serve share-policy` writes for these NGROK_* settings."""
    return write_policy(render_policy(TunnelSettings.from_env(env)), folder)


@pytest.mark.parametrize(
    ("env", "protected"),
    [
        ({"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_EMAILS": "me@example.com"}, "oauth"),
        ({"NGROK_BASIC_AUTH": "demo:a-long-password"}, "basic"),
        ({"NGROK_ALLOW_ANONYMOUS": "1"}, None),
    ],
)
async def test_protected_is_what_the_agents_policy_asks(
    tmp_path: Path, agent: FakeAgent, env: dict[str, str], protected: str | None
) -> None:
    policy = rendered(tmp_path, **env)
    body = await get_share(tmp_path, ngrok_api_url=agent.url, ngrok_policy_file=policy)
    assert body["public_url"] == PUBLIC_URL_V3
    assert body["protected"] == protected


async def test_protected_is_null_without_a_policy_file(tmp_path: Path, agent: FakeAgent) -> None:
    # Not configured (a tunnel started by hand), or configured and absent: nothing proves a sign-in.
    assert (await get_share(tmp_path, ngrok_api_url=agent.url))["protected"] is None
    absent = tmp_path / "absent.yml"
    assert (await get_share(tmp_path, ngrok_api_url=agent.url, ngrok_policy_file=absent))["protected"] is None


async def test_protected_is_null_while_no_tunnel_runs(tmp_path: Path, agent: FakeAgent) -> None:
    # An old policy in the volume protects nothing when no agent serves a URL.
    agent.body = json.dumps({"tunnels": [], "uri": "/api/tunnels"}).encode()
    policy = rendered(tmp_path, NGROK_BASIC_AUTH="demo:a-long-password")
    body = await get_share(tmp_path, ngrok_api_url=agent.url, ngrok_policy_file=policy)
    assert body["public_url"] is None
    assert body["protected"] is None


async def test_a_new_policy_is_seen_once_the_cached_answer_expires(tmp_path: Path, agent: FakeAgent) -> None:
    policy = rendered(tmp_path, NGROK_ALLOW_ANONYMOUS="1")
    async for client in share_client(
        tmp_path, ngrok_api_url=agent.url, ngrok_policy_file=policy, share_cache_s=0.2
    ):
        assert (await client.get("/api/v1/share")).json()["protected"] is None
        rendered(tmp_path, NGROK_BASIC_AUTH="demo:a-long-password")  # the public profile started again
        await asyncio.sleep(0.3)
        assert (await client.get("/api/v1/share")).json()["protected"] == "basic"


async def test_api_key_required_follows_predict_api_keys(tmp_path: Path) -> None:
    assert (await get_share(tmp_path, ngrok_api_url=""))["api_key_required"] is False
    # The endpoint itself stays open: the page asks it before it has a key.
    body = await get_share(tmp_path, ngrok_api_url="", predict_api_keys=["k1", "k2"])
    assert body["api_key_required"] is True
