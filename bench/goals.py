"""Issue #23's table in one place: every goal beside what this run measured (`make bench` prints it last),
and the machine's state around the run (a figure taken on a busy machine is not a finding)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    label: str
    measure: Callable[[dict[str, Any]], float | None]  # from the run's results; None: not measured
    target: float
    at_most: bool = False  # the goal is a ceiling (latency), not a floor
    unit: str = "x"

    def line(self, results: dict[str, Any]) -> str:
        try:
            value = self.measure(results)
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        if value is None:
            return f"| {self.label} | not measured | {self._bound()} | - |"
        met = value <= self.target if self.at_most else value >= self.target
        return f"| {self.label} | {value:.2f}{self.unit} | {self._bound()} | {'met' if met else 'short'} |"

    def _bound(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.target:g}{self.unit}"


def _rps(run: dict[str, Any], key: str) -> float:
    return float(run[key]["requests_per_s"])


def _ray(results: dict[str, Any], run: str, key: str) -> float:
    return _rps(results["ray"][run], key)


def _ray_c1_extra_ms(results: dict[str, Any]) -> float:
    ray = results["ray"]
    return float(ray["ray_1"]["tabular_c1"]["p50_ms"] - ray["plain"]["tabular_c1"]["p50_ms"])


def _grpc_vs_fastest_rest(results: dict[str, Any]) -> float:
    h = results["http"]
    fastest = max(_rps(h, "ours_tabular_c32"), _rps(h, "ours_v2_tabular_c32"))
    return _rps(h, "ours_grpc_tabular_c32") / fastest


GOALS = (
    Goal(
        "Ray 1 replica / plain, rows, 32 clients",
        lambda r: _ray(r, "ray_1", "tabular_c32") / _ray(r, "plain", "tabular_c32"),
        0.25,
    ),
    Goal(
        "Ray 1 replica / plain, images, 32 clients",
        lambda r: _ray(r, "ray_1", "vision_c32") / _ray(r, "plain", "vision_c32"),
        0.5,
    ),
    Goal(
        "Ray / textbook Ray Serve app, rows, 32 clients",
        lambda r: _ray(r, "ray_1", "tabular_c32") / _ray(r, "textbook", "tabular_c32"),
        2.0,
    ),
    Goal(
        "Ray / textbook Ray Serve app, images, 32 clients",
        lambda r: _ray(r, "ray_1", "vision_c32") / _ray(r, "textbook", "vision_c32"),
        2.0,
    ),
    Goal("Ray one row, one client: p50 over plain", _ray_c1_extra_ms, 3.0, at_most=True, unit=" ms"),
    Goal(
        "V2 REST tabular / v1, 32 clients",
        lambda r: _rps(r["http"], "ours_v2_tabular_c32") / _rps(r["http"], "ours_tabular_c32"),
        0.8,
    ),
    Goal("images over HTTP / naive server, 32 clients", lambda r: r["ratios"]["P4_vs_naive"], 15.0),
    Goal("one image, one client: naive p50 / ours", lambda r: r["ratios"]["P7_vs_naive_p50"], 5.0),
    Goal(
        "10k-row CSV / runtime floor (P2)",
        lambda r: r["in_process"]["tabular_10k_rows"]["P2_ours_vs_floor"],
        0.75,
    ),
    Goal("V2 gRPC / fastest REST path, tabular, 32 clients", _grpc_vs_fastest_rest, 1.0),
)


def goal_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", "Issue #23's goals, this run:", "", "| | measured | goal | |", "|---|---|---|---|"]
    lines += [goal.line(results) for goal in GOALS]
    state = results.get("machine_state")
    if state:
        lines.append("")
        lines.append(
            "machine: CPU busy {before:.0%} before the run (other processes; {cores} cores), load average "
            "{load_before} before, {load_after} after".format(
                before=state["before"]["busy"],
                cores=os.cpu_count(),
                load_before=state["before"]["load"],
                load_after=state["after"]["load"],
            )
        )
    return lines


def _cpu_times() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def machine_state(sample_s: float = 2.0) -> dict[str, Any]:
    """The share of all cores busy over `sample_s` (before the bench starts anything: others' load) and
    the load average; empty numbers where /proc is not there."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(sample_s)
        total1, idle1 = _cpu_times()
        busy = 1 - (idle1 - idle0) / max(total1 - total0, 1e-9)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        return {"busy": float("nan"), "load": "unknown"}
    return {"busy": busy, "load": load}
