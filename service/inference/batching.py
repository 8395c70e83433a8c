"""Micro-batching, and running a request through it: concurrent requests for one model share one forward.

Each request is validated and preprocessed on its own (a bad request fails alone); only the forward pass
is shared. A worker task per model collects requests until `max_batch` items or `max_wait_ms`, runs them in
the model's own thread (never on the event loop), and hands each request its slice of the result.
`BatcherPool.run` is what every front door calls: it also keeps a model's faults to that model.
Front doors see it as a `ModelPool`; on Ray the pool is `service.rayserve.pool.RayModelPool`, which batches
the same way and sends each batch to the model's own deployment, where a `BatcherPool` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

import numpy as np
import torch

from service.errors import (
    MSG_MODEL_FAULT,
    MSG_MODEL_NAN,
    MSG_MODEL_OOM,
    MSG_OVERLOADED,
    ModelFault,
    Overloaded,
    ServiceError,
)
from service.inference.predictor import AnyPredictor, ForwardMany, Prepared
from service.telemetry import Metrics, record_served_by, record_timing

if TYPE_CHECKING:
    from service.registry import ModelEntry

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    payload: Prepared
    forward: ForwardMany  # the predictor version's forward_many: after a reload, two may share a queue
    future: asyncio.Future[np.ndarray]
    enqueued: float
    runtime: str = "torch"  # the metrics' runtime label

    @property
    def size(self) -> int:
        return self.payload.n


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

    async def submit(self, payload: Prepared, forward: ForwardMany, *, runtime: str = "torch") -> np.ndarray:
        """Queue one request's prepared input; returns its own result once its batch has run."""
        size = payload.n
        if self._pending and self._pending + size > self.max_queue:
            if self._metrics:
                self._metrics.rejected.labels(self.name).inc()
            raise Overloaded(MSG_OVERLOADED.format(name=self.name, pending=self._pending))
        if self._worker is None:
            self._worker = asyncio.create_task(self._loop(), name=f"batcher-{self.name}")
        loop = asyncio.get_running_loop()
        job = _Job(payload, forward, loop.create_future(), time.perf_counter(), runtime)
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
                for group in by_version(jobs):
                    await self._run_group(loop, group)
            finally:
                self._pending -= sum(j.size for j in jobs)
                self._observe(jobs, started)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        try:
            results = await loop.run_in_executor(self._executor, jobs[0].forward, [j.payload for j in jobs])
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
        m.model_seconds.labels(name, jobs[0].runtime).observe(time.perf_counter() - started)
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


def by_version(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped by the model version they were prepared for (one group except during a reload)."""
    groups: dict[ForwardMany, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.forward, []).append(job)
    return list(groups.values())


class ModelPool(Protocol):
    """Where the front doors send a prepared request to be computed, and what they ask before a reload."""

    async def run(self, entry: ModelEntry, predictor: AnyPredictor, prepared: Prepared) -> np.ndarray:
        """The probabilities for one request's prepared input (raises the service's errors)."""
        ...

    async def before_reload(self, names: list[str]) -> None:
        """Get the models' new versions running wherever the forward runs, before this process swaps its
        own (a no-op in-process: the registry's swap is the whole reload)."""
        ...

    async def replicas(self, name: str) -> Replicas | None:
        """Where the model runs when that is not this process (None: here, as the registry says)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Replicas:
    """A model served by replicas elsewhere (Ray): how many run, and what they run it on."""

    running: int
    target: int
    runtime: str | None = None
    runtime_note: str | None = None
    device: str | None = None
    precision: str | None = None
    errors: tuple[str, ...] = ()


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
        self.served_by = f"{socket.gethostname()}/{os.getpid()}"

    def batcher(self, name: str) -> MicroBatcher:
        """The model's batcher, created on its first request."""
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
        return batcher

    async def run(self, entry: ModelEntry, predictor: AnyPredictor, prepared: Prepared) -> np.ndarray:
        """The probabilities for one request's prepared input, computed in a shared batch.

        Out of memory is this request's problem (503, retry smaller); a forward that raises or returns
        non-finite numbers is the model's: it is marked failed (the model list and readiness show why)
        until an admin reloads it, and every other model keeps serving.
        """
        started = time.perf_counter()
        try:
            probs = await self.batcher(entry.name).submit(
                prepared, predictor.forward_many, runtime=entry.runtime or "torch"
            )
        except ServiceError:
            raise
        except (MemoryError, torch.OutOfMemoryError):
            logger.warning("model %s ran out of memory on a batch", entry.name)
            raise ModelFault(MSG_MODEL_OOM.format(name=entry.name), status=503) from None
        except Exception as exc:  # noqa: BLE001 - whatever the model raised, it stays with this model
            logger.exception("model %s failed while predicting", entry.name)
            _fail(entry, predictor, f"{type(exc).__name__}: {exc}")
        finally:
            record_timing("model", time.perf_counter() - started)  # queue wait + forward, for the log line
        record_served_by(self.served_by)
        if not np.isfinite(probs).all():
            _fail(entry, predictor, MSG_MODEL_NAN)
        return probs

    async def before_reload(self, names: list[str]) -> None:
        return None

    async def replicas(self, name: str) -> Replicas | None:
        return None

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()


def _fail(entry: ModelEntry, predictor: AnyPredictor, reason: str) -> NoReturn:
    detail = MSG_MODEL_FAULT.format(name=entry.name, reason=reason)
    if entry.predictor is predictor:  # not when a reload already replaced this version
        entry.fail(detail)
    raise ModelFault(detail)
