"""HTTP rows: ours vs the naive server per case, /v2 beside /api/v1, two workers, memory, one large CSV, and
`recommend` over all the items of a 10,000-item recommender."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bench.cases import CASES, DEMO_TABULAR, RECOMMENDS, Case, RecommendCase
from bench.grpc_load import drive_grpc, grpc_inputs
from bench.load import Request, drive, one_item, one_item_v2
from bench.servers import free_port, rss_kb, server_env, start_naive, start_ours, stop_process
from service.training import data

LARGE_CSV_ROWS = 100_000


def http(
    seconds: float,
    rss_requests: int,
    *,
    store: Path,
    cases: tuple[Case, ...] = CASES,
    recommends: tuple[RecommendCase, ...] = RECOMMENDS,
) -> dict[str, Any]:
    """Every case's one-item requests through ours and the naive server, then ours with two workers;
    `recommend` through ours (the naive server has no such route: the cookbook has no recommend)."""
    env = server_env(store)
    v1 = {case.key: one_item(case) for case in cases}
    v2 = {case.key: one_item_v2(case, v1[case.key]) for case in cases}
    over_grpc = {case.key: grpc_inputs(case, v1[case.key]) for case in cases}
    out: dict[str, Any] = {}
    for label in ("ours", "naive"):
        port, grpc_port = free_port(), free_port()
        proc = (
            start_ours(port, env, grpc_port=grpc_port) if label == "ours" else start_naive(port, env, cases)
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for request in v1.values():
                warm_up(base, request)
                for clients in (1, 8, 32):
                    out[f"{label}_{request.name}_c{clients}"] = drive(base, request, clients, seconds)
            for request in v2.values() if label == "ours" else ():
                for clients in (1, 32):
                    out[f"ours_{request.name}_c{clients}"] = drive(base, request, clients, seconds)
            for case in cases if label == "ours" else ():
                inputs = over_grpc[case.key]
                for clients in (1, 32) if inputs is not None else ():
                    address = f"127.0.0.1:{grpc_port}"
                    out[f"ours_grpc_{case.key}_c{clients}"] = drive_grpc(
                        address, case.model, inputs, clients, seconds
                    )
            for recommend in recommends if label == "ours" else ():
                request = recommend_request(recommend)
                warm_up(base, request)
                for clients in (1, 32):
                    out[f"ours_{recommend.key}_c{clients}"] = drive(base, request, clients, seconds)
            if label == "ours":
                out["ours_memory"] = memory_growth(base, proc.pid, v1[DEMO_TABULAR.key], rss_requests)
                out["ours_large_csv"] = large_csv(base, proc.pid)
        finally:
            stop_process(proc)
    # The same server as `fastai-serve serve --workers 2` runs it: a process per core, each with every
    # model (ONNX Runtime's threads not spinning, so the workers do not take each other's cores).
    port = free_port()
    proc = start_ours(port, env, workers=2)
    try:
        for request in v1.values():
            for clients in (1, 32):
                base = f"http://127.0.0.1:{port}"
                out[f"workers2_{request.name}_c{clients}"] = drive(base, request, clients, seconds)
    finally:
        stop_process(proc)
    return out


def warm_up(base: str, request: Request) -> None:
    """One request before a model's load steps: its first call's one-off costs (a learner's first
    `predict`, lazy initialisation) are not its speed, and a short step could hold nothing else."""
    with httpx.Client(base_url=base, timeout=300) as client:
        client.request(request.method, request.path, **request.httpx_kwargs())


def _share(a: float, b: float) -> float | None:
    """a / b, or None (null in results.json) when a step answered nothing to divide by."""
    return a / b if b else None


def recommend_request(case: RecommendCase, user: str = "1") -> Request:
    """GET recommend for one user the synthetic recommender knows: every item scored, the best `count`."""
    return Request(
        case.key, f"/api/v1/collab/{case.model}/recommend?user={user}&n={case.count}", method="GET"
    )


def kind_ratios(h: dict[str, Any], cases: tuple[Case, ...]) -> dict[str, Any]:
    """Per case, ours vs the naive server: requests/s at 32 clients, and the naive p50 over ours at 1."""
    out: dict[str, Any] = {}
    for case in cases:
        ours1, naive1 = h[f"ours_{case.key}_c1"], h[f"naive_{case.key}_c1"]
        ours32, naive32 = h[f"ours_{case.key}_c32"], h[f"naive_{case.key}_c32"]
        out[case.key] = {
            "c32_requests_vs_naive": _share(ours32["requests_per_s"], naive32["requests_per_s"]),
            "c1_naive_p50_over_ours": _share(naive1["p50_ms"], ours1["p50_ms"]),
        }
    return out


# The access step: a key that opens the model routes, and a limit no load step reaches (every request still
# takes a token from its client's buckets: the limiter's cost is measured, not its refusals).
ACCESS_KEY = "bench-key"
ACCESS_LIMIT = "1000000/second;100000000/minute"
ACCESS_ROUNDS = 4


def access_overhead(seconds: float, *, store: Path, case: Case = DEMO_TABULAR) -> dict[str, Any]:
    """One-item requests through a server with API keys and a rate limit beside the same server without,
    in alternating rounds (the host's drift weighs on both alike); medians of the rounds."""
    plain = one_item(case)
    keyed = Request(
        plain.name, plain.path, json=plain.json, files=plain.files, headers={"X-API-Key": ACCESS_KEY}
    )
    guarded_env = {
        **server_env(store),
        "FASTAI_SERVE_PREDICT_API_KEYS": f"other-key,{ACCESS_KEY}",
        "FASTAI_SERVE_RATE_LIMIT": ACCESS_LIMIT,
    }
    ports = {"open": free_port(), "guarded": free_port()}
    procs = {
        "open": start_ours(ports["open"], server_env(store)),
        "guarded": start_ours(ports["guarded"], guarded_env),
    }
    requests = {"open": plain, "guarded": keyed}
    rounds: dict[str, list[dict[str, float]]] = {}
    try:
        for clients in (1, 32):
            for i in range(ACCESS_ROUNDS):
                order = ("open", "guarded") if i % 2 == 0 else ("guarded", "open")
                for label in order:
                    base = f"http://127.0.0.1:{ports[label]}"
                    rounds.setdefault(f"{label}_c{clients}", []).append(
                        drive(base, requests[label], clients, seconds)
                    )
    finally:
        for proc in procs.values():
            stop_process(proc)
    out: dict[str, Any] = {}
    for key, runs in rounds.items():
        out[key] = {
            "requests_per_s": float(np.median([r["requests_per_s"] for r in runs])),
            "p50_ms": float(np.median([r["p50_ms"] for r in runs])),
            "errors": sum(r["errors"] for r in runs),
        }
    for clients in (1, 32):
        out[f"overhead_c{clients}"] = (
            1 - out[f"guarded_c{clients}"]["requests_per_s"] / out[f"open_c{clients}"]["requests_per_s"]
        )
    # HTTP rounds differ by more than the check costs: its own time, in-process, beside the request's.
    out["check_us"] = access_check_us()
    out["check_share_c1"] = out["check_us"] / 1e3 / out["open_c1"]["p50_ms"]
    return out


def access_check_us(calls: int = 50_000) -> float:
    """Microseconds `AccessMiddleware` adds to one request with a valid key under a rate limit: the same
    scope through it and straight to an app that answers nothing, alternating blocks, medians."""
    from service.api.access import AccessMiddleware, RateLimiter, parse_rate_limit
    from service.telemetry import Metrics

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    guarded = AccessMiddleware(
        app,
        keys=["other-key", ACCESS_KEY],
        metrics_key=None,
        limiter=RateLimiter(parse_rate_limit(ACCESS_LIMIT)),
        forwarded_allow=[],
        metrics=Metrics(),
    )
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"x-api-key", ACCESS_KEY.encode()),
    ]
    scope = {
        "type": "http",
        "path": "/api/v1/tabular/adult-income/predict",
        "client": ("127.0.0.1", 5000),
        "headers": headers,
    }

    async def block(target: Any) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await target(scope, None, None)
        return (time.perf_counter() - started) / calls

    async def rounds() -> float:
        costs = []
        for _ in range(5):
            costs.append(await block(guarded) - await block(app))
        return float(np.median(costs))

    return asyncio.run(rounds()) * 1e6


