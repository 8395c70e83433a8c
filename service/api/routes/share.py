"""The public URL to share this deployment at (the ngrok sidecar's tunnel)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import SettingsDep, ShareDep
from service.schemas.share import ShareResponse

router = APIRouter(prefix="/api/v1", tags=["ops"])


@router.get("/share", response_model=ShareResponse)
async def share(lookup: ShareDep, settings: SettingsDep) -> ShareResponse:
    """The ngrok sidecar's public https URL (`--profile public`) and what guards it; null when none runs."""
    info = await lookup.current()
    return ShareResponse(
        public_url=info.public_url,
        source=info.source,
        reason=info.reason,
        protected=info.protected,
        api_key_required=bool(settings.predict_api_keys),
    )
