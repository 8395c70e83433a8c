"""Admin: reload one model or rescan the store, swapping versions without dropping requests."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service.api.deps import AdminDep, BatchersDep, RegistryDep
from service.api.routes.models import summary_of
from service.schemas.models import ModelList, ModelSummary
from service.schemas.problem import Problem

router = APIRouter(prefix="/api/v1/models", tags=["admin"], dependencies=[AdminDep])
ERRORS = Problem.responses(401, 403, 404, 422)


@router.post("/reload", response_model=ModelList, responses=ERRORS)
async def reload_store(registry: RegistryDep, batchers: BatchersDep) -> ModelList:
    """Rescan the store: load new models, reload changed ones (sha256), unload removed ones."""
    await batchers.before_reload([entry.name for entry in registry.entries()])
    entries = await run_in_threadpool(registry.rescan)
    return ModelList(models=[summary_of(entry) for entry in entries])


@router.post("/{name}/reload", response_model=ModelSummary, responses=ERRORS)
async def reload_model(name: str, registry: RegistryDep, batchers: BatchersDep) -> ModelSummary:
    """Load the model's file again and swap it in once warm; the old version serves until then."""
    registry.get(name)  # 404 before any work
    await batchers.before_reload([name])
    return summary_of(await run_in_threadpool(registry.reload, name))
