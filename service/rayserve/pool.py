"""The front's `ModelPool` on Ray: prepared requests go to their deployment, one handle call per batch.

A Ray hop costs milliseconds of serialisation, routing and scheduling on both sides, whatever it carries; a
hop per request was most of a request's time on Ray. So the front (the Serve ingress, or the CLI's own
server) batches as the single server does, with the same `MicroBatcher` collection, and sends each batch as
one call; the replica runs it through its own batcher, where batches from several fronts meet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from ray import serve

from service.errors import (
    MSG_NO_DEPLOYMENT,
    MSG_RELOAD_FAILED,
    MSG_REPLICA_LOST,
    MSG_ROLLOUT_TIMEOUT,
    ModelFault,
    ModelNotReady,
    ReloadFailed,
)
from service.inference.batching import MicroBatcher, Replicas, by_version
from service.inference.predictor import AnyPredictor, Prepared
from service.loading import find_learner_file, sha256_of
from service.rayserve.board import board_for
from service.rayserve.replica import Forwarded
from service.settings import Settings
from service.telemetry import record_served_by, record_timing

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from service.registry import ModelEntry

logger = logging.getLogger(__name__)
ROLLOUT_TIMEOUT_S = 600.0
ROLLOUT_POLL_S = 0.25
# Batches a front keeps out at once per replica of the model: one running, one waiting at the replica.
IN_FLIGHT_PER_REPLICA = 2


@dataclass(frozen=True)
class _Version:
    """A batch's key in the front: requests prepared for one version of a model travel together (the
    replica keeps the version before a reload too); it stands where the single server's forward is."""

    sha256: str | None

    def __call__(self, payloads: list[Prepared]) -> list[np.ndarray]:
        raise TypeError("a Ray batch runs on its model's deployment, never in the front")


class RemoteBatcher(MicroBatcher):
    """One model's requests, batched in the front and sent to its deployment one call per batch. Up to
    `in_flight` batches are out at once, so every replica has work while the next batch gathers; each
    request's future gets its `Forwarded` (probabilities or error, and who ran it)."""

    def __init__(self, *, handle: DeploymentHandle, in_flight: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handle = handle
        self._slots = asyncio.Semaphore(in_flight)
        self._sending: set[asyncio.Task[None]] = set()

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            jobs = await self._collect()
            task = asyncio.create_task(self._send(jobs))
            self._sending.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._sending.discard)

    async def _send(self, jobs: list[Any]) -> None:
        started = time.perf_counter()
        try:
            for group in by_version(jobs):
                await self._send_group(group)
        finally:
            self._pending -= sum(j.size for j in jobs)
            self._observe(jobs, started)
            self._slots.release()

    async def _send_group(self, jobs: list[Any]) -> None:
        version = cast(_Version, jobs[0].forward)
        try:
            answers: list[Forwarded] = await self._handle.forward_batch.remote(
                [j.payload for j in jobs], version.sha256
            )
        except Exception as exc:  # noqa: BLE001 - the batch's failure belongs to its requests
            # The replica died with this batch on it (RayActorError, or over gRPC the channel's error), or
            # raised past forward_batch's own answers: the handle sends new calls to the others.
            reason = type(exc).__name__
            logger.warning("model %s: a replica was lost during a batch (%s)", self.name, reason)
            lost = ModelFault(MSG_REPLICA_LOST.format(name=self.name, reason=reason), status=503)
            answers = [Forwarded("", error=asdict(lost)) for _ in jobs]
        for job, answer in zip(jobs, answers, strict=True):
            if not job.future.done():
                job.future.set_result(answer)

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await super().close()


