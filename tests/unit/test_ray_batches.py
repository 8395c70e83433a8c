"""The Ray front's batcher (`RemoteBatcher`) against a stand-in for a model deployment's handle: requests
that arrive together go in one call, grouped by model version; each gets its own answer; a call that fails
is a 503 for its own batch only; no more batches are out at once than allowed. (The real handle, replicas
and faults run in tests/ray, on a 2-node cluster.)"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

from service.errors import ModelNotReady, Overloaded, ServiceError  # noqa: E402
from service.rayserve.pool import RemoteBatcher, _Version  # noqa: E402
from service.rayserve.replica import Forwarded  # noqa: E402
from tests.unit.test_batching import Items  # noqa: E402


@dataclass
class Deployment:
    """`handle.forward_batch.remote(payloads, sha256)` as a replica answers it: each request's ids back as
    its "probabilities", an id < 0 refused alone; `gate` holds calls, `error` fails them."""

    calls: list[tuple[list[Items], str | None]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    error: Exception | None = None

    @property
    def forward_batch(self) -> Deployment:
        return self

    async def remote(self, payloads: list[Items], sha256: str | None) -> list[Forwarded]:
        self.calls.append((payloads, sha256))
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return [self._answer(p) for p in payloads]

    @staticmethod
    def _answer(items: Items) -> Forwarded:
        if min(items.ids) < 0:
            return Forwarded("replica r", error=asdict(ModelNotReady("bad item")))
        return Forwarded("replica r", probs=np.array([[i] for i in items.ids]))


def _batcher(deployment: Deployment, *, in_flight: int = 2, max_queue: int = 1000) -> RemoteBatcher:
    return RemoteBatcher(
        handle=deployment,  # type: ignore[arg-type]  # the handle's one method the batcher calls
        in_flight=in_flight,
        name="m",
        max_batch=64,
        max_wait_ms=0.0,
        max_queue=max_queue,
        metrics=None,
    )


async def _answers(batcher: RemoteBatcher, *requests: tuple[Items, str]) -> list[Any]:
    answers: list[Any] = await asyncio.gather(
        *(batcher.submit(items, _Version(sha)) for items, sha in requests), return_exceptions=True
    )
    return answers


async def test_requests_that_arrive_together_go_in_one_call_and_get_their_own_answers() -> None:
    deployment = Deployment()
    batcher = _batcher(deployment)
    try:
        answers = await _answers(batcher, *[(Items([float(i), i + 0.5]), "v1") for i in range(5)])
    finally:
        await batcher.close()
    assert len(deployment.calls) == 1 and len(deployment.calls[0][0]) == 5
    for i, answer in enumerate(answers):
        assert answer.served_by == "replica r"
        assert answer.result().ravel().tolist() == [i, i + 0.5]


async def test_a_batch_is_split_by_model_version_and_a_refusal_stays_with_its_request() -> None:
    deployment = Deployment()
    batcher = _batcher(deployment)
    try:
        answers = await _answers(
            batcher, (Items([1.0]), "old"), (Items([-1.0]), "new"), (Items([2.0]), "new")
        )
    finally:
        await batcher.close()
    assert [(len(p), sha) for p, sha in deployment.calls] == [(1, "old"), (2, "new")]
    assert answers[0].result().ravel().tolist() == [1.0]
    with pytest.raises(ServiceError, match="bad item"):
        answers[1].result()
    assert answers[2].result().ravel().tolist() == [2.0]


async def test_a_call_that_fails_is_a_503_for_its_own_batch_only() -> None:
    deployment = Deployment(error=RuntimeError("channel closed"))
    batcher = _batcher(deployment)
    try:
        lost = await _answers(batcher, (Items([1.0]), "v1"), (Items([2.0]), "v1"))
        deployment.error = None
        (fine,) = await _answers(batcher, (Items([3.0]), "v1"))
    finally:
        await batcher.close()
    for answer in lost:
        with pytest.raises(ServiceError, match="was lost \\(RuntimeError\\); retry it") as caught:
            answer.result()
        assert caught.value.status == 503
    assert fine.result().ravel().tolist() == [3.0]


async def test_no_more_batches_are_out_than_allowed() -> None:
    gate = asyncio.Event()
    deployment = Deployment(gate=gate)
    batcher = _batcher(deployment, in_flight=1)
    try:
        first = asyncio.ensure_future(batcher.submit(Items([1.0]), _Version("v1")))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(Items([2.0]), _Version("v1")))
        await asyncio.sleep(0.05)
        assert len(deployment.calls) == 1  # the second waits for the first call's slot
        gate.set()
        answers: list[Any] = await asyncio.gather(first, second)
    finally:
        await batcher.close()
    assert len(deployment.calls) == 2
    assert [a.result().ravel().tolist() for a in answers] == [[1.0], [2.0]]


async def test_the_queue_limit_still_refuses_with_overloaded() -> None:
    gate = asyncio.Event()
    deployment = Deployment(gate=gate)
    batcher = _batcher(deployment, in_flight=1, max_queue=2)
    try:
        held = asyncio.ensure_future(batcher.submit(Items([1.0, 2.0]), _Version("v1")))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await batcher.submit(Items([3.0]), _Version("v1"))
        gate.set()
        await held
    finally:
        await batcher.close()
