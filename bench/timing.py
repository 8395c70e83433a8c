"""Timing: medians per call, ours and a floor timed alternately, the fastest batch size of a forward."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

_scale = 1.0


def shorten(fraction: float) -> None:
    """Scale every timing below by `fraction` (`--quick`: a smoke run whose numbers mean nothing)."""
    global _scale
    _scale = fraction


def per_call(fn: Callable[[], Any], *, seconds: float = 2.0, min_calls: int = 3) -> float:
    """Median seconds per call, after one warm-up call."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds * _scale
    while len(times) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired(ours: Callable[[], Any], floor: Callable[[], Any], *, seconds: float = 6.0) -> tuple[float, float]:
    """Median seconds per call of `ours` and of `floor`, timed alternately (one of each per round, the
    order swapped every round), so that a shared machine's drift during the run weighs on both alike."""
    ours(), floor()
    times: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + seconds * _scale
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        pair = ((0, ours), (1, floor)) if rounds % 2 == 0 else ((1, floor), (0, ours))
        for which, fn in pair:
            started = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - started)
        rounds += 1
    return statistics.median(times[0]), statistics.median(times[1])


def batched(forward: Callable[[slice], Any], n: int, bs: int) -> Callable[[], None]:
    """All `n` items through `forward`, `bs` at a time, as one call."""

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, n, bs):
                forward(slice(start, start + bs))

    return run


def best_batch_size(forward: Callable[[slice], Any], n: int, sizes: tuple[int, ...]) -> tuple[float, int]:
    """(seconds for all `n` items, batch size) at the fastest of `sizes`."""
    best: tuple[float, int] | None = None
    for bs in sizes:
        took = per_call(batched(forward, n, bs), seconds=2.0)
        if best is None or took < best[0]:
            best = (took, bs)
    assert best is not None
    return best


@dataclass(frozen=True)
class Floor:
    """The compute floor (L): the fastest runtime's forward on pre-encoded inputs at its best batch size."""

    seconds: float
    batch_size: int
    torch_seconds: float  # torch eager's, at its own best batch size
    run: Callable[[], None]  # all the items at `batch_size`, for paired()


def floor(
    n: int,
    *,
    torch_forward: Callable[[slice], Any],
    torch_sizes: tuple[int, ...],
    runtime_forward: Callable[[slice], Any] | None = None,
    runtime_sizes: tuple[int, ...] = (),
) -> Floor:
    """Torch eager's forward and, when the predictor runs another runtime, that one's: the faster wins."""
    torch_seconds, torch_bs = best_batch_size(torch_forward, n, torch_sizes)
    best, forward = (torch_seconds, torch_bs), torch_forward
    if runtime_forward is not None:
        other = best_batch_size(runtime_forward, n, runtime_sizes)
        if other < best:
            best, forward = other, runtime_forward
    return Floor(
        seconds=best[0], batch_size=best[1], torch_seconds=torch_seconds, run=batched(forward, n, best[1])
    )


def latencies(fn: Callable[[], Any], *, seconds: float = 3.0, min_calls: int = 20) -> list[float]:
    """Seconds of each call, after one warm-up call: for percentiles (p50, p99) rather than a median."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds * _scale
    while len(times) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times
