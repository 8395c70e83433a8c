"""The model pool every front door sends its requests to, with the payload log beside it: after a
request's outputs come back, its items are offered to the log (references only; `payload.PayloadLog`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.inference.batching import ModelPool, Replicas
from service.monitoring.payload import PayloadLog
from service.registry import ModelEntry
from service.telemetry import current_request


class LoggedPool:
    """`inner`'s answers, each request's items offered to `log` (a `ModelPool`)."""

    def __init__(self, inner: ModelPool, log: PayloadLog) -> None:
        self.inner, self.log = inner, log

    async def run(self, entry: ModelEntry, predictor: Any, prepared: Any) -> np.ndarray:
        outputs = await self.inner.run(entry, predictor, prepared)
        context = current_request.get()
        if context is not None and context.log:
            start, context.logged = context.logged, context.logged + int(prepared.n)
            self.log.offer(
                entry=entry,
                predictor=predictor,
                prepared=prepared,
                outputs=outputs,
                context=context,
                start=start,
            )
        return outputs

    async def before_reload(self, names: list[str]) -> None:
        await self.inner.before_reload(names)

    async def replicas(self, name: str) -> Replicas | None:
        return await self.inner.replicas(name)

    async def close(self) -> None:
        await self.inner.close()
