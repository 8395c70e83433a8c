"""The Ray Serve application: one deployment per model, and the front that serves HTTP before them.

Two fronts run the same FastAPI app (validation, preprocessing, the front's batcher: `pool.RayModelPool`):
- `local` (`fastai-serve serve --ray ADDRESS`, the default): this process serves HTTP itself and sends each
  batch to its model's deployment, one Ray hop; the application's root is `ModelSet`, which only holds the
  model deployments (Serve wants one root per application) and takes no CPU.
- `proxy` (RAY_FRONT=proxy, and always under `serve run` / `serve deploy` of deploy/ray/serve_config.yaml,
  whose builder is `build(args)`): Serve's HTTP proxy on every node and an `Ingress` deployment, two hops.
`serve_on_ray` is `fastai-serve serve --ray ADDRESS`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import ray
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment
from starlette.types import ASGIApp

from service.api.app import create_app
from service.errors import MSG_RAY_FITTED, MSG_RAY_WAITING, LoadError
from service.inference.runtime import RuntimeSetting
from service.rayserve.metrics import METRICS_NOTE
from service.rayserve.placement import WAIT_WARN_S, Fit, plan
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
# CPUs per replica of a Serve config's build (`serve deploy`), which sizes nothing from the cluster.
BUILD_CPUS = 1.0
WAIT_POLL_S = 1.0
# A model replica runs its methods on its main event loop, not a second thread's (Serve's default): they
# never block it (loads and forwards run in threads), and on shared cores each hand-over between threads
# waits for the GIL; measured on 2 cores, one row at one client 9.0 -> 6.5 ms p50 with the front's router on
# its own loop too (service/cli.py sets RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0 before Serve is imported).
REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


def front_settings(settings: Settings, app_name: str, *, grpc_port: int = 0) -> Settings:
    """A front's settings: its registry loads each learner for preprocessing only (torch, one thread: it
    never runs a batch), and its model pool calls the model deployments of `app_name`; gRPC on `grpc_port`
    (the local front's GRPC_PORT; an ingress replica behind Serve's proxy serves none)."""
    return settings.model_copy(
        update={
            "runtime": RuntimeSetting.TORCH,
            "onnx_cache_dir": None,
            "torch_threads": 1,
            "workers": 1,
            "ray_app_name": app_name,
            "grpc_port": grpc_port,
        }
    )


def front_app(settings: Settings, models: dict[str, DeploymentHandle], *, load_first: bool) -> ASGIApp:
    app = create_app(
        settings, pool=lambda settings, _metrics: RayModelPool(models, settings), load_first=load_first
    )
    app.state.metrics_note = METRICS_NOTE
    return app


@serve.ingress()
class Ingress:
    """The proxy front: the same app as a single server, in a deployment behind Serve's proxy."""

    def __init__(self, settings: Settings, models: dict[str, DeploymentHandle]) -> None:
        # The application's name as deployed (`serve run` of a config may name it otherwise).
        self.settings = front_settings(settings, serve.get_replica_context().app_name)
        self.models = models

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return front_app(self.settings, self.models, load_first=True)


class ModelSet:
    """The application's root under the local front: it holds the model deployments, and nothing calls it
    (the front calls each model's deployment by name)."""

    def __init__(self, models: dict[str, DeploymentHandle]) -> None:
        self.names = sorted(models)


