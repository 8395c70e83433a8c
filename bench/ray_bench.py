"""`make bench-ray`: the same one-item requests through Ray Serve (1 and 2 replicas per model) and through the
plain server, in one run on this machine, with wrk at 1 and 32 clients.

On a 2-core machine this measures Ray's overhead, not scaling: every Ray request crosses Serve's proxy, the
ingress replica (our app: validation and preprocessing) and a model replica (the batched forward), two actor
calls more than the plain server's in-process batcher. The split of a one-client request's time: the
client's p50, the ingress's mean request time (its /metrics), and the rest (proxy, network, handles).
Run from the repository root (`python -m bench.ray_bench`); results go to .cache/bench/ray.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import CACHE, DEFAULT_STORE, ROOT
from bench.cases import DEMO_TABULAR, DEMO_VISION
from bench.load import load_wrk, one_item
from bench.servers import free_port, server_env, start_ours

RESULTS = CACHE / "bench" / "ray.json"
KINDS = (DEMO_TABULAR.key, DEMO_VISION.key)  # "tabular", "vision": the demo models
CLIENTS = (1, 32)


def _ingress_mean_ms(base: str, route: str) -> tuple[float, float]:
    """(sum seconds, count) of fastai_serve_request_seconds for `route`, from the answering ingress."""
    total = count = 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if f'route="{route}"' not in line:
            continue
        if line.startswith("fastai_serve_request_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("fastai_serve_request_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


ROUTES = {"tabular": "/api/v1/tabular/{name}/predict", "vision": "/api/v1/vision/{name}/predict"}


def measure(base: str, seconds: float, *, split: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    requests = {case.key: one_item(case) for case in (DEMO_TABULAR, DEMO_VISION)}
    for kind in KINDS:
        for clients in CLIENTS:
            before = _ingress_mean_ms(base, ROUTES[kind]) if split and clients == 1 else None
            result: dict[str, Any] = load_wrk(base, requests[kind], clients, seconds)
            if before is not None:
                after = _ingress_mean_ms(base, ROUTES[kind])
                n = after[1] - before[1]
                result["ingress_mean_ms"] = (after[0] - before[0]) / n * 1000 if n else None
            out[f"{kind}_c{clients}"] = result
    return out


def plain(seconds: float, store: Path) -> dict[str, Any]:
    port = free_port()
    proc = start_ours(port, server_env(store))
    try:
        return measure(f"http://127.0.0.1:{port}", seconds, split=False)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def on_ray(replicas: int, seconds: float, store: Path) -> dict[str, Any]:
    """`fastai-serve serve --ray` on a local one-node cluster of this machine's cores."""
    port, gcs = free_port(), free_port()
    cores = os.cpu_count() or 2
    ray_bin = str(Path(sys.executable).parent / "ray")
    subprocess.run(
        [ray_bin, "start", "--head", f"--port={gcs}", f"--num-cpus={cores}", "--include-dashboard=false"],
        check=True,
        capture_output=True,
    )
    env = {
        **os.environ,
        **server_env(store),
        # The replicas share the cores: each model's replicas get them between them, as threads.
        "FASTAI_SERVE_RAY_NUM_CPUS": str(0.25),
        "FASTAI_SERVE_TORCH_THREADS": str(max(1, cores // replicas)),
    }
    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--ray",
        f"127.0.0.1:{gcs}",
        "--replicas",
        str(replicas),
    ]
    log = (CACHE / f"bench-ray-{replicas}.log").open("wb")
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"Ray deployment not ready; see {log.name}")
        return measure(base, seconds, split=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([ray_bin, "stop", "--force"], check=False, capture_output=True)


def table(results: dict[str, Any]) -> str:
    lines = [
        "| | plain req/s (p50, p99 ms) | Ray 1 replica | Ray 2 replicas | Ray 1 / plain |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        for clients in CLIENTS:
            key = f"{kind}_c{clients}"
            cells = []
            for run in ("plain", "ray_1", "ray_2"):
                r = results[run][key]
                cells.append(f"{r['requests_per_s']:,.0f} ({r['p50_ms']:.1f}, {r['p99_ms']:.1f})")
            ratio = results["ray_1"][key]["requests_per_s"] / results["plain"][key]["requests_per_s"]
            lines.append(f"| {kind}, {clients} client(s) | {' | '.join(cells)} | {ratio:.2f} |")
    for kind in KINDS:
        r = results["ray_1"][f"{kind}_c1"]
        if r.get("ingress_mean_ms") is not None:
            lines.append(
                f"\n{kind}, one client through Ray: p50 {r['p50_ms']:.1f} ms, of which the ingress (our app, "
                f"incl. the call to the model replica) {r['ingress_mean_ms']:.1f} ms on average; plain server "
                f"p50 {results['plain'][f'{kind}_c1']['p50_ms']:.1f} ms"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each wrk run")
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help="the model store with the demo models (default: %(default)s)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench-ray needs wrk (apt-get install wrk)")
    store = args.store.resolve()  # the servers run in the repository root, whatever the caller's folder
    results = {"plain": plain(args.seconds, store)}
    for replicas in (1, 2):
        results[f"ray_{replicas}"] = on_ray(replicas, args.seconds, store)
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
