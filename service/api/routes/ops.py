"""Operations: Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.telemetry import exposition
from service.workers import shared_dir

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: per-model requests, batch sizes, queue wait and model time (summed over
    every worker process when there are several)."""
    settings = request.app.state.settings
    shared = shared_dir() if settings.workers > 1 else None
    text = request.app.state.metrics_note.encode() + exposition(request.app.state.metrics, shared)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
