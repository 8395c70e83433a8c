"""Which torch device the models run on: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""

from __future__ import annotations

import re

import torch

from service.errors import MSG_DEVICE_SETTING, MSG_NO_CUDA, MSG_NO_SUCH_CUDA, DeviceUnavailable

__all__ = ["DeviceUnavailable", "device_label", "parse_device_setting", "resolve_device"]

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def parse_device_setting(value: str) -> tuple[str, int | None]:
    """Split a device setting into kind and index, rejecting anything else."""
    match = _DEVICE_RE.match(value.strip().lower())
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ValueError(MSG_DEVICE_SETTING.format(value=value))
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
        raise DeviceUnavailable(MSG_NO_CUDA.format(value=value))
    index = index or 0
    if index >= cuda_count:
        raise DeviceUnavailable(MSG_NO_SUCH_CUDA.format(value=value, count=cuda_count))
    return torch.device(f"cuda:{index}")


def device_label(device: torch.device) -> str:
    """The device as the API reports it: ``cpu`` or ``cuda:N``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type