def memory_growth(base: str, pid: int, request: Request, requests: int) -> dict[str, float]:
    """The server's RSS after a warm-up and after `requests` more of `request`, 16 at a time."""

    async def fire(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one() -> None:
                async with sem:
                    await client.post(request.path, **request.httpx_kwargs())

            await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(fire(500))  # warm-up
    warm = rss_kb(pid)
    asyncio.run(fire(requests))
    after = rss_kb(pid)
    return {
        "rss_after_warmup_mb": warm / 1024,
        "rss_after_requests_mb": after / 1024,
        "requests": requests,
        "peak_rss_mb": rss_kb(pid, "VmHWM") / 1024,
        "P6_growth_pct": (after - warm) / warm * 100,
    }


def large_csv(base: str, pid: int) -> dict[str, Any]:
    """One 100,000-row CSV through evaluate and predict/csv (JSON, then `Accept: text/csv`): the time, and
    the server's peak RSS growth during the request over the upload's size. The peak is reset through
    /proc/<pid>/clear_refs before each request, so each figure is that request's own: first the server's
    first large file (evaluate, after a 1,000-row one: the allocator's arenas and Arrow's pools grow to a
    large file's size once), then each endpoint again (what every later large file costs)."""
    # The demo's whole file, label included: evaluate needs it.
    frame = pd.read_csv(data.demo_adult_csv(), skipinitialspace=True, na_values=["?"])
    frame = pd.concat([frame] * (LARGE_CSV_ROWS // len(frame) + 1), ignore_index=True).iloc[:LARGE_CSV_ROWS]
    upload = frame.to_csv(index=False).encode()
    small = frame.iloc[:1000].to_csv(index=False).encode()
    model = f"/api/v1/tabular/{DEMO_TABULAR.model}"
    steps = {
        "evaluate": (f"{model}/evaluate", {}),
        "predict_csv_json": (f"{model}/predict/csv", {}),
        "predict_csv_text": (f"{model}/predict/csv", {"Accept": "text/csv"}),
    }
    out: dict[str, Any] = {"rows": LARGE_CSV_ROWS, "upload_mb": len(upload) / 2**20}
    with httpx.Client(base_url=base, timeout=300) as client:

        def measured(path: str, headers: dict[str, str], body: bytes) -> dict[str, float]:
            before = rss_kb(pid)
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from now
            started = time.perf_counter()
            response = client.post(path, files={"file": ("big.csv", body, "text/csv")}, headers=headers)
            took = time.perf_counter() - started
            response.raise_for_status()
            growth = (rss_kb(pid, "VmHWM") - before) * 1024
            return {
                "seconds": took,
                "rows_per_s": LARGE_CSV_ROWS / took,
                "answer_mb": len(response.content) / 2**20,
                "peak_growth_mb": growth / 2**20,
                "peak_growth_over_upload": growth / len(upload),
            }

        path, headers = steps["evaluate"]
        client.post(path, files={"file": ("small.csv", small, "text/csv")}).raise_for_status()
        out["first_large_file"] = measured(path, headers, upload)
        for name, (path, headers) in steps.items():
            out[name] = measured(path, headers, upload)
    return out
