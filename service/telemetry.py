"""What the service measures: Prometheus collectors (one registry per app, since tests build many apps in
one process) and the timings one request collects on its way, for its log line."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Where a request's time goes: queue wait, model time, and how full each batch was.

    With several worker processes (`shared_dir` set), every worker's values are summed on read.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fastai_serve_requests",
            "Requests by model, route, status and protocol (v1: /api/v1, v2: Open Inference Protocol over "
            "HTTP, grpc: over gRPC, its route the RPC's path and its status the gRPC code's name)",
            ["model", "route", "status", "protocol"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "fastai_serve_request_seconds",
            "Whole request time",
            ["model", "route", "protocol"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fastai_serve_batch_size",
            "Items (rows or images) per forward pass",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384),
            registry=self.registry,
        )
        self.requests_per_batch = Histogram(
            "fastai_serve_requests_per_batch",
            "Requests coalesced into one forward pass",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.queue_wait_seconds = Histogram(
            "fastai_serve_queue_wait_seconds",
            "Time a request waited before its batch started",
            ["model"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "fastai_serve_model_seconds",
            "Time of one batched forward pass (encode + model + activation), by runtime (onnx, torch)",
            ["model", "runtime"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.rejected = Counter(
            "fastai_serve_overload_rejections",
            "Requests refused with 503 because the queue was full",
            ["model"],
            registry=self.registry,
        )
        self.explain_seconds = Histogram(
            "fastai_serve_explain_seconds",
            "Time of one explain request (queue wait included), by model and method",
            ["model", "method"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.explain_rejected = Counter(
            "fastai_serve_explain_rejections",
            "Explain requests refused with 503 because the explanation queue was full",
            ["model"],
            registry=self.registry,
        )
        self.payload_log_dropped = Counter(
            "fastai_serve_payload_log_dropped",
            "Predictions the payload log could not keep (reason: queue_full, write_failed)",
            ["reason"],
            registry=self.registry,
        )
        # Every worker computes these from the whole log: the latest value is the value.
        self.drift = Gauge(
            "fastai_serve_drift",
            "Population stability index of a model's recent inputs (or predictions) against its reference",
            ["model", "input"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.live_metric = Gauge(
            "fastai_serve_live_metric",
            "A model's score on the feedback received for its recent predictions (accuracy, rmse, ...)",
            ["model", "metric"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.rate_limited = Counter(
            "fastai_serve_rate_limited",
            "Requests refused with 429 because their client was over RATE_LIMIT",
            registry=self.registry,
        )


# Timings a request collects on its way (e.g. the model's share), logged with its line. The request
# middleware opens the dict; anything below it (the batcher) adds to it without knowing about HTTP.
request_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "request_timings", default=None
)


def record_timing(name: str, seconds: float) -> None:
    timings = request_timings.get()
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + seconds * 1000


# Who ran a request's forward passes (host and process, or Ray node and replica): the request middleware
# opens the list and answers it as the X-Served-By header; the model pool adds to it.
request_served_by: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "request_served_by", default=None
)


def record_served_by(who: str) -> None:
    served = request_served_by.get()
    if served is not None and who not in served:
        served.append(who)


@dataclass
class RequestContext:
    """One request as the payload log and the answers' item ids see it: its id (`X-Request-ID`), the door
    it came by (`v1`, `v2`, `grpc`), when it started, and how many items it has answered and logged so far
    (item `k` of a request is `<request id>-<k>`, whichever pass of a CSV gave it)."""

    request_id: str
    protocol: str
    started: float = field(default_factory=time.perf_counter)
    answered: int = 0
    logged: int = 0
    log: bool = True  # False for passes that are not predictions (evaluation)


current_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "current_request", default=None
)


def item_ids(n: int) -> list[str] | None:
    """The ids of the request's next `n` answered items (None outside a request: in-process use)."""
    context = current_request.get()
    if context is None:
        return None
    start, context.answered = context.answered, context.answered + n
    return [f"{context.request_id}-{k}" for k in range(start, start + n)]


MODEL_INFO_LABELS = ("model", "version", "kind", "task", "runtime", "device", "precision")


def model_info(models: list[dict[str, str]]) -> bytes:
    """`fastai_serve_model_info{model,version,kind,task,runtime,device,precision} 1` per ready model: what
    serves it where (join on `model` to label any other series with its device)."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    family = GaugeMetricFamily(
        "fastai_serve_model_info",
        "One per ready model: version, kind, task, runtime (torch, onnx), device (cpu, cuda:N), precision",
        labels=list(MODEL_INFO_LABELS),
    )
    for model in models:
        family.add_metric([model.get(k) or "" for k in MODEL_INFO_LABELS], 1.0)

    class Models(Collector):
        def collect(self) -> Iterable[Metric]:
            return [family]

    registry = CollectorRegistry()
    registry.register(Models())
    return bytes(generate_latest(registry))


def exposition(metrics: Metrics, shared: Path | None) -> bytes:
    """The Prometheus text of this process, or of every worker process when they share a folder."""
    if shared is None:
        return bytes(generate_latest(metrics.registry))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(shared))
    return bytes(generate_latest(registry))