def _replica_options(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """Serve options of one model's deployment: settings, overridden by the model's `model.json`
    (`"replicas": 3` or `{"min": 1, "max": 4}` for autoscaling, `"num_cpus"`, `"num_gpus"`)."""
    gpus = settings.ray_num_gpus
    if gpus is None:
        gpus = 1.0 if settings.device.startswith("cuda") else 0.0
    cpus = settings.ray_num_cpus if settings.ray_num_cpus is not None else BUILD_CPUS
    actor = {
        "num_cpus": float(manifest.get("num_cpus", cpus)),
        "num_gpus": float(manifest.get("num_gpus", gpus)),
        "runtime_env": {"env_vars": REPLICA_ENV},
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


def _models(settings: Settings) -> dict[str, Application]:
    """One deployment per model folder of the store (the registry's own discovery; nothing loads here)."""
    models: dict[str, Application] = {}
    for entry in ModelRegistry(store=settings.model_store, device=settings.device).discover():
        options = _replica_options(settings, _manifest(entry))
        options["name"] = deployment_name(entry.name)
        models[entry.name] = _deployment(ModelReplica).options(**options).bind(entry.name, settings)
    return models


def application(settings: Settings, *, front: str = "proxy") -> Application:
    """The model deployments under their root: the proxy front's `Ingress`, or `ModelSet` (local front)."""
    models = _models(settings)
    if front == "local":
        root = _deployment(ModelSet).options(name="models", ray_actor_options={"num_cpus": 0})
        bound: Application = root.bind(models)
        return bound
    cpus = settings.ray_num_cpus if settings.ray_num_cpus is not None else BUILD_CPUS
    ingress = _deployment(Ingress).options(
        name="ingress",
        num_replicas=settings.ray_ingress_replicas,
        ray_actor_options={"num_cpus": cpus},
        max_ongoing_requests=INGRESS_MAX_ONGOING,
    )
    bound = ingress.bind(settings, models)
    return bound


def sized_replicas(settings: Settings, *, front: str) -> int:
    """Replicas that take the shared CPU request (RAY_NUM_CPUS): each model's initial replicas unless its
    model.json asks its own CPUs, and the proxy front's ingress replicas."""
    count = settings.ray_ingress_replicas if front == "proxy" else 0
    for entry in ModelRegistry(store=settings.model_store, device=settings.device).discover():
        manifest = _manifest(entry)
        if "num_cpus" in manifest:
            continue
        options = _replica_options(settings, manifest)
        count += options.get("num_replicas") or options["autoscaling_config"]["initial_replicas"]
    return count


def build(args: dict[str, Any]) -> Application:
    """Ray's application builder (`import_path: service.rayserve.app:build`): `args` override the
    FASTAI_SERVE_* environment, with the same names in lower case (`model_store`, `ray_replicas`, ...)."""
    return application(Settings(**args))


def serve_on_ray(settings: Settings, *, address: str, host: str, port: int) -> None:
    """Connect to the cluster, size the replicas' CPUs to it, deploy, and serve HTTP on host:port (this
    process, or Serve's proxy with RAY_FRONT=proxy) until SIGINT/SIGTERM; then delete the application (the
    cluster and other applications stay). A deployment that cannot be placed is said on the console."""
    front = settings.ray_front
    app_name = settings.ray_app_name
    ray.init(address=address, namespace="fastai-serve", log_to_driver=False)
    fit = plan(settings.ray_num_cpus, sized_replicas(settings, front=front))
    settings = settings.model_copy(update={"ray_num_cpus": fit.cpus})
    logger.info("Ray: %d replica(s) of %g CPU each; free CPUs per node: %s", fit.replicas, fit.cpus, fit.free)
    if not fit.placeable:
        logger.warning("%s", fit.problem())
    stop = threading.Event()
    try:
        if front == "local":
            _serve_locally(settings, stop, fit, host=host, port=port)
        else:
            _serve_through_proxy(settings, stop, fit, host=host, port=port)
    finally:
        stop.set()
        serve.delete(app_name)


# Our request middleware logs every request once, with its id: Serve's access log would repeat it.
QUIET = {"enable_access_log": False}


def _serve_locally(settings: Settings, stop: threading.Event, fit: Fit, *, host: str, port: int) -> None:
    """The local front: deploy without waiting, then serve HTTP here until uvicorn's SIGINT/SIGTERM
    (in-flight requests finished); readiness follows the replicas, the console the placement."""
    import uvicorn

    from service.logs import uvicorn_options

    app_name = settings.ray_app_name
    serve.start(proxy_location="Disabled")
    serve_run = getattr(serve, "_run")  # noqa: B009 - Serve's deploy without waiting for it to run
    serve_run(
        application(settings, front="local"),
        _blocking=False,
        name=app_name,
        route_prefix=None,
        logging_config=QUIET,
    )
    threading.Thread(target=_watch, args=(app_name, fit, stop), daemon=True).start()
    names = [e.name for e in ModelRegistry(store=settings.model_store, device=settings.device).discover()]
    handles = {n: serve.get_deployment_handle(deployment_name(n), app_name) for n in names}
    front = front_settings(settings, app_name, grpc_port=settings.grpc_port)
    app = front_app(front, handles, load_first=False)
    logger.info(
        "serving %s through Ray application %r at http://%s:%d", settings.model_store, app_name, host, port
    )
    uvicorn.run(app, host=host, port=port, **uvicorn_options(settings))


def _serve_through_proxy(
    settings: Settings, stop: threading.Event, fit: Fit, *, host: str, port: int
) -> None:
    """The proxy front: Serve's proxy and our ingress deployment serve HTTP; this process deploys without
    waiting and watches until SIGINT/SIGTERM (a stop while deploying ends it too)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    serve.start(proxy_location=settings.ray_proxy_location, http_options={"host": host, "port": port})
    serve_run = getattr(serve, "_run")  # noqa: B009 - Serve's deploy without waiting for it to run
    serve_run(
        application(settings),
        _blocking=False,
        name=settings.ray_app_name,
        route_prefix="/",
        logging_config=QUIET,
    )
    logger.info("serving %s on Ray at http://%s:%d", settings.model_store, host, port)
    _watch(settings.ray_app_name, fit, stop, until_stopped=True)


def _watch(app_name: str, fit: Fit, stop: threading.Event, *, until_stopped: bool = False) -> None:
    """Say on the console, every WAIT_WARN_S while it lasts, that the application is not running yet and
    why (Serve's own deployment messages, and the CPU numbers); with `until_stopped`, wait for `stop`."""
    started = time.monotonic()
    next_warning = started + WAIT_WARN_S
    running = False
    while not stop.wait(WAIT_POLL_S):
        if running:
            if until_stopped:
                continue
            return
        app = serve.status().applications.get(app_name)
        running = app is not None and _named(app.status) == "RUNNING"
        if running:
            logger.info("Ray application %r running after %.0f s", app_name, time.monotonic() - started)
        elif time.monotonic() >= next_warning:
            next_warning += WAIT_WARN_S
            logger.warning("%s", waiting_message(app_name, fit, app, time.monotonic() - started))


def waiting_message(app_name: str, fit: Fit, app: Any, seconds: float) -> str:
    """MSG_RAY_WAITING: each deployment not yet healthy, Serve's message for it, and the CPU placement."""
    waiting = []
    for name, status in app.deployments.items() if app is not None else []:
        if _named(status.status) != "HEALTHY":
            states = ", ".join(f"{n} {s}" for s, n in status.replica_states.items()) or "no replicas"
            message = f" ({status.message})" if status.message else ""
            waiting.append(f"{name}: {states}{message}")
    placement = (
        fit.problem() if not fit.placeable else MSG_RAY_FITTED.format(replicas=fit.replicas, cpus=fit.cpus)
    )
    return MSG_RAY_WAITING.format(
        app=app_name, seconds=seconds, waiting="; ".join(waiting) or "not deployed yet", placement=placement
    )


def _named(status: Any) -> str:
    """A Serve status enum's name ("RUNNING"), whichever Ray version's enum or string it is."""
    return str(getattr(status, "value", status))
