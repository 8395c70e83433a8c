"""Service configuration: one pydantic-settings class, environment prefix ``FASTAI_SERVE_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.inference.runtime import Precision, RuntimeSetting


class Settings(BaseSettings):
    """Every knob the service reads; each one is listed in `.env.example`."""

    model_config = SettingsConfigDict(env_prefix="FASTAI_SERVE_", env_file=".env", extra="ignore")

    model_store: Path = Path("model_store")
    device: str = "auto"
    host: str = "0.0.0.0"
    port: int = 8000
    grpc_port: int = Field(
        default=8001, ge=0, le=65535, description="the Open Inference Protocol over gRPC (as Triton); 0 = off"
    )
    workers: int = Field(default=1, ge=1)
    log_level: str = "info"

    max_rows: int = Field(default=10_000, ge=1)
    max_files: int = Field(default=64, ge=1)
    max_upload_mb: float = Field(default=20.0, gt=0)
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="width x height of one uploaded image, read before decoding"
    )
    keep_alive_s: float = Field(
        default=75.0,
        gt=0,
        description="idle keep-alive; longer than clients' own (httpx: 5 s) so they close first",
    )
    request_timeout_s: float = Field(default=60.0, gt=0, description="longest a request may take")
    log_format: str = Field(default="json", pattern="^(json|text)$")
    max_text_chars: int = Field(default=20_000, ge=1, description="characters of one text (text models)")
    max_eval_files: int = Field(default=5000, ge=1, description="images in one evaluation archive")
    max_archive_mb: float = Field(default=200.0, gt=0, description="unpacked size of one evaluation archive")
    default_top_k: int = Field(default=3, ge=1)

    api_key: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    predict_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated; when set, every model route needs one (X-API-Key or Bearer)",
    )
    metrics_api_key: str | None = Field(default=None, description="when set, /metrics needs it")
    rate_limit: str | None = Field(
        default=None, description="per client on the model routes, e.g. 20/second;600/minute; unset = none"
    )
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="proxies (IPs or CIDRs, * = any) whose X-Forwarded-For names the client; unset = none",
    )

    log_dir: Path | None = Field(
        default=None, description="payload log: a Parquet dataset of predictions here (unset: no log)"
    )
    log_sample: float = Field(default=1.0, ge=0.0, le=1.0, description="share of predictions logged")
    log_flush_s: float = Field(default=10.0, gt=0, description="seconds between the log's file writes")
    log_queue: int = Field(default=100_000, ge=1, description="items waiting for the writer before drops")
    log_roll_mb: float = Field(default=64.0, gt=0, description="a flush larger than this is cut in files")
    log_retention_days: int = Field(default=0, ge=0, description="days of date= partitions kept (0: all)")
    log_thumbnail_px: int = Field(
        default=0, ge=0, le=512, description="logged images' JPEG thumbnail, longer side in pixels (0: none)"
    )
    monitor_cache_s: float = Field(
        default=30.0, ge=0, description="seconds a /monitor answer (per model and window) is reused"
    )
    monitor_every_s: float = Field(
        default=60.0, gt=0, description="seconds between the background refreshes of /monitor's gauges"
    )
    max_explain_items: int = Field(
        default=8, ge=1, description="rows, images or texts explained per request (413 above)"
    )
    explain_concurrency: int = Field(
        default=1, ge=1, description="explanations computed at once (threads apart from the batchers)"
    )
    explain_queue: int = Field(
        default=4, ge=0, description="explain requests waiting beyond those running before 503"
    )
    batch_max_size: int = Field(default=64, ge=1)
    batch_max_wait_ms: float = Field(default=0.0, ge=0, description="extra wait for co-travellers")
    batch_max_queue: int = Field(default=20_000, ge=1, description="items queued per model before 503")
    torch_threads: int = Field(default=0, ge=0, description="0 = one per available core")
    malloc_arenas: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas per server process (fastai-serve serve); 0 = glibc's 8 per core",
    )
    runtime: RuntimeSetting = Field(
        default=RuntimeSetting.AUTO, description="auto = ONNX Runtime when it matches torch, else torch"
    )
    precision: Precision = Field(
        default=Precision.FP32, description="fp16 = a CUDA model's torch forward under float16 autocast"
    )
    onnx_cache_dir: Path | None = Field(
        default=Path(".cache/onnx"), description="ONNX exports by model sha256; unset = export at every load"
    )

    # Ray Serve (`fastai-serve serve --ray`, deploy/ray/serve_config.yaml): see service/rayserve.
    ray_address: str | None = Field(default=None, description="Ray cluster to serve on (auto = local)")
    ray_replicas: int = Field(default=1, ge=1, description="replicas per model unless model.json says")
    ray_ingress_replicas: int = Field(default=1, ge=1, description="replicas of the HTTP ingress")
    ray_num_cpus: float | None = Field(
        default=None,
        gt=0,
        description="CPUs per replica; unset: `serve --ray` takes the largest share, up to 1, with which "
        "every replica fits the cluster's free CPUs (a Serve config's build: 1)",
    )
    ray_front: str = Field(
        default="local",
        pattern="^(local|proxy)$",
        description="`serve --ray`: local = this process serves HTTP and sends batches to the model "
        "deployments (one Ray hop); proxy = Serve's proxy and an ingress deployment on the cluster",
    )
    ray_num_gpus: float | None = Field(default=None, ge=0, description="unset: 1 when device is cuda")
    ray_app_name: str = "fastai-serve"
    ray_proxy_location: str = Field(
        default="EveryNode", pattern="^(EveryNode|HeadOnly)$", description="where Serve runs HTTP proxies"
    )

    share_timeout_s: float = Field(default=1.0, gt=0, description="deadline for asking the ngrok sidecar")
    share_cache_s: float = Field(default=5.0, ge=0, description="how long /api/v1/share reuses an answer")
    ngrok_api_url: str = "http://ngrok:4040/api/tunnels"
    ngrok_policy_file: Path | None = Field(
        default=None,
        description="the traffic policy the ngrok sidecar runs with (read for /api/v1/share's `protected`)",
    )
    rescan_s: float = Field(
        default=0.0,
        ge=0,
        description="every this many seconds, load models moved into the store (or changed, or removed); "
        "0 = only on POST /api/v1/models/reload",
    )
    frontend_dir: Path | None = Field(
        default=Path("frontend"), description="static frontend served at /; unset or missing = /docs"
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        from service.device import parse_device_setting

        parse_device_setting(value)
        return value

    @field_validator(
        "api_key",
        "metrics_api_key",
        "rate_limit",
        "frontend_dir",
        "onnx_cache_dir",
        "ray_address",
        "ray_num_cpus",
        "ray_num_gpus",
        "ngrok_policy_file",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", "predict_api_keys", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Accept the common "a,b" form besides JSON lists, which is what people write in .env files.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        from service.api.access import parse_rate_limit

        if value is not None:
            parse_rate_limit(value)
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            if entry != "*":
                ipaddress.ip_network(entry, strict=False)
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_archive_bytes(self) -> int:
        return int(self.max_archive_mb * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
