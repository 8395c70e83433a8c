"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import RegistryDep
from service.registry import ModelStatus
from service.schemas.models import LiveResponse, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process runs, even while models are still loading."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(registry: RegistryDep) -> JSONResponse:
    """200 once loading has finished and at least one model is ready; 503 otherwise."""
    states = {entry.name: entry.status.value for entry in registry.entries()}
    is_ready = registry.loading_done and ModelStatus.READY.value in states.values()
    body = ReadyResponse(status="ready" if is_ready else "not_ready", models=states)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503)
