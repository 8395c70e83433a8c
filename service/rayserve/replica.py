"""One model's deployment: each replica loads the model itself and batches the requests sent to it.

A replica is a one-model server: the registry (which checks the learner file's sha256 pin before it
unpickles, runs the self-check and picks the runtime) and the `BatcherPool` of the single-process server, so
a forward here is the same code on the same inputs. It keeps the version it serves and, during a rolling
reload, the next one: a request runs on exactly the version the ingress prepared it for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import ray
import torch
from ray import serve

from service.errors import MSG_VERSION_GONE, ModelNotReady, ServiceError
from service.inference.batching import BatcherPool
from service.inference.predictor import Prepared
from service.inference.runtime import RuntimeOptions
from service.rayserve.board import board_for
from service.rayserve.metrics import ray_metrics
from service.registry import ModelEntry, ModelRegistry, ModelStatus
from service.settings import Settings

logger = logging.getLogger(__name__)
POLL_S = 0.5  # how often a replica looks for a reload on the board


@dataclass(frozen=True)
class Forwarded:
    """What a replica answers the ingress: the probabilities, or the service error to raise there."""

    served_by: str
    probs: np.ndarray | None = None
    error: dict[str, Any] | None = None  # a ServiceError's fields (its subclasses do not pickle by args)

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise ServiceError(**self.error)
        assert self.probs is not None
        return self.probs


def replica_threads(settings: Settings) -> int:
    """torch's threads in a replica: the CPUs Ray gives it (at least one), unless configured."""
    return settings.torch_threads or max(1, int(settings.ray_num_cpus or 1))


class ModelReplica:
    """Deployed once per model by `service.rayserve.app.application` (`serve.deployment` options there)."""

    async def __init__(self, name: str, settings: Settings) -> None:  # type: ignore[misc]  # Serve awaits it
        torch.set_num_threads(replica_threads(settings))
        context = serve.get_replica_context()
        self.name = name
        self.replica = context.replica_id.unique_id
        node = ray.get_runtime_context().get_node_id()
        self.served_by = f"node {node[:12]} replica {self.replica}"
        self.registry = ModelRegistry(
            store=settings.model_store,
            device=settings.device,
            max_image_pixels=settings.max_image_pixels,
            # No spinning ONNX Runtime threads: replicas share their node's cores with each other.
            runtime=RuntimeOptions(
                setting=settings.runtime,
                precision=settings.precision,
                cache_dir=settings.onnx_cache_dir,
                spin=False,
            ),
        )
        self.registry.discover(only=name)
        await asyncio.to_thread(self.registry.load_all)
        self.versions: dict[str, ModelEntry] = {}
        self._keep(self.registry.get(name))
        self.pool = BatcherPool(
            max_batch=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            max_queue=settings.batch_max_queue,
            metrics=ray_metrics(),
        )
        self.board = board_for(context.app_name)
        self._polling = asyncio.create_task(self._follow_board())

    def _keep(self, entry: ModelEntry) -> None:
        """Serve `entry` from now on, beside the version before it (requests prepared for it still come)."""
        if entry.status is ModelStatus.READY and entry.sha256:
            newest = list(self.versions.values())[-1:]
            self.versions = {e.sha256: e for e in [*newest, entry] if e.sha256}

    async def forward_batch(self, payloads: list[Prepared], sha256: str | None) -> list[Forwarded]:
        """Run a front's batch (requests prepared for one version) through this replica's batcher, where
        batches from every front meet; each request gets its own answer, so a bad one fails alone."""
        entry = self.versions.get(sha256 or "") if sha256 else None
        if entry is None or entry.predictor is None:
            current = self.registry.get(self.name)
            gone = ModelNotReady(current.error or MSG_VERSION_GONE.format(name=self.name))
            return [Forwarded(self.served_by, error=asdict(gone)) for _ in payloads]
        answers = await asyncio.gather(
            *(self.pool.run(entry, entry.predictor, p) for p in payloads), return_exceptions=True
        )
        return [self._answer(a) for a in answers]

    def _answer(self, answer: np.ndarray | BaseException) -> Forwarded:
        if isinstance(answer, ServiceError):
            return Forwarded(self.served_by, error=asdict(answer))
        if isinstance(answer, BaseException):
            raise answer
        return Forwarded(self.served_by, probs=answer)

    def check_health(self) -> None:
        """Ray replaces a replica whose model failed while serving (a forward raised or gave NaN)."""
        entry = self.registry.get(self.name)
        if entry.status is ModelStatus.FAILED and self.versions:
            raise RuntimeError(entry.error)

    async def _follow_board(self) -> None:
        with contextlib.suppress(Exception):
            entry = self.registry.get(self.name)
            await self.board.report.remote(
                self.name, self.replica, entry.sha256, entry.error, _serving(entry)
            )
        while True:
            await asyncio.sleep(POLL_S)
            try:
                wanted = (await self.board.wanted.remote()).get(self.name)
                if wanted and wanted not in self.versions and await self._may_load():
                    await self._reload()
            except Exception:  # noqa: BLE001 - the board is advice; serving goes on without it
                logger.exception("model %s: following reloads failed; retrying", self.name)

    async def _may_load(self) -> bool:
        return bool(await self.board.lease.remote(self.name, self.replica, time.time()))

    async def _reload(self) -> None:
        try:
            fresh = await asyncio.to_thread(self.registry.reload, self.name)
        except ServiceError as exc:  # the new file does not load: the old version keeps serving
            logger.warning("model %s: %s", self.name, exc)
            await self.board.report.remote(self.name, self.replica, None, str(exc))
            return
        self._keep(fresh)
        await self.board.report.remote(self.name, self.replica, fresh.sha256, fresh.error, _serving(fresh))

    async def __del__(self) -> None:
        self._polling.cancel()
        with contextlib.suppress(Exception):
            await self.board.forget.remote(self.name, self.replica)
        await self.pool.close()


def _serving(entry: ModelEntry) -> dict[str, str | None]:
    return {
        "runtime": entry.runtime,
        "runtime_note": entry.runtime_note,
        "device": entry.device,
        "precision": entry.precision.value if entry.precision is not None else None,
    }
