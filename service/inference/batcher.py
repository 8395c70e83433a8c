"""Micro-batching: concurrent requests for one model share one forward pass.

Each request is validated and preprocessed on its own (a bad request fails alone); only the forward pass
is shared. A worker task per model collects requests until `max_batch` items or `max_wait_ms`, runs them in
the model's own thread (never on the event loop), and hands each request its slice of the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.errors import ServiceError
from service.metrics import Metrics

MSG_OVERLOADED = "model {name!r} is overloaded ({pending} items queued); retry shortly"


class Overloaded(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=503, title="Overloaded", headers={"Retry-After": "1"})


Run = Callable[[list[Any]], list[Any]]


@dataclass
class _Job:
    payload: Any
    size: int
    run: Run  # the predictor's forward_many: after a reload, old and new versions may share a queue
    future: asyncio.Future[Any]
    enqueued: float


class MicroBatcher:
    def __init__(
        self,
        *,
        name: str,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, payload: Any, size: int, run: Run) -> Any:
        """Queue one request's prepared input; returns its own result once its batch has run."""
        if self._pending and self._pending + size > self.max_queue:
            if self._metrics:
                self._metrics.rejected.labels(self.name).inc()
            raise Overloaded(MSG_OVERLOADED.format(name=self.name, pending=self._pending))
        if self._worker is None:
            self._worker = asyncio.create_task(self._loop(), name=f"batcher-{self.name}")
        loop = asyncio.get_running_loop()
        job = _Job(payload, size, run, loop.create_future(), time.perf_counter())
        self._pending += size
        self._queue.put_nowait(job)
        return await job.future

    async def _collect(self) -> list[_Job]:
        first = await self._queue.get()
        # One loop tick lets requests that arrived together join; under load the queue also fills while
        # the previous batch runs, so batches grow without any idle wait (max_wait_ms may add one).
        await asyncio.sleep(0)
        jobs, items = [first], first.size
        deadline = time.perf_counter() + self.max_wait
        while items < self.max_batch:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            items += job.size
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            started = time.perf_counter()
            try:
                for group in _by_model(jobs):
                    await self._run_group(loop, group)
            finally:
                self._pending -= sum(j.size for j in jobs)
                self._observe(jobs, started)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        try:
            results = await loop.run_in_executor(self._executor, jobs[0].run, [j.payload for j in jobs])
        except BaseException as exc:  # noqa: BLE001 - the batch's failure belongs to its requests
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    def _observe(self, jobs: list[_Job], started: float) -> None:
        if self._metrics is None:
            return
        m, name = self._metrics, self.name
        m.batch_size.labels(name).observe(sum(j.size for j in jobs))
        m.requests_per_batch.labels(name).observe(len(jobs))
        m.model_seconds.labels(name).observe(time.perf_counter() - started)
        for job in jobs:
            m.queue_wait_seconds.labels(name).observe(started - job.enqueued)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._executor.shutdown(wait=True)


def _by_model(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped by the model version they were prepared for (one group except during a reload)."""
    groups: dict[Any, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.run, []).append(job)
    return list(groups.values())


@dataclass(frozen=True)
class BoundBatcher:
    """A model's batcher with one predictor version to run: what a request submits to."""

    batcher: MicroBatcher
    run: Run

    async def submit(self, payload: Any, size: int) -> Any:
        return await self.batcher.submit(payload, size, self.run)


class BatcherPool:
    """One batcher (queue + model thread) per model name. A reloaded model keeps its queue: requests
    prepared for the old version run on it, new ones on the new version, and the old predictor is freed
    when its last request is done."""

    def __init__(self, *, max_batch: int, max_wait_ms: float, max_queue: int, metrics: Metrics) -> None:
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.max_queue = max_queue
        self.metrics = metrics
        self._batchers: dict[str, MicroBatcher] = {}

    def for_predictor(self, name: str, predictor: Any) -> BoundBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = MicroBatcher(
                name=name,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                max_queue=self.max_queue,
                metrics=self.metrics,
            )
            self._batchers[name] = batcher
        return BoundBatcher(batcher, predictor.forward_many)

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
