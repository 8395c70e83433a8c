"""Our batch metrics inside Ray: a model replica records them through `ray.util.metrics`, which Ray's
metrics agent on every node exports for Prometheus beside Ray Serve's own (`ray_serve_*`).

The replica's `BatcherPool` observes `Metrics` collectors with `.labels(...).observe/inc` as in a single
server; `ray_metrics()` swaps the batch collectors for ones that forward to Ray with the same names, labels
and buckets, so a dashboard reads `ray_fastai_serve_batch_size_bucket{model=...}` over every replica.
"""

from __future__ import annotations

from typing import Any

from ray.util import metrics as ray_metric

from service.telemetry import Metrics

# Where the numbers live on Ray, said in /metrics (whose own numbers are the answering ingress replica's).
METRICS_NOTE = (
    "# fastai-serve on Ray: these are the HTTP metrics of the front that answered this scrape (the\n"
    "# `serve --ray` process, or with RAY_FRONT=proxy one ingress replica).\n"
    "# The whole cluster's are on Ray's metrics endpoint of every node (ray start --metrics-export-port):\n"
    "# Ray Serve's ray_serve_* (requests, latency, replicas per deployment) and, from the model replicas,\n"
    "# ray_fastai_serve_batch_size, _requests_per_batch, _queue_wait_seconds, _model_seconds and\n"
    "# _overload_rejections by model (and runtime); Prometheus sums them over replicas.\n"
)


class _Labelled:
    def __init__(self, metric: Any, tags: dict[str, str]) -> None:
        self.metric, self.tags = metric, tags

    def observe(self, value: float) -> None:
        self.metric.observe(value, tags=self.tags)

    def inc(self, value: float = 1.0) -> None:
        self.metric.inc(value, tags=self.tags)


class _RayCollector:
    """A prometheus-client collector's `labels(...)` over a Ray metric with the same name and label keys."""

    def __init__(self, metric: Any, keys: tuple[str, ...]) -> None:
        self.metric, self.keys = metric, keys

    def labels(self, *values: str) -> _Labelled:
        return _Labelled(self.metric, dict(zip(self.keys, values, strict=True)))


def _histogram(like: Any) -> _RayCollector:
    keys = tuple(like._labelnames)
    buckets = [b for b in like._upper_bounds if b != float("inf")]
    name = like._name
    return _RayCollector(
        ray_metric.Histogram(name, like._documentation, boundaries=buckets, tag_keys=keys), keys
    )


def _counter(like: Any) -> _RayCollector:
    keys = tuple(like._labelnames)
    return _RayCollector(ray_metric.Counter(like._name, like._documentation, tag_keys=keys), keys)


def ray_metrics() -> Metrics:
    """A `Metrics` whose batch collectors record to Ray (the HTTP ones stay local: the ingress has them)."""
    metrics = Metrics()
    metrics.batch_size = _histogram(metrics.batch_size)  # type: ignore[assignment]
    metrics.requests_per_batch = _histogram(metrics.requests_per_batch)  # type: ignore[assignment]
    metrics.queue_wait_seconds = _histogram(metrics.queue_wait_seconds)  # type: ignore[assignment]
    metrics.model_seconds = _histogram(metrics.model_seconds)  # type: ignore[assignment]
    metrics.rejected = _counter(metrics.rejected)  # type: ignore[assignment]
    return metrics
