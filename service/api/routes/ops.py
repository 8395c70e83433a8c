"""Operations: Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.telemetry import exposition, model_info
from service.workers import shared_dir

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: per-model requests, batch sizes, queue wait and model time (summed over
    every worker process when there are several)."""
    settings = request.app.state.settings
    shared = shared_dir() if settings.workers > 1 else None
    text = request.app.state.metrics_note.encode() + exposition(request.app.state.metrics, shared)
    text += model_info(await _served(request))
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def _served(request: Request) -> list[dict[str, str]]:
    """Each ready model's labels: this process's own, or its replicas' where they serve it (Ray)."""
    served = []
    for entry in request.app.state.registry.entries():
        if entry.predictor is None:
            continue
        labels = {
            "model": entry.name,
            "version": entry.version,
            "kind": entry.kind,
            "task": entry.task,
            "runtime": entry.runtime,
            "device": entry.device,
            "precision": entry.precision,
        }
        elsewhere = await request.app.state.batchers.replicas(entry.name)
        if elsewhere is not None:
            labels |= {
                k: v
                for k, v in (
                    ("runtime", elsewhere.runtime),
                    ("device", elsewhere.device),
                    ("precision", elsewhere.precision),
                )
                if v is not None
            }
        served.append({k: str(v) for k, v in labels.items() if v is not None})
    return served