class RayModelPool:
    def __init__(self, handles: dict[str, DeploymentHandle], settings: Settings) -> None:
        self.handles = handles
        self.settings = settings
        self.board = board_for(settings.ray_app_name)
        self._batchers: dict[str, RemoteBatcher] = {}

    def batcher(self, name: str, handle: DeploymentHandle) -> RemoteBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = RemoteBatcher(
                # By value over Serve's inter-deployment gRPC (what RAY_SERVE_THROUGHPUT_OPTIMIZED turns
                # on), not through Ray's object store: one empty call 2.2 ms p50 against 4.9 on 2 cores.
                handle=_by_value(handle),
                in_flight=IN_FLIGHT_PER_REPLICA * max(1, self.settings.ray_replicas),
                name=name,
                max_batch=self.settings.batch_max_size,
                max_wait_ms=self.settings.batch_max_wait_ms,
                max_queue=self.settings.batch_max_queue,
                # The batch metrics are the replicas' (service/rayserve/metrics.py), where batches run.
                metrics=None,
            )
            self._batchers[name] = batcher
        return batcher

    async def run(self, entry: ModelEntry, predictor: AnyPredictor, prepared: Prepared) -> np.ndarray:
        handle = self.handles.get(entry.name)
        if handle is None:
            raise ModelNotReady(MSG_NO_DEPLOYMENT.format(name=entry.name))
        started = time.perf_counter()
        try:
            answer = await self.batcher(entry.name, handle).submit(prepared, _Version(entry.sha256))
        finally:
            record_timing("model", time.perf_counter() - started)
        forwarded = cast(Forwarded, answer)  # a RemoteBatcher's futures hold the replica's answers
        if forwarded.served_by:
            record_served_by(forwarded.served_by)
        return forwarded.result()

    async def before_reload(self, names: list[str]) -> None:
        """Roll each model's new version through its running replicas, one at a time, and wait for all."""
        for name in names:
            if name in self.handles:
                await self._roll_out(name)

    async def _roll_out(self, name: str) -> None:
        learner_file = find_learner_file(self.settings.model_store / name)
        if learner_file is None:
            return  # the registry's reload says what is wrong
        sha256 = await asyncio.to_thread(sha256_of, learner_file)
        await self.board.want.remote(name, sha256)
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        while True:
            holding, errors = await self.board.progress.remote(name, sha256)
            if errors:
                raise ReloadFailed(MSG_RELOAD_FAILED.format(name=name, reason="; ".join(errors)))
            running = await asyncio.to_thread(self._running_replicas, name)
            if running and len(holding) >= running:
                return
            if time.monotonic() > deadline:
                raise ReloadFailed(
                    MSG_RELOAD_FAILED.format(
                        name=name,
                        reason=MSG_ROLLOUT_TIMEOUT.format(
                            name=name, held=len(holding), running=running, seconds=ROLLOUT_TIMEOUT_S
                        ),
                    )
                )
            await asyncio.sleep(ROLLOUT_POLL_S)

    async def replicas(self, name: str) -> Replicas | None:
        if name not in self.handles:
            return None
        counts = await asyncio.to_thread(replica_counts, self.settings.ray_app_name)
        states = counts.get(name, {})
        serving, errors = await self.board.serving.remote(name)
        serving = serving or {}
        return Replicas(
            running=int(states.get("RUNNING", 0)),
            target=int(sum(states.values())),
            runtime=serving.get("runtime"),
            runtime_note=serving.get("runtime_note"),
            device=serving.get("device"),
            precision=serving.get("precision"),
            errors=tuple(errors),
        )

    def _running_replicas(self, name: str) -> int:
        return int(replica_counts(self.settings.ray_app_name).get(name, {}).get("RUNNING", 0))

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()


def _by_value(handle: DeploymentHandle) -> DeploymentHandle:
    try:
        return handle.options(_by_reference=False)
    except TypeError:  # a Ray without the option: through the object store
        return handle


def deployment_name(model: str) -> str:
    return f"model-{model}"


def replica_counts(app_name: str) -> dict[str, dict[str, Any]]:
    """Each model's replicas by state (RUNNING, STARTING, ...), as Serve's controller reports them."""
    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    prefix = deployment_name("")
    return {
        name.removeprefix(prefix): {str(state): n for state, n in status.replica_states.items()}
        for name, status in app.deployments.items()
        if name.startswith(prefix)
    }
