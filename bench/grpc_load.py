"""The gRPC row: one-row tabular requests through `tritonclient.grpc` (its asyncio client, one channel per
client, raw tensors as tritonclient sends them) against the same server's gRPC port."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from bench.cases import Case, TabularCase
from bench.load import Request, step_summary


def grpc_inputs(case: Case, v1: Request) -> list[tuple[str, str, np.ndarray]] | None:
    """(name, datatype, values) of the one-row request `v1` sends, as tritonclient inputs; None for the
    kinds the gRPC row does not time (it times tabular rows)."""
    if not isinstance(case, TabularCase):
        return None
    assert v1.json is not None
    [row] = v1.json["rows"]

    def text(value: Any) -> bytes:
        # As the /v2 row sends it: a category that is an amount goes as its text, "2174".
        return str(int(value) if isinstance(value, float) and value.is_integer() else value).encode()

    return [
        (k, "FP64", np.array([v], dtype=np.float64))
        if k in case.numbers
        else (k, "BYTES", np.array([text(v)], dtype=np.object_))
        for k, v in row.items()
    ]


def drive_grpc(
    address: str, model: str, inputs: list[tuple[str, str, np.ndarray]], clients: int, seconds: float
) -> dict[str, float]:
    """`clients` tritonclient.grpc clients calling ModelInfer back to back for `seconds`."""
    return asyncio.run(_load(address, model, inputs, clients, seconds))


async def _load(
    address: str, model: str, inputs: list[tuple[str, str, np.ndarray]], clients: int, seconds: float
) -> dict[str, float]:
    import tritonclient.grpc.aio as grpcclient

    def tensors() -> list[Any]:
        made = []
        for name, datatype, values in inputs:
            tensor = grpcclient.InferInput(name, list(values.shape), datatype)
            tensor.set_data_from_numpy(values)
            made.append(tensor)
        return made

    latencies: list[float] = []
    errors = 0
    opened = [grpcclient.InferenceServerClient(url=address) for _ in range(clients)]
    try:
        await opened[0].infer(model, tensors())  # the channel and the model's first call, not timed
        deadline = time.perf_counter() + seconds

        async def worker(client: Any) -> None:
            nonlocal errors
            request = tensors()
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await client.infer(model, request)
                except Exception:  # the error count is the row's; a refusal must not end the step
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in opened))
        elapsed = time.perf_counter() - began
    finally:
        for client in opened:
            await client.close()
    return step_summary(latencies, elapsed, errors)
