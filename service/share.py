"""The public URL to share the service at: asked of the ngrok sidecar's local agent API, cached briefly.

`docker compose --profile public up` starts an ngrok agent beside the api; its local API
(`GET /api/tunnels`) lists the tunnels it opened, each with its `public_url`. How the tunnel asks visitors
to sign in is read from the traffic policy file the agent was started with (`NGROK_POLICY_FILE`, the
compose volume `share-policy` renders it into; `service.share_policy`): what ngrok enforces, not what the
environment meant. Knows nothing about HTTP routes: the API layer turns a `ShareInfo` into the response.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from service.errors import (
    MSG_SHARE_BAD_ANSWER,
    MSG_SHARE_NO_SIDECAR,
    MSG_SHARE_NO_TUNNEL,
    MSG_SHARE_OFF,
    MSG_SHARE_TIMEOUT,
)
from service.share_policy import Protection, read_protection


@dataclass(frozen=True)
class ShareInfo:
    public_url: str | None
    source: Literal["ngrok"] | None
    reason: str | None = None
    # Only with a tunnel: an old policy file left in the volume protects nothing while no agent runs.
    protected: Protection | None = None


def public_https_url(payload: Any) -> str | None:
    """The first https tunnel's public URL in an agent's `/api/tunnels` answer, if it has one."""
    tunnels = payload.get("tunnels") if isinstance(payload, dict) else None
    for tunnel in tunnels if isinstance(tunnels, list) else []:
        url = tunnel.get("public_url") if isinstance(tunnel, dict) else None
        if isinstance(url, str) and url.startswith("https://"):
            return url
    return None


class ShareLookup:
    """Asks the sidecar at most once per `cache_s` (answers and failures alike), within `timeout_s`."""

    def __init__(
        self, *, api_url: str, timeout_s: float, cache_s: float, policy_file: Path | None = None
    ) -> None:
        self.api_url = api_url.strip()
        self.policy_file = policy_file
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        # The sidecar is a neighbour on the compose network: never route it through an HTTP(S)_PROXY.
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False)
        self._cached: tuple[float, ShareInfo] | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> ShareInfo:
        if not self.api_url:
            return ShareInfo(public_url=None, source=None, reason=MSG_SHARE_OFF)
        async with self._lock:  # concurrent callers share one lookup
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            info = await self._ask()
            self._cached = (time.monotonic(), info)
            return info

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _ask(self) -> ShareInfo:
        try:
            # One deadline for the whole exchange (name lookup, connect, read), not one per phase.
            response = await asyncio.wait_for(self._client.get(self.api_url), self.timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            return self._none(MSG_SHARE_TIMEOUT.format(url=self.api_url, timeout=self.timeout_s))
        except httpx.HTTPError as exc:
            error = str(exc) or type(exc).__name__
            return self._none(MSG_SHARE_NO_SIDECAR.format(url=self.api_url, error=error))
        if response.status_code != 200:
            return self._bad_answer(f"HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError:
            return self._bad_answer("something that is not JSON")
        url = public_https_url(payload)
        if url is None:
            return self._none(MSG_SHARE_NO_TUNNEL.format(url=self.api_url))
        return ShareInfo(public_url=url, source="ngrok", protected=await self._protection())

    async def _protection(self) -> Protection | None:
        if self.policy_file is None:
            return None
        # A small local file, but still a disk read: off the event loop, like every other one.
        return await asyncio.to_thread(read_protection, self.policy_file)

    def _bad_answer(self, what: str) -> ShareInfo:
        return self._none(MSG_SHARE_BAD_ANSWER.format(url=self.api_url, what=what))

    @staticmethod
    def _none(reason: str) -> ShareInfo:
        return ShareInfo(public_url=None, source=None, reason=reason)
