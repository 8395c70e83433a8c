"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import RegistryDep, SettingsDep
from service.schemas.models import LiveResponse, ReadyResponse, WorkersReady
from service.workers import combined_models, live_states, shared_dir, state_of

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process runs, even while models are still loading."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(registry: RegistryDep, settings: SettingsDep) -> JSONResponse:
    """200 once loading has finished and at least one model is ready (in every worker process); 503
    otherwise."""
    folder = shared_dir()
    if folder is None or settings.workers <= 1:
        state = state_of(registry)
        body = ReadyResponse(status="ready" if state.ready else "not_ready", models=state.models)  # type: ignore[arg-type]
    else:
        states = live_states(folder)
        ready_count = sum(state.ready for state in states)
        is_ready = bool(states) and ready_count >= settings.workers and all(s.ready for s in states)
        body = ReadyResponse(
            status="ready" if is_ready else "not_ready",
            models=combined_models(states),  # type: ignore[arg-type]
            workers=WorkersReady(ready=ready_count, running=len(states), expected=settings.workers),
        )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=200 if body.status == "ready" else 503
    )
