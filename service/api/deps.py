"""Typed dependencies the routes ask for."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import MSG_ADMIN_DISABLED, MSG_API_KEY_MISSING, MSG_API_KEY_WRONG, Forbidden, Unauthorized
from service.inference.batching import ModelPool
from service.registry import ModelRegistry
from service.settings import Settings
from service.share import ShareLookup


# `async def`, though nothing here awaits: FastAPI runs a plain `def` dependency in the thread pool, a
# thread hop per dependency per request (most of a one-row request's overhead besides the model).
async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def get_batchers(request: Request) -> ModelPool:
    batchers: ModelPool = request.app.state.batchers
    return batchers


async def get_share_lookup(request: Request) -> ShareLookup:
    lookup: ShareLookup = request.app.state.share
    return lookup


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


BatchersDep = Annotated[ModelPool, Depends(get_batchers)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ShareDep = Annotated[ShareLookup, Depends(get_share_lookup)]


def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="the admin key (FASTAI_SERVE_API_KEY)")] = None,
) -> None:
    """Admin guard: 403 when no key is configured (admin disabled), 401 when the header is absent or wrong."""
    if not settings.api_key:
        raise Forbidden(MSG_ADMIN_DISABLED)
    if not x_api_key:
        raise Unauthorized(MSG_API_KEY_MISSING)
    # Constant time: how much of a guess matches must not show in the response time.
    if not hmac.compare_digest(x_api_key.encode(), settings.api_key.encode()):
        raise Unauthorized(MSG_API_KEY_WRONG)


AdminDep = Depends(require_api_key)
