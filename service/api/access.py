"""Who may call the model routes, and how often: API keys and per-client rate limits, checked before a
body is read or parsed (a refused client costs a header lookup, never a model's time).

Which routes are the model's is one table, `PROTECTED` (path prefixes): every prediction, explanation,
evaluation and CSV route of every kind, and the Open Inference Protocol's model routes. Health, docs, the
page, reports and `/api/v1/models` stay open; `/metrics` needs `METRICS_API_KEY` when one is set.
`tests/api/test_access.py` walks the OpenAPI schema so a new route is classified on purpose.

- `PREDICT_API_KEYS`: `X-API-Key: <key>` or `Authorization: Bearer <key>`, compared in constant time
  (`hmac.compare_digest` against every configured key, so the time does not say which key nearly matched);
  401 problem+json, `{"error"}` on /v2.
- `RATE_LIMIT` (`20/second;600/minute`): a token bucket per client and rule; the client is the API key,
  else the peer address; when the peer is one of `FORWARDED_ALLOW_IPS` (the ngrok sidecar), the address
  that proxy saw, read from `X-Forwarded-For` right to left past the trusted hops, so an address a client
  wrote into the header itself is never taken (uvicorn's own proxy-header rule; the CLI leaves uvicorn's
  off so there is one place that decides, and `scope["client"]` then names that address for the log too);
  429 with `Retry-After`. Buckets live in the process: with several workers or Ray
  ingress replicas each holds its own, so a client may get up to that many times the rate.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import answer_for
from service.errors import (
    MSG_PREDICT_KEY_MISSING,
    MSG_PREDICT_KEY_WRONG,
    MSG_RATE_LIMITED,
    RateLimited,
    Unauthorized,
)
from service.telemetry import Metrics

# The model's routes: what a key protects and a rate limit meters (path prefixes).
PROTECTED = (
    "/api/v1/tabular/",
    "/api/v1/vision/",
    "/api/v1/text/",
    "/api/v1/collab/",
    "/v2/models/",
)
METRICS_PATH = "/metrics"
# Clients tracked at most; the least recently seen are forgotten first (a full bucket is all they lose).
MAX_CLIENTS = 100_000
_RULE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED)


@dataclass(frozen=True)
class Rule:
    """`count` requests per `seconds`: a bucket of `count` tokens refilled at count/seconds per second."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def parse_rate_limit(text: str) -> list[Rule]:
    """`20/second;600/minute` as its rules; ValueError naming the part it cannot read."""
    rules = []
    for part in (p for p in text.split(";") if p.strip()):
        match = _RULE.match(part)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"cannot read {part.strip()!r}: write N/second, N/minute, N/hour or N/day")
        rules.append(Rule(int(match.group(1)), _PERIODS[match.group(2)]))
    return rules


class RateLimiter:
    """Token buckets per client, one per rule; thread-safe (the event loop and the hot path share it)."""

    def __init__(self, rules: Sequence[Rule], *, max_clients: int = MAX_CLIENTS) -> None:
        self.rules = list(rules)
        self.max_clients = max_clients
        # client -> (tokens per rule, when they were counted)
        self._buckets: OrderedDict[str, tuple[list[float], float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, *, now: float | None = None) -> float:
        """A token from each of `client`'s buckets: 0 when allowed, else the seconds until one would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(client, ([float(r.count) for r in self.rules], now))
            elapsed = max(0.0, now - then)
            tokens = [
                min(float(r.count), t + elapsed * r.rate) for t, r in zip(tokens, self.rules, strict=True)
            ]
            short = [(1.0 - t) / r.rate for t, r in zip(tokens, self.rules, strict=True) if t < 1.0]
            if not short:
                tokens = [t - 1.0 for t in tokens]
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return max(short, default=0.0)


def _networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip() and e.strip() != "*"]


class AccessMiddleware:
    """401 without a valid key and 429 over the rate, on the model's routes only (and /metrics' key)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[str],
        metrics_key: str | None,
        limiter: RateLimiter | None,
        forwarded_allow: Sequence[str],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.metrics_key = metrics_key.encode() if metrics_key else None
        self.limiter = limiter
        self.trust_all = "*" in [f.strip() for f in forwarded_allow]
        self.trusted = _networks(forwarded_allow)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.trust_all or self.trusted:
            self._resolve_client(scope)
        path: str = scope["path"]
        if path == METRICS_PATH and self.metrics_key is not None:
            if not self._matches(_presented_key(scope), [self.metrics_key]):
                await answer_for(path, Unauthorized(MSG_PREDICT_KEY_MISSING))(scope, receive, send)
                return
        elif is_protected(path) and (self.keys or self.limiter is not None):
            key = _presented_key(scope)
            if self.keys and not self._matches(key, self.keys):
                detail = MSG_PREDICT_KEY_WRONG if key else MSG_PREDICT_KEY_MISSING
                await answer_for(path, Unauthorized(detail))(scope, receive, send)
                return
            if self.limiter is not None:
                wait = self.limiter.take(self._client(scope, key if self.keys else None))
                if wait > 0:
                    self.metrics.rate_limited.inc()
                    retry = max(1, math.ceil(wait))
                    error = RateLimited(MSG_RATE_LIMITED.format(seconds=retry), retry_after=retry)
                    await answer_for(path, error)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    def _matches(presented: bytes | None, keys: list[bytes]) -> bool:
        if not presented:
            return False
        found = False
        for key in keys:  # every key compared, whichever matches
            found |= hmac.compare_digest(presented, key)
        return found

    @staticmethod
    def _client(scope: Scope, key: bytes | None) -> str:
        """The (valid) API key's digest, else the client's address."""
        if key:
            return "key:" + hashlib.sha256(key).hexdigest()[:32]
        return "ip:" + str((scope.get("client") or ("unknown", 0))[0])

    def _resolve_client(self, scope: Scope) -> None:
        """Behind a trusted proxy, the client is the last `X-Forwarded-For` address no trusted proxy
        wrote: scanned right to left (each proxy appends the address it saw)."""
        client = scope.get("client")
        forwarded = _header(scope, b"x-forwarded-for")
        if client is None or not forwarded or not self._trusted(str(client[0])):
            return
        hops = [h.strip().decode("latin-1") for h in forwarded.split(b",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                scope["client"] = (hop, 0)
                return
        if hops:
            scope["client"] = (hops[0], 0)

    def _trusted(self, peer: str) -> bool:
        if self.trust_all:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _presented_key(scope: Scope) -> bytes | None:
    """`X-API-Key`, else the token of `Authorization: Bearer`."""
    key = _header(scope, b"x-api-key")
    if key:
        return key.strip()
    authorization = _header(scope, b"authorization")
    if authorization and authorization[:7].lower() == b"bearer ":
        return authorization[7:].strip() or None
    return None
