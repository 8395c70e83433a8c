"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.inference.batching import ModelPool
from service.registry import ModelStatus
from service.schemas.models import LiveResponse, PayloadLogState, ReadyResponse, WorkersReady
from service.workers import combined_models, live_states, shared_dir, state_of

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process runs, even while models are still loading."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(
    request: Request, registry: RegistryDep, settings: SettingsDep, batchers: BatchersDep
) -> JSONResponse:
    """200 once loading has finished and at least one model is ready (in every worker process; on Ray, with
    a replica running); 503 otherwise. With LOG_DIR, `payload_log` says what this process's log wrote and
    dropped (a log that cannot write never makes the server unready: predictions go on)."""
    folder = shared_dir()
    if folder is None or settings.workers <= 1:
        state = state_of(registry)
        models = {name: await _on_replicas(name, status, batchers) for name, status in state.models.items()}
        is_ready = state.loading_done and ModelStatus.READY.value in models.values()
        body = ReadyResponse(status="ready" if is_ready else "not_ready", models=models)  # type: ignore[arg-type]
    else:
        states = live_states(folder)
        ready_count = sum(state.ready for state in states)
        is_ready = bool(states) and ready_count >= settings.workers and all(s.ready for s in states)
        body = ReadyResponse(
            status="ready" if is_ready else "not_ready",
            models=combined_models(states),  # type: ignore[arg-type]
            workers=WorkersReady(ready=ready_count, running=len(states), expected=settings.workers),
        )
    log = request.app.state.payload_log
    if log is not None:
        body.payload_log = PayloadLogState(**log.status())
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=200 if body.status == "ready" else 503
    )


async def _on_replicas(name: str, status: str, batchers: ModelPool) -> str:
    """A model ready here is ready only once a replica runs it where its forward runs (Ray); with none
    running it is loading, or failed when its replicas could not load it."""
    if status != ModelStatus.READY.value:
        return status
    replicas = await batchers.replicas(name)
    if replicas is None or replicas.running > 0:
        return status
    return ModelStatus.FAILED.value if replicas.errors else ModelStatus.LOADING.value
