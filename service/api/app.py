"""The application factory, `create_app(settings)`: nothing is built at import.

uvicorn calls it as a factory (`uvicorn --factory service.api.app:create_app`, which `fastai-serve serve`
and the Docker image do); tests build a fresh app per settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__
from service.api.access import AccessMiddleware, ModelGate, RateLimiter, parse_rate_limit
from service.api.frontend import install_frontend
from service.api.hot import install_hot_routes
from service.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware, RequestMetricsMiddleware
from service.api.problems import install_problem_handlers
from service.api.routes import (
    admin,
    collab,
    health,
    models,
    monitoring,
    ops,
    reports,
    share,
    tabular,
    text,
    vision,
)
from service.api.v2 import routes as v2
from service.api.v2.grpc_service import start_grpc
from service.explain.pool import ExplainPool
from service.inference.batching import BatcherPool, ModelPool
from service.inference.runtime import RuntimeOptions
from service.monitoring.feedback import FeedbackStore
from service.monitoring.logged import LoggedPool
from service.monitoring.monitor import Monitor, refresh_forever
from service.monitoring.payload import LogOptions, PayloadLog
from service.registry import ModelRegistry
from service.settings import Settings, get_settings
from service.share import ShareLookup
from service.startup import start_models, watch_store
from service.telemetry import Metrics
from service.workers import publish_forever, shared_dir

logger = logging.getLogger(__name__)


# Builds the pool the routes send prepared requests to, inside the app's lifespan (default: `BatcherPool`,
# batching in this process; Ray's ingress passes one that calls the model deployments).
PoolFactory = Callable[[Settings, Metrics], ModelPool]


def local_pool(settings: Settings, metrics: Metrics) -> ModelPool:
    """Each model batched and run in this process."""
    return BatcherPool(
        max_batch=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        max_queue=settings.batch_max_queue,
        metrics=metrics,
    )


def create_app(
    settings: Settings | None = None, *, pool: PoolFactory = local_pool, load_first: bool = False
) -> FastAPI:
    """The whole service over `settings` (default: the environment and `.env`).

    `load_first`: start serving only once every model is loaded (Ray's ingress: Serve sends a replica
    requests as soon as its app has started, and probes its health its own way); by default /health/live
    answers while the learners unpickle."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(
            store=settings.model_store,
            device=settings.device,
            max_image_pixels=settings.max_image_pixels,
            runtime=RuntimeOptions(
                setting=settings.runtime,
                precision=settings.precision,
                cache_dir=settings.onnx_cache_dir,
                spin=settings.workers == 1,
            ),
        )
        registry.discover()
        app.state.registry = registry
        # The start-up step runs as a task so /health/live answers while learners unpickle.
        loading = asyncio.create_task(start_models(registry, settings))
        if load_first:
            await asyncio.shield(loading)
        # Several workers: publish this one's readiness where the others' /health/ready reads it.
        shared = shared_dir() if settings.workers > 1 else None
        publishing = asyncio.create_task(publish_forever(shared, registry)) if shared else None
        # The payload log (LOG_DIR): every door's predictions, offered after their model answers.
        payload_log = (
            PayloadLog(
                LogOptions(
                    folder=settings.log_dir,
                    sample=settings.log_sample,
                    flush_s=settings.log_flush_s,
                    max_items=settings.log_queue,
                    roll_mb=settings.log_roll_mb,
                    retention_days=settings.log_retention_days,
                    thumbnail_px=settings.log_thumbnail_px,
                ),
                metrics=metrics,
            )
            if settings.log_dir is not None
            else None
        )
        app.state.payload_log = payload_log
        app.state.feedback = FeedbackStore(settings.log_dir) if settings.log_dir is not None else None
        app.state.monitor = (
            Monitor(payload_log, cache_s=settings.monitor_cache_s, metrics=metrics) if payload_log else None
        )
        monitoring = (
            asyncio.create_task(
                refresh_forever(app.state.monitor, registry, every_s=settings.monitor_every_s)
            )
            if app.state.monitor is not None
            else None
        )
        inner = pool(settings, metrics)
        app.state.batchers = LoggedPool(inner, payload_log) if payload_log is not None else inner
        # Explanations: threads of their own, never a batcher's queue (service/explain/pool.py).
        app.state.explainers = ExplainPool(
            concurrency=settings.explain_concurrency, max_queue=settings.explain_queue, metrics=metrics
        )
        # Off by default: models moved into the store load on the admin reload, or every RESCAN_S seconds.
        watching = (
            asyncio.create_task(watch_store(registry, app.state.batchers, every_s=settings.rescan_s))
            if settings.rescan_s > 0
            else None
        )
        app.state.share = ShareLookup(
            api_url=settings.ngrok_api_url,
            timeout_s=settings.share_timeout_s,
            cache_s=settings.share_cache_s,
            policy_file=settings.ngrok_policy_file,
        )
        grpc_server = None
        try:
            # gRPC in this event loop: the same registry, batchers, limits, keys, rate budget and metrics.
            gate = ModelGate(keys=settings.predict_api_keys, limiter=limiter, metrics=metrics)
            started = await start_grpc(
                settings=settings, registry=registry, batchers=app.state.batchers, metrics=metrics, gate=gate
            )
            grpc_server, app.state.grpc_port = started if started else (None, None)
            yield
        finally:
            if grpc_server is not None:
                # Calls in flight finish (as uvicorn lets HTTP requests finish), new ones are refused.
                await grpc_server.stop(settings.request_timeout_s)
            if monitoring is not None:
                monitoring.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitoring
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            if publishing is not None:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
            await loading
            await app.state.batchers.close()
            if payload_log is not None:  # after the last prediction: everything queued is written
                await asyncio.to_thread(payload_log.close)
            app.state.explainers.close()
            await app.state.share.aclose()

    app = FastAPI(
        title="fastai-serve",
        version=__version__,
        description="Serves fastai exported learners: tabular rows, CSV files and images.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.metrics_note = ""  # comment lines /metrics starts with (on Ray: where the rest is)
    app.state.grpc_port = None
    app.state.payload_log = None
    app.state.monitor = None  # the port gRPC listens on once started (None: GRPC_PORT is 0)
    # One rate budget per client, whether it calls over HTTP or gRPC.
    limiter = RateLimiter(parse_rate_limit(settings.rate_limit)) if settings.rate_limit else None
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    # Before the body is read: a client without a key, or over its rate, costs a header lookup.
    app.add_middleware(
        AccessMiddleware,
        keys=settings.predict_api_keys,
        metrics_key=settings.metrics_api_key,
        limiter=limiter,
        forwarded_allow=settings.forwarded_allow_ips,
        metrics=metrics,
    )
    # Around the others, so every answer (a 413 before parsing included) has an id, headers and a log line.
    app.add_middleware(RequestContextMiddleware, timeout_s=settings.request_timeout_s)
    if settings.cors_origins:
        # Outermost, so refusals (413, 503) carry the headers too: a frontend on another origin reads them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["Retry-After", "Content-Disposition"],
        )
    install_problem_handlers(app)
    for module in (health, admin, models, monitoring, tabular, vision, collab, text, reports, ops, share, v2):
        app.include_router(module.router)
    install_hot_routes(app, [tabular, vision, v2])  # plain predict requests skip FastAPI's per-request work
    # Last: the frontend's mount at / would otherwise shadow routes added after it.
    install_frontend(app, settings.frontend_dir)
    return app
