"""What a model pool that runs models elsewhere (Ray) reports reaches the model detail and readiness: a model
whose replicas could not load it is failed, one with none running yet is loading, and one with a replica
running serves while the others' errors are shown."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.api.app import create_app, local_pool
from service.inference.batching import ModelPool, Replicas
from service.settings import Settings
from service.telemetry import Metrics
from tests.helpers import TABULAR, VISION, make_settings, started_client


class ReportingPool:
    """The single-process pool, reporting the replicas a test sets (what `RayModelPool` reads from Serve)."""

    def __init__(self, inner: ModelPool, replicas: dict[str, Replicas]) -> None:
        self.inner, self.reported = inner, replicas

    async def run(self, *args: object) -> object:
        return await self.inner.run(*args)  # type: ignore[arg-type]

    async def before_reload(self, names: list[str]) -> None:
        await self.inner.before_reload(names)

    async def replicas(self, name: str) -> Replicas | None:
        return self.reported.get(name)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize(
    ("vision", "expected"),
    [
        (
            Replicas(running=0, target=2, errors=("sha256 of model.pkl is ...; refusing to unpickle it",)),
            "failed",
        ),
        (Replicas(running=0, target=2), "loading"),
        (Replicas(running=1, target=2, errors=("CUDA unavailable on node b",)), "ready"),
    ],
)
async def test_replicas_reported_elsewhere_decide_readiness_and_show_in_the_detail(
    trained_store: Path, vision: Replicas, expected: str
) -> None:
    reported = {
        VISION: vision,
        TABULAR: Replicas(running=2, target=2, runtime="onnx", runtime_note="on replicas"),
    }

    def pool(settings: Settings, metrics: Metrics) -> ModelPool:
        return ReportingPool(local_pool(settings, metrics), reported)  # type: ignore[return-value]

    async for client in started_client(create_app(make_settings(trained_store), pool=pool)):
        ready = (await client.get("/health/ready")).json()
        assert ready["models"] == {TABULAR: "ready", VISION: expected}
        assert ready["status"] == "ready"  # the tabular model serves either way
        detail = (await client.get(f"/api/v1/models/{VISION}")).json()
        assert detail["replicas"] == {"running": vision.running, "target": 2, "errors": list(vision.errors)}
        tabular = (await client.get(f"/api/v1/models/{TABULAR}")).json()
        assert (tabular["runtime"], tabular["runtime_note"]) == ("onnx", "on replicas")


async def test_no_replica_running_anywhere_is_not_ready(trained_store: Path) -> None:
    nothing = {name: Replicas(running=0, target=1) for name in (TABULAR, VISION)}

    def pool(settings: Settings, metrics: Metrics) -> ModelPool:
        return ReportingPool(local_pool(settings, metrics), nothing)  # type: ignore[return-value]

    async for client in started_client(create_app(make_settings(trained_store), pool=pool)):
        answer: httpx.Response = await client.get("/health/ready")
        assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
