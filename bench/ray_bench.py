"""`make bench-ray`: the same one-item requests (the demo tabular and vision models) through Ray Serve and
through the plain server, in one run on this machine, with wrk at 1 and 32 clients:
- `plain`: the single server (`fastai-serve serve`);
- `ray_1`, `ray_2`: `fastai-serve serve --ray` with its defaults (the local front: this process serves HTTP
  and sends batches to the model deployments), 1 and 2 replicas per model, CPUs fitted to the cluster;
- `ray_proxy_1`: RAY_FRONT=proxy (Serve's proxy and our ingress deployment, what `serve deploy` runs);
- `textbook`: the Ray Serve app of Ray's documentation around the same exports (bench/peers/ray_textbook.py:
  FastAPI ingress, `@serve.batch` around `get_preds`, max_ongoing_requests=64), 1 replica.
Each Ray run gets a fresh local cluster of this machine's cores. On a 2-core machine this measures Ray's
overhead, not scaling. Run from the repository root (`python -m bench.ray_bench`); results go to
.cache/bench/ray.json.
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


RAY_BIN = str(Path(sys.executable).parent / "ray")


def _ray_start() -> int:
    """A fresh one-node cluster of this machine's cores; its GCS port."""
    gcs = free_port()
    cores = os.cpu_count() or 2
    subprocess.run(
        [RAY_BIN, "start", "--head", f"--port={gcs}", f"--num-cpus={cores}", "--include-dashboard=false"],
        check=True,
        capture_output=True,
    )
    return gcs


def _wait_ready(base: str, log: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Ray deployment not ready; see {log}")


def demo_store(store: Path) -> Path:
    """The two demo models alone (hard links of `store`'s files: the registry never follows a symbolic link
    out of its store), which is what the textbook app serves."""
    linked = CACHE / "bench" / "ray-store"
    shutil.rmtree(linked, ignore_errors=True)
    linked.mkdir(parents=True)
    for name in (DEMO_TABULAR.model, DEMO_VISION.model):
        shutil.copytree(store / name, linked / name, copy_function=os.link)
    return linked


def on_ray(replicas: int, seconds: float, store: Path, *, front: str = "local") -> dict[str, Any]:
    """`fastai-serve serve --ray` with its defaults (CPUs fitted to the cluster) on a fresh local cluster."""
    port = free_port()
    gcs = _ray_start()
    cores = os.cpu_count() or 2
    env = {
        **os.environ,
        **server_env(store),
        "FASTAI_SERVE_RAY_FRONT": front,
        # The replicas share the cores: each model's replicas get them between them, as threads.
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
    log = (CACHE / f"bench-ray-{front}-{replicas}.log").open("wb")
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, log.name)
        return measure(base, seconds, split=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([RAY_BIN, "stop", "--force"], check=False, capture_output=True)


def textbook(seconds: float, store: Path) -> dict[str, Any]:
    """The textbook Ray Serve app (bench/peers/ray_textbook.py), 1 replica, on a fresh local cluster."""
    import ray
    from ray import serve

    from bench.peers.ray_textbook import build

    port = free_port()
    gcs = _ray_start()
    try:
        ray.init(address=f"127.0.0.1:{gcs}", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(store), name="textbook", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, "the Ray session logs")
        return measure(base, seconds, split=False)
    finally:
        serve.shutdown()
        ray.shutdown()
        subprocess.run([RAY_BIN, "stop", "--force"], check=False, capture_output=True)


RUNS = ("plain", "ray_1", "ray_2", "ray_proxy_1", "textbook")


def table(results: dict[str, Any]) -> str:
    lines = [
        "| | " + " | ".join(RUNS) + " | ray_1 / plain | ray_1 / textbook |",
        "|---|" + "---|" * (len(RUNS) + 2),
    ]
    for kind in KINDS:
        for clients in CLIENTS:
            key = f"{kind}_c{clients}"
            cells = []
            for run in RUNS:
                r = results[run][key]
                cells.append(f"{r['requests_per_s']:,.0f} ({r['p50_ms']:.1f}, {r['p99_ms']:.1f})")
            ours = results["ray_1"][key]["requests_per_s"]
            vs_plain = ours / results["plain"][key]["requests_per_s"]
            vs_textbook = ours / results["textbook"][key]["requests_per_s"]
            lines.append(
                f"| {kind}, {clients} client(s) | {' | '.join(cells)} | {vs_plain:.2f} | {vs_textbook:.2f} |"
            )
    lines.append("\nreq/s (p50, p99 ms).")
    for kind in KINDS:
        ray_1, plain_1 = results["ray_1"][f"{kind}_c1"], results["plain"][f"{kind}_c1"]
        lines.append(
            f"{kind}, one client: Ray p50 {ray_1['p50_ms']:.1f} ms = plain {plain_1['p50_ms']:.1f} ms "
            f"+ {ray_1['p50_ms'] - plain_1['p50_ms']:.1f} ms"
            + (
                f" (of which our front {ray_1['ingress_mean_ms']:.1f} ms on average, incl. the replica call)"
                if ray_1.get("ingress_mean_ms") is not None
                else ""
            )
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
    store = args.store.resolve()  # the servers run in the repository root, whatever the caller's folder
    results = run(args.seconds, store)
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


def run(seconds: float, store: Path) -> dict[str, Any]:
    """Every run of RUNS, one after the other (each Ray run on a fresh local cluster)."""
    if not shutil.which("wrk"):
        raise SystemExit("the Ray rows need wrk (apt-get install wrk)")
    store = demo_store(store)
    results = {"plain": plain(seconds, store)}
    for replicas in (1, 2):
        results[f"ray_{replicas}"] = on_ray(replicas, seconds, store)
    results["ray_proxy_1"] = on_ray(1, seconds, store, front="proxy")
    results["textbook"] = textbook(seconds, store)
    return results


if __name__ == "__main__":
    main()
