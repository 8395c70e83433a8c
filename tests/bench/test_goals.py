"""`make bench`'s last table: issue #23's goals beside a run's numbers (met, short, or not measured)."""

from __future__ import annotations

from typing import Any

from bench.goals import GOALS, goal_lines, machine_state


def _row(rps: float, p50: float = 1.0) -> dict[str, float]:
    return {"requests_per_s": rps, "p50_ms": p50}


def _results() -> dict[str, Any]:
    ray = {
        "plain": {"tabular_c32": _row(1000), "vision_c32": _row(400), "tabular_c1": _row(1000, 0.7)},
        "ray_1": {"tabular_c32": _row(300), "vision_c32": _row(100), "tabular_c1": _row(100, 4.5)},
        "textbook": {"tabular_c32": _row(100), "vision_c32": _row(100)},
    }
    http = {
        "ours_tabular_c32": _row(1000),
        "ours_v2_tabular_c32": _row(900),
        "ours_grpc_tabular_c32": _row(950),
    }
    return {
        "ray": ray,
        "http": http,
        "ratios": {"P4_vs_naive": 16.0, "P7_vs_naive_p50": 4.0},
        "in_process": {"tabular_10k_rows": {"P2_ours_vs_floor": 0.8}},
        "machine_state": {"before": {"busy": 0.03, "load": "0.1 0.2 0.3"}, "after": {"load": "1 1 1"}},
    }


def test_each_goal_is_judged_from_the_runs_numbers() -> None:
    lines = goal_lines(_results())
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in lines
        if line.startswith("| ") and "---" not in line
    }
    assert len([r for r in rows if r]) == len(GOALS)
    assert rows["Ray 1 replica / plain, rows, 32 clients"].endswith("| 0.30x | >= 0.25x | met |")
    assert rows["Ray 1 replica / plain, images, 32 clients"].endswith("| 0.25x | >= 0.5x | short |")
    assert rows["Ray / textbook Ray Serve app, rows, 32 clients"].endswith("| 3.00x | >= 2x | met |")
    assert rows["Ray one row, one client: p50 over plain"].endswith("| 3.80 ms | <= 3 ms | short |")
    assert rows["V2 REST tabular / v1, 32 clients"].endswith("| 0.90x | >= 0.8x | met |")
    assert rows["one image, one client: naive p50 / ours"].endswith("| 4.00x | >= 5x | short |")
    assert rows["V2 gRPC / fastest REST path, tabular, 32 clients"].endswith("| 0.95x | >= 1x | short |")
    assert "CPU busy 3% before the run" in lines[-1] and "1 1 1 after" in lines[-1]


def test_a_run_without_the_ray_rows_says_so() -> None:
    results = _results()
    del results["ray"]
    lines = goal_lines(results)
    assert sum("not measured" in line for line in lines) == 5


def test_the_machine_state_is_a_share_and_a_load_average() -> None:
    state = machine_state(sample_s=0.05)
    assert 0.0 <= state["busy"] <= 1.0 and len(state["load"].split()) == 3
