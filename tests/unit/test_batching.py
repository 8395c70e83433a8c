"""The batcher alone, with plain-numpy forwards (no learner): ordering, batch limits, version split,
queue limits, and faults that stay with their own requests and their own model."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from service.errors import ModelFault, Overloaded
from service.inference.batching import BatcherPool, MicroBatcher
from service.inference.predictor import ModelKind, split_rows
from service.inference.tasks import ClassificationHead, Prediction
from service.registry import ModelEntry, ModelStatus
from service.telemetry import Metrics


@dataclass(frozen=True)
class Items:
    """A prepared request: item ids; the forward's "probability" of class 0 is the id itself."""

    ids: list[float]

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(eq=False)  # hashable by identity, like the bound methods the batcher groups by
class Recorder:
    """A forward that records each batch it ran, optionally waiting on a gate or failing."""

    tag: float = 0.0
    batches: list[list[Items]] = field(default_factory=list)
    gate: threading.Event | None = None
    error: BaseException | None = None

    def __call__(self, batch: list[Items]) -> list[np.ndarray]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(batch)
        if self.error is not None:
            raise self.error
        ids = np.array([i for items in batch for i in items.ids], dtype=np.float64)
        probs = np.stack([ids, np.full_like(ids, self.tag)], axis=1)
        return split_rows(probs, [items.n for items in batch])


def _batcher(**overrides: float) -> MicroBatcher:
    settings = {"max_batch": 64, "max_wait_ms": 0.0, "max_queue": 1000, **overrides}
    return MicroBatcher(
        name="m",
        max_batch=int(settings["max_batch"]),
        max_wait_ms=settings["max_wait_ms"],
        max_queue=int(settings["max_queue"]),
        metrics=Metrics(),
    )


async def test_each_request_gets_its_own_rows_in_order() -> None:
    batcher, forward = _batcher(), Recorder()
    try:
        requests = [Items([float(10 * r + i) for i in range(r + 1)]) for r in range(6)]
        results = await asyncio.gather(*(batcher.submit(items, forward) for items in requests))
    finally:
        await batcher.close()
    for items, probs in zip(requests, results, strict=True):
        assert probs[:, 0].tolist() == items.ids
    assert len(forward.batches) < len(requests)  # requests that arrived together shared a forward


async def test_batches_stop_at_max_batch_items() -> None:
    batcher, forward = _batcher(max_batch=4), Recorder()
    try:
        await asyncio.gather(*(batcher.submit(Items([float(i), float(i)]), forward) for i in range(6)))
    finally:
        await batcher.close()
    # A batch closes once it holds max_batch items (a request is never split across batches).
    assert [sum(items.n for items in batch) for batch in forward.batches] == [4, 4, 4]


async def test_a_batch_is_split_by_predictor_version() -> None:
    batcher, old, new = _batcher(), Recorder(tag=1.0), Recorder(tag=2.0)
    try:
        results = await asyncio.gather(
            batcher.submit(Items([1.0]), old),
            batcher.submit(Items([2.0]), new),
            batcher.submit(Items([3.0]), old),
        )
    finally:
        await batcher.close()
    assert [r[0].tolist() for r in results] == [[1.0, 1.0], [2.0, 2.0], [3.0, 1.0]]
    assert [[i.ids for i in b] for b in old.batches] == [[[1.0], [3.0]]]
    assert [[i.ids for i in b] for b in new.batches] == [[[2.0]]]


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    gate = threading.Event()
    batcher, forward = _batcher(max_queue=3, max_batch=1), Recorder(gate=gate)
    try:
        first = asyncio.create_task(batcher.submit(Items([1.0, 2.0]), forward))
        await asyncio.sleep(0.05)  # the first batch is now running and holds the model thread
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(Items([3.0, 4.0]), forward)
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
        gate.set()
        assert (await first)[:, 0].tolist() == [1.0, 2.0]
        # Once the queue drained, the same request is taken.
        assert (await batcher.submit(Items([3.0, 4.0]), forward))[:, 0].tolist() == [3.0, 4.0]
    finally:
        gate.set()
        await batcher.close()


