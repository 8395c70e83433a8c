"""Content-Type guards: a body declared as something the route does not read is a 415, not a 422."""

from __future__ import annotations

from fastapi import Request

from service.errors import MSG_JSON_MEDIA, UnsupportedMedia


def require_json(request: Request) -> None:
    """Dependency for JSON-body routes; a missing Content-Type is read as JSON, as FastAPI does."""
    # Without this a body sent as a form or as text reaches validation as bytes: a baffling 422.
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMedia(MSG_JSON_MEDIA.format(media=media))
