"""Who may call the model routes, and how often: API keys and per-client rate limits, checked before a
body is read or parsed (a refused client costs a header lookup, never a model's time).

Which routes are the model's is one table, `PROTECTED` (path prefixes): every prediction, explanation,
evaluation and CSV route of every kind, and the Open Inference Protocol's model routes; and under
`/api/v1/models/{name}/`, `PROTECTED_MODEL_ROUTES` (feedback). Health, docs, the
page, reports and `/api/v1/models` stay open; `/metrics` needs `METRICS_API_KEY` when one is set.
`tests/api/test_access.py` walks the OpenAPI schema so a new route is classified on purpose. The gRPC
door (`service.api.v2.grpc_service`) puts its model RPCs (ModelReady, ModelMetadata, ModelInfer; the
server ones stay open, as /v2/health is) through the same `ModelGate`, with the key from its metadata.

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

import hmac
import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import answer_for
from service.errors import (
    MSG_PREDICT_KEY_MISSING,
    MSG_PREDICT_KEY_WRONG,
    MSG_RATE_LIMITED,
    RateLimited,
    ServiceError,
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


# Model routes under /api/v1/models/{name}/ (the rest of that prefix, the listing and details, is open).
PROTECTED_MODEL_ROUTES = ("/feedback", "/monitor")


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED) or (
        path.startswith("/api/v1/models/") and path.endswith(PROTECTED_MODEL_ROUTES)
    )


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
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, *, now: float | None = None) -> float:
        """A token from each of `client`'s buckets: 0 when allowed, else the seconds until one would be."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = [now, *(float(r.count) for r in self.rules)]
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
            # bucket = [when last counted, tokens of each rule], updated in place (one list per client)
            elapsed = max(0.0, now - bucket[0])
            bucket[0] = now
            for i, rule in enumerate(self.rules, start=1):
                tokens = min(float(rule.count), bucket[i] + elapsed * rule.rate)
                bucket[i] = tokens
                if tokens < 1.0:
                    wait = max(wait, (1.0 - tokens) / rule.rate)
            if wait == 0.0:
                for i in range(1, len(bucket)):
                    bucket[i] -= 1.0
        return wait


def _networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip() and e.strip() != "*"]


class ModelGate:
    """The key check and rate limit of the model's routes, whichever door a call comes in by (this
    middleware for HTTP, `service.api.v2.grpc_service` for gRPC; they share one `RateLimiter`, so a client
    has one budget across both)."""

    def __init__(self, *, keys: Sequence[str], limiter: RateLimiter | None, metrics: Metrics) -> None:
        self.keys = [k.encode() for k in keys]
        self.limiter = limiter
        self.metrics = metrics

    @property
    def active(self) -> bool:
        return bool(self.keys) or self.limiter is not None

    def admit(self, key: bytes | None, address: str) -> ServiceError | None:
        """None when a call presenting `key` from `address` may go on, else the refusal (401, 429)."""
        index = _which_key(key, self.keys) if self.keys else None
        if self.keys and index is None:
            return Unauthorized(MSG_PREDICT_KEY_WRONG if key else MSG_PREDICT_KEY_MISSING)
        if self.limiter is not None:
            # A client is its key (which of the keys: no secret kept in memory twice), else its address.
            client = f"key:{index}" if index is not None else f"ip:{address}"
            wait = self.limiter.take(client)
            if wait > 0:
                self.metrics.rate_limited.inc()
                retry = max(1, math.ceil(wait))
                return RateLimited(MSG_RATE_LIMITED.format(seconds=retry), retry_after=retry)
        return None


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
        self.gate = ModelGate(keys=keys, limiter=limiter, metrics=metrics)
        self.metrics_key = metrics_key.encode() if metrics_key else None
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
            if _which_key(_presented_key(scope), [self.metrics_key]) is None:
                await answer_for(path, Unauthorized(MSG_PREDICT_KEY_MISSING))(scope, receive, send)
                return
        elif is_protected(path) and self.gate.active:
            refusal = self.gate.admit(_presented_key(scope), str((scope.get("client") or ("?",))[0]))
            if refusal is not None:
                await answer_for(path, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

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
    return presented_key(scope["headers"])


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """`X-API-Key`, else the token of `Authorization: Bearer` (one pass over the headers, names in lower
    case as HTTP/2 and ASGI give them)."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key" and value:
            return bytes(value).strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = bytes(value[7:]).strip() or None
    return bearer


def _which_key(presented: bytes | None, keys: list[bytes]) -> int | None:
    """The index of the key `presented` is, comparing with every key in constant time (the time says
    neither which key nor how much of it matched)."""
    if not presented:
        return None
    found = None
    for i, key in enumerate(keys):
        if hmac.compare_digest(presented, key):
            found = i
    return found
