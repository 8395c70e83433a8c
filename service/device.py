"""Which torch device the models run on: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""

from __future__ import annotations

import re

import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceUnavailable(RuntimeError):
    """The configured device does not exist on this machine."""


def parse_device_setting(value: str) -> tuple[str, int | None]:
    """Split a device setting into kind and index, rejecting anything else."""
    match = _DEVICE_RE.match(value.strip().lower())
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    index = match.group(2)
    return match.group(1), None if index is None else int(index)


def resolve_device(
    value: str, *, cuda_available: bool | None = None, cuda_count: int | None = None
) -> torch.device:
    """Turn a device setting into a concrete device; `auto` prefers CUDA when there is one."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if cuda_available else 0
    kind, index = parse_device_setting(value)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "auto":
        return torch.device("cuda:0") if cuda_available and cuda_count > 0 else torch.device("cpu")
    if not cuda_available or cuda_count == 0:
        raise DeviceUnavailable(f"device {value!r} was requested but CUDA is not available on this machine")
    index = index or 0
    if index >= cuda_count:
        raise DeviceUnavailable(f"device {value!r} was requested but only {cuda_count} CUDA device(s) exist")
    return torch.device(f"cuda:{index}")


def device_label(device: torch.device) -> str:
    """The device as the API reports it: ``cpu`` or ``cuda:N``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type
