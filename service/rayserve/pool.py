"""The ingress's `ModelPool`: each prepared request goes to its model's deployment through a handle."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import RayServeException

from service.errors import (
    MSG_NO_DEPLOYMENT,
    MSG_RELOAD_FAILED,
    MSG_REPLICA_LOST,
    MSG_ROLLOUT_TIMEOUT,
    ModelFault,
    ModelNotReady,
    ReloadFailed,
)
from service.inference.batching import Replicas
from service.inference.predictor import AnyPredictor, Prepared
from service.loading import find_learner_file, sha256_of
from service.rayserve.board import board_for
from service.settings import Settings
from service.telemetry import record_served_by, record_timing

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from service.registry import ModelEntry

logger = logging.getLogger(__name__)
ROLLOUT_TIMEOUT_S = 600.0
ROLLOUT_POLL_S = 0.25


class RayModelPool:
    def __init__(self, handles: dict[str, DeploymentHandle], settings: Settings) -> None:
        self.handles = handles
        self.settings = settings
        self.board = board_for(settings.ray_app_name)

    async def run(self, entry: ModelEntry, predictor: AnyPredictor, prepared: Prepared) -> np.ndarray:
        handle = self.handles.get(entry.name)
        if handle is None:
            raise ModelNotReady(MSG_NO_DEPLOYMENT.format(name=entry.name))
        started = time.perf_counter()
        try:
            forwarded = await handle.forward.remote(prepared, entry.sha256)
        except (RayActorError, RayTaskError, RayServeException) as exc:
            # The replica died with this request on it (the handle sends new requests to the others).
            reason = type(exc).__name__
            logger.warning("model %s: a replica was lost during a request (%s)", entry.name, reason)
            raise ModelFault(MSG_REPLICA_LOST.format(name=entry.name, reason=reason), status=503) from None
        finally:
            record_timing("model", time.perf_counter() - started)
        record_served_by(forwarded.served_by)
        return forwarded.result()  # type: ignore[no-any-return]

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
            errors=tuple(errors),
        )

    def _running_replicas(self, name: str) -> int:
        return int(replica_counts(self.settings.ray_app_name).get(name, {}).get("RUNNING", 0))

    async def close(self) -> None:
        return None


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