async def test_a_failing_forward_fails_only_its_own_requests() -> None:
    batcher = _batcher()
    broken, healthy = Recorder(error=RuntimeError("boom")), Recorder(tag=5.0)
    try:
        outcomes = await asyncio.gather(
            batcher.submit(Items([1.0]), broken),
            batcher.submit(Items([2.0]), healthy),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], RuntimeError)
        assert isinstance(outcomes[1], np.ndarray) and outcomes[1][0].tolist() == [2.0, 5.0]
        # The worker survived the failure: later requests are served.
        assert (await batcher.submit(Items([7.0]), healthy))[0].tolist() == [7.0, 5.0]
    finally:
        await batcher.close()


class FakePredictor:
    """The smallest `Predictor` (plain numpy, no learner) whose forward can be swapped per test."""

    kind: ClassVar[ModelKind] = ModelKind.TABULAR

    def __init__(self, forward: Recorder) -> None:
        self.head = ClassificationHead(["a", "b"])
        self._forward = forward

    def input_schema(self) -> dict[str, object]:
        return {}

    def prepare(self, request: list[float], /) -> Items:
        return Items(request)

    def forward_many(self, batch: list[Items], /) -> list[np.ndarray]:
        return self._forward(batch)

    def finish(
        self, prepared: Items, probs: np.ndarray, /, *, threshold: float | None = None
    ) -> list[Prediction]:
        return self.head.decode(probs)

    def self_check(self) -> None:
        pass


def _entry(predictor: FakePredictor) -> ModelEntry:
    entry = ModelEntry(name="m", folder=Path("."), status=ModelStatus.READY, kind=ModelKind.TABULAR)
    entry.predictor = predictor
    return entry


def _pool() -> BatcherPool:
    return BatcherPool(max_batch=64, max_wait_ms=0.0, max_queue=1000, metrics=Metrics())


async def test_pool_run_marks_the_model_failed_when_its_forward_raises() -> None:
    predictor = FakePredictor(Recorder(error=ValueError("bad weights")))
    entry, pool = _entry(predictor), _pool()
    try:
        with pytest.raises(ModelFault) as fault:
            await pool.run(entry, predictor, Items([1.0]))
    finally:
        await pool.close()
    assert fault.value.status == 500
    assert entry.status is ModelStatus.FAILED and "ValueError: bad weights" in (entry.error or "")


async def test_pool_run_marks_the_model_failed_on_non_finite_output() -> None:
    predictor = FakePredictor(Recorder())
    entry, pool = _entry(predictor), _pool()
    try:
        with pytest.raises(ModelFault):
            await pool.run(entry, predictor, Items([float("nan")]))
        assert entry.status is ModelStatus.FAILED
    finally:
        await pool.close()


async def test_pool_run_out_of_memory_is_the_requests_problem_only() -> None:
    predictor = FakePredictor(Recorder(error=torch.OutOfMemoryError("CUDA out of memory")))
    entry, pool = _entry(predictor), _pool()
    try:
        with pytest.raises(ModelFault) as fault:
            await pool.run(entry, predictor, Items([1.0]))
    finally:
        await pool.close()
    assert fault.value.status == 503 and fault.value.headers == {"Retry-After": "1"}
    assert entry.status is ModelStatus.READY


async def test_pool_run_does_not_fail_a_version_a_reload_already_replaced() -> None:
    old = FakePredictor(Recorder(error=RuntimeError("old version broke")))
    entry, pool = _entry(old), _pool()
    entry.predictor = FakePredictor(Recorder())  # reloaded while the old request was queued
    try:
        with pytest.raises(ModelFault):
            await pool.run(entry, old, Items([1.0]))
    finally:
        await pool.close()
    assert entry.status is ModelStatus.READY
