"""`python -m bench`: the command line (see bench/__init__.py for what it measures)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

import bench
from bench import CACHE, DEFAULT_STORE, explain_bench, monitor_bench, ray_bench
from bench.cases import CASES, RECOMMENDS, TASK_TARGET, Case, TabularCase, case_by_key
from bench.goals import goal_lines, machine_state
from bench.http_rows import access_overhead, http, kind_ratios
from bench.inprocess import IMAGES, in_process
from bench.models import bench_store, descriptions
from bench.peer import PEER_VENV, peer
from bench.report import access_lines, peer_table, recommend_lines, table, task_lines, write_results
from bench.timing import shorten
from service.device import device_label, resolve_device
from service.settings import Settings
from service.startup import configure_torch_threads

RESULTS = CACHE / "bench" / "results.json"
# --quick: every timing at this fraction of its length, to see that the bench runs, not to measure.
QUICK_FRACTION = 0.05
# Its own file: `make bench-record` copies RESULTS, which a smoke run's numbers must never become.
QUICK_RESULTS = CACHE / "bench" / "results-quick.json"


def ratios(h: dict[str, Any], ip: dict[str, Any]) -> dict[str, float]:
    """The issue's HTTP figures (P4, P5, P7) from the demo models' rows."""
    return {
        "P4_vs_P3": h["ours_vision_c32"]["requests_per_s"] / ip["vision_256_images"]["ours_images_per_s"],
        "P4_vs_naive": h["ours_vision_c32"]["requests_per_s"] / h["naive_vision_c32"]["requests_per_s"],
        "P5_vs_naive": h["ours_tabular_c32"]["requests_per_s"] / h["naive_tabular_c32"]["requests_per_s"],
        "P5_p99_over_p50": h["ours_tabular_c32"]["p99_ms"] / h["ours_tabular_c32"]["p50_ms"],
        "P7_vs_naive_p50": h["naive_vision_c1"]["p50_ms"] / h["ours_vision_c1"]["p50_ms"],
        "P4_workers2_vs_P3": h["workers2_vision_c32"]["requests_per_s"]
        / ip["vision_256_images"]["ours_images_per_s"],
        "P4_workers2_vs_naive": h["workers2_vision_c32"]["requests_per_s"]
        / h["naive_vision_c32"]["requests_per_s"],
        "P7_workers2_vs_naive_p50": h["naive_vision_c1"]["p50_ms"] / h["workers2_vision_c1"]["p50_ms"],
    }


def task_ratios(results: dict[str, Any], cases: tuple[Case, ...] = CASES) -> dict[str, Any]:
    """Each case `beside` another: its speed as a share of that one's, row by row (>= TASK_TARGET aimed for):
    in-process (one row's latency, 10k rows' or 256 images' throughput), then our server's requests/s at 1
    and 32 clients (ours_tabular_regression_c32 / ours_tabular_c32)."""
    ip, h = results["in_process"], results.get("http")
    out: dict[str, Any] = {}
    for case in cases:
        if case.beside is None:
            continue
        base = case_by_key(case.beside, cases)
        shares: dict[str, float] = {}
        if isinstance(case, TabularCase):
            one, one_base = ip[f"{case.key}_one_row"], ip[f"{base.key}_one_row"]
            shares["one_row"] = one_base["ours_ms"] / one["ours_ms"]
            rows, rows_base = ip[f"{case.key}_10k_rows"], ip[f"{base.key}_10k_rows"]
            shares["10k_rows"] = rows["ours_rows_per_s"] / rows_base["ours_rows_per_s"]
        else:
            images, images_base = ip[f"{case.key}_{IMAGES}_images"], ip[f"{base.key}_{IMAGES}_images"]
            shares[f"{IMAGES}_images"] = images["ours_images_per_s"] / images_base["ours_images_per_s"]
        if h is not None:
            for clients in (1, 32):
                row, row_base = h[f"ours_{case.key}_c{clients}"], h[f"ours_{base.key}_c{clients}"]
                shares[f"ours_c{clients}"] = row["requests_per_s"] / row_base["requests_per_s"]
        out[f"{case.key}_vs_{base.key}"] = {**shares, "target": TASK_TARGET}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=bench.__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each HTTP load step")
    parser.add_argument("--rss-requests", type=int, default=10_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--skip-ray", action="store_true", help="without the Ray rows (make bench-ray runs them alone)"
    )
    parser.add_argument(
        "--peer", action="store_true", help="also BentoML, side by side (make bench-peer builds it)"
    )
    parser.add_argument(
        "--peer-only", action="store_true", help="only the BentoML rows, added to the last results"
    )
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    parser.add_argument(
        "--access-only",
        action="store_true",
        help="only the API-key and rate-limit overhead on one-row requests, added to the last results",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=(
            "the model store with the demo models (default: %(default)s); the bench serves them, linked,"
            " from its own store beside the models it trains itself (.cache/bench/store)"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"a smoke run: every timing at {QUICK_FRACTION:g} of its length (an HTTP step at least 1 s with wrk,"
            f" which counts whole seconds), the RSS step {QUICK_FRACTION:g} of its requests, the results written"
            f" to {QUICK_RESULTS.name}; its numbers mean nothing"
        ),
    )
    args = parser.parse_args()
    store = args.store.resolve()  # the servers run in the repository root, whatever the caller's folder
    seconds, rss_requests, results_path = args.seconds, args.rss_requests, RESULTS
    if args.quick:
        shorten(QUICK_FRACTION)
        # wrk runs whole seconds only.
        seconds = max(1.0, seconds * QUICK_FRACTION) if shutil.which("wrk") else seconds * QUICK_FRACTION
        rss_requests, results_path = max(1, int(rss_requests * QUICK_FRACTION)), QUICK_RESULTS
    settings = Settings()
    configure_torch_threads(settings)
    device = resolve_device(settings.device)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device_label(device)}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "load_generator": "wrk" if shutil.which("wrk") else "httpx (install wrk for a lighter generator)",
    }
    if args.quick:
        results["quick"] = True
    if args.peer_only:
        # Kept beside the last full run's numbers (when there is one) under its own key.
        earlier = json.loads(results_path.read_text()) if results_path.exists() else {}
        results = {**earlier, "peer": {**peer(seconds, args.peer_venv, store=store), **results}}
        print("\n".join(peer_table(results["peer"])))
        write_results(results, results_path)
        return
    if args.access_only:
        earlier = json.loads(results_path.read_text()) if results_path.exists() else {}
        results = {**earlier, "access": access_overhead(seconds, store=store)}
        print("\n".join(access_lines(results["access"])))
        write_results(results, results_path)
        return
    results["machine_state"] = {"before": machine_state()}
    # The demo models linked from `store` beside the bench's own models (trained here when missing).
    models = [case.model for case in CASES] + [case.model for case in RECOMMENDS]
    served = bench_store(store, models)
    # Which files were timed: a demo model's, or the bench's stand-in for one the demo store lacks.
    results["models"] = descriptions(served, models)
    results["in_process"] = in_process(device, served)
    if args.peer:
        results["peer"] = peer(seconds, args.peer_venv, store=store)
    if not args.skip_http:
        results["http"] = http(seconds, rss_requests, store=served)
        results["ratios"] = ratios(results["http"], results["in_process"])
        results["task_ratios"] = task_ratios(results)
        results["kind_ratios"] = kind_ratios(results["http"], CASES)
        print(table(results))
        if not args.quick:
            results["explain"] = explain_bench.run(store, seconds)
            print("\n".join(explain_bench.lines(results["explain"])))
            results["monitor"] = monitor_bench.run(store, seconds)
            print("\n".join(monitor_bench.lines(results["monitor"])))
        if not args.skip_ray and not args.quick:
            results["ray"] = ray_bench.run(seconds, store)
            print(ray_bench.table(results["ray"]))
        results["machine_state"]["after"] = machine_state()
        print("\n".join(goal_lines(results)))
    else:
        results["task_ratios"] = task_ratios(results)
        print(json.dumps(results["in_process"], indent=1))
        print("\n".join(task_lines(results["task_ratios"])))
        print("\n".join(recommend_lines(results["in_process"], None)))
    write_results(results, results_path)


if __name__ == "__main__":
    main()
