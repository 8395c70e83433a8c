"""What the payload log costs (issue 25): one-row tabular and one-image vision requests at 32 clients, our
server with `LOG_DIR` unset and with every prediction logged (`LOG_SAMPLE` 1.0), alternating off, on, off,
on in one run (the best of each mode's steps kept, as host noise only ever slows a step down). The goal:
logging costs at most 10% of throughput. Also the rows it wrote against the requests it answered.

`python -m bench.monitor_bench [--store model_store]` (`make bench-monitor`); `python -m bench` runs it too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import CACHE, DEFAULT_STORE
from bench.cases import DEMO_TABULAR, DEMO_VISION
from bench.load import drive, one_item
from bench.servers import free_port, server_env, start_ours, stop_process

CLIENTS = 32
ROUNDS = 3
GOAL = 0.9  # logging on / off, requests per second


def _serve(store: Path, log_dir: Path | None, seconds: float) -> dict[str, dict[str, float]]:
    port = free_port()
    env = server_env(store)
    if log_dir is not None:
        env |= {"FASTAI_SERVE_LOG_DIR": str(log_dir), "FASTAI_SERVE_LOG_SAMPLE": "1.0"}
    server = start_ours(port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        return {
            case.key: drive(base, one_item(case), CLIENTS, seconds) for case in (DEMO_TABULAR, DEMO_VISION)
        }
    finally:
        stop_process(server)


def run(store: Path, seconds: float) -> dict[str, Any]:
    steps: dict[str, list[dict[str, dict[str, float]]]] = {"off": [], "on": []}
    written = 0
    for _ in range(ROUNDS):
        steps["off"].append(_serve(store, None, seconds))
        log_dir = Path(tempfile.mkdtemp(prefix="bench-log-"))
        try:
            steps["on"].append(_serve(store, log_dir, seconds))
            written += _rows(log_dir)
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)
    out: dict[str, Any] = {"clients": CLIENTS, "rounds": ROUNDS, "rows_written": written}
    answered = 0
    for case in (DEMO_TABULAR, DEMO_VISION):
        off = max((s[case.key] for s in steps["off"]), key=lambda r: r["requests_per_s"])
        on = max((s[case.key] for s in steps["on"]), key=lambda r: r["requests_per_s"])
        answered += sum(s[case.key]["requests"] - s[case.key]["errors"] for s in steps["on"])
        out[case.key] = {
            "off": off,
            "on": on,
            # Every step's requests/s in run order (off, on, off, on, ...): the host's noise, visible.
            "steps": [
                round(s[case.key]["requests_per_s"])
                for pair in zip(steps["off"], steps["on"], strict=True)
                for s in pair
            ],
            "throughput_ratio": on["requests_per_s"] / off["requests_per_s"],
            "p99_ratio": on["p99_ms"] / off["p99_ms"],
        }
    out["rows_answered"] = answered
    return out


def _rows(log_dir: Path) -> int:
    from service.monitoring.payload import read_log

    return int(read_log(log_dir).num_rows)


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"payload log on / off ({result['clients']} clients, best of {result['rounds']} each):"]
    for key in (DEMO_TABULAR.key, DEMO_VISION.key):
        r = result[key]
        out.append(
            f"  {key}: {r['on']['requests_per_s']:.0f} / {r['off']['requests_per_s']:.0f} req/s = "
            f"{r['throughput_ratio']:.2f}× (goal ≥ {GOAL:g}), p99 {r['on']['p99_ms']:.1f} / "
            f"{r['off']['p99_ms']:.1f} ms; steps off/on {r['steps']}"
        )
    out.append(f"  rows written {result['rows_written']} of {result['rows_answered']} answered")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_bench", description=__doc__)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    result = run(args.store.resolve(), args.seconds)
    print("\n".join(lines(result)))
    CACHE.mkdir(exist_ok=True)
    (CACHE / "monitor_results.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
