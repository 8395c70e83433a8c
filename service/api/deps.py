"""Typed dependencies the routes ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.inference.batcher import BatcherPool
from service.registry import ModelRegistry
from service.settings import Settings
from service.share import ShareLookup


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_batchers(request: Request) -> BatcherPool:
    batchers: BatcherPool = request.app.state.batchers
    return batchers


def get_share_lookup(request: Request) -> ShareLookup:
    lookup: ShareLookup = request.app.state.share
    return lookup


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


BatchersDep = Annotated[BatcherPool, Depends(get_batchers)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ShareDep = Annotated[ShareLookup, Depends(get_share_lookup)]
