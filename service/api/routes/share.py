"""The public URL to share this deployment at (the ngrok sidecar's tunnel)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ShareDep
from service.schemas.share import ShareResponse

router = APIRouter(prefix="/api/v1", tags=["ops"])


@router.get("/share", response_model=ShareResponse)
async def share(lookup: ShareDep) -> ShareResponse:
    """Public https URL from the ngrok sidecar (`--profile public`); null with a reason when none runs."""
    info = await lookup.current()
    return ShareResponse(public_url=info.public_url, source=info.source, reason=info.reason)
