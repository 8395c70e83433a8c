"""The Ray Serve application: one ingress running the whole FastAPI app, one deployment per model.

`application(settings)` builds it; `build(args)` is the builder Ray's own `serve run` / `serve deploy`
import (deploy/ray/serve_config.yaml); `serve_on_ray` is `fastai-serve serve --ray ADDRESS`.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

import ray
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment
from starlette.types import ASGIApp

from service.api.app import create_app
from service.errors import LoadError
from service.inference.runtime import RuntimeSetting
from service.rayserve.metrics import METRICS_NOTE
from service.rayserve.pool import RayModelPool, deployment_name
from service.rayserve.replica import ModelReplica
from service.registry import ModelEntry, ModelRegistry
from service.settings import Settings

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

logger = logging.getLogger(__name__)
# Requests one ingress replica takes at once (Serve's default, 5, would cap HTTP concurrency); a model
# replica takes as many as one batch holds, so its batcher can coalesce them.
INGRESS_MAX_ONGOING = 256


@serve.ingress()
class Ingress:
    """The same app as a single server; its registry loads each learner for preprocessing only (torch, one
    thread: it never runs a batch), and its model pool calls the model deployments."""

    def __init__(self, settings: Settings, models: dict[str, DeploymentHandle]) -> None:
        # The application's name as deployed (`serve run` of a config may name it otherwise).
        app_name = serve.get_replica_context().app_name
        self.settings = settings.model_copy(
            update={
                "runtime": RuntimeSetting.TORCH,
                "onnx_cache_dir": None,
                "torch_threads": 1,
                "workers": 1,
                "ray_app_name": app_name,
                "grpc_port": 0,  # gRPC is not served under Ray (HTTP /v2 is)
            }
        )
        self.models = models

    def __serve_build_asgi_app__(self) -> ASGIApp:
        app = create_app(
            self.settings,
            pool=lambda settings, _metrics: RayModelPool(self.models, settings),
            load_first=True,
        )
        app.state.metrics_note = METRICS_NOTE
        return app


def _replica_options(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """Serve options of one model's deployment: settings, overridden by the model's `model.json`
    (`"replicas": 3` or `{"min": 1, "max": 4}` for autoscaling, `"num_cpus"`, `"num_gpus"`)."""
    gpus = settings.ray_num_gpus
    if gpus is None:
        gpus = 1.0 if settings.device.startswith("cuda") else 0.0
    actor = {
        "num_cpus": float(manifest.get("num_cpus", settings.ray_num_cpus)),
        "num_gpus": float(manifest.get("num_gpus", gpus)),
    }
    options: dict[str, Any] = {
        "name": None,
        "ray_actor_options": actor,
        "max_ongoing_requests": settings.batch_max_size,
        "health_check_period_s": 5,
    }
    replicas = manifest.get("replicas", settings.ray_replicas)
    if isinstance(replicas, dict):
        low, high = int(replicas.get("min", 1)), int(replicas.get("max", max(1, settings.ray_replicas)))
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": max(low, high),
            "initial_replicas": max(low, min(high, settings.ray_replicas)),
            "target_ongoing_requests": settings.batch_max_size // 2,
        }
    else:
        options["num_replicas"] = int(replicas)
    return options


def _manifest(entry: ModelEntry) -> dict[str, Any]:
    try:
        return ModelRegistry.read_manifest(entry)
    except LoadError:
        return {}  # the replica's own load reports a bad manifest


def _deployment(cls: type) -> Deployment:
    deployment: Deployment = serve.deployment(cls)  # type: ignore[assignment]  # the class overload
    return deployment


def application(settings: Settings) -> Application:
    """The ingress bound to one deployment per model folder of the store."""
    # The registry's own discovery (nothing is loaded here): the same folders a single server serves.
    models: dict[str, Application] = {}
    for entry in ModelRegistry(store=settings.model_store, device=settings.device).discover():
        options = _replica_options(settings, _manifest(entry))
        options["name"] = deployment_name(entry.name)
        models[entry.name] = _deployment(ModelReplica).options(**options).bind(entry.name, settings)
    ingress = _deployment(Ingress).options(
        name="ingress",
        num_replicas=settings.ray_ingress_replicas,
        ray_actor_options={"num_cpus": settings.ray_num_cpus},
        max_ongoing_requests=INGRESS_MAX_ONGOING,
    )
    bound: Application = ingress.bind(settings, models)
    return bound


def build(args: dict[str, Any]) -> Application:
    """Ray's application builder (`import_path: service.rayserve.app:build`): `args` override the
    FASTAI_SERVE_* environment, with the same names in lower case (`model_store`, `ray_replicas`, ...)."""
    return application(Settings(**args))


def serve_on_ray(settings: Settings, *, address: str, host: str, port: int) -> None:
    """Connect to the cluster, deploy, serve HTTP on host:port through Serve's proxy until SIGINT/SIGTERM,
    then delete the application (the cluster and other applications stay)."""
    stop = threading.Event()  # set from the start: a stop while deploying still removes the application
    ray.init(address=address, namespace="fastai-serve", log_to_driver=False)
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    serve.start(proxy_location=settings.ray_proxy_location, http_options={"host": host, "port": port})
    # Our request middleware logs every request once, with its id: Serve's access log would repeat it.
    quiet = {"enable_access_log": False}
    serve.run(application(settings), name=settings.ray_app_name, route_prefix="/", logging_config=quiet)
    logger.info("serving %s on Ray at http://%s:%d", settings.model_store, host, port)
    stop.wait()
    serve.delete(settings.ray_app_name)
