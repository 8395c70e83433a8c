"""Device selection: `auto` prefers CUDA, explicit CUDA requests fail clearly without it."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from service.device import DeviceUnavailable, device_label, parse_device_setting, resolve_device
from service.settings import Settings


@pytest.mark.parametrize(
    ("setting", "available", "count", "expected"),
    [
        ("auto", False, 0, "cpu"),
        ("auto", True, 2, "cuda:0"),
        ("cpu", True, 2, "cpu"),
        ("cuda", True, 1, "cuda:0"),
        ("cuda:1", True, 2, "cuda:1"),
        ("CUDA:0", True, 1, "cuda:0"),
    ],
)
def test_resolve(setting: str, available: bool, count: int, expected: str) -> None:
    assert device_label(resolve_device(setting, cuda_available=available, cuda_count=count)) == expected


@pytest.mark.parametrize(("setting", "count"), [("cuda", 0), ("cuda:2", 2)])
def test_unavailable_cuda_is_an_error(setting: str, count: int) -> None:
    with pytest.raises(DeviceUnavailable):
        resolve_device(setting, cuda_available=count > 0, cuda_count=count)


@pytest.mark.parametrize("setting", ["gpu", "cpu:1", "auto:0", "cuda:x", ""])
def test_malformed_settings_are_rejected(setting: str) -> None:
    with pytest.raises(ValueError):
        parse_device_setting(setting)
    with pytest.raises(ValidationError):
        Settings(device=setting, _env_file=None)  # type: ignore[call-arg]


def test_default_follows_this_machine() -> None:
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert device_label(resolve_device("auto")) == expected


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTAI_SERVE_MAX_ROWS", "7")
    monkeypatch.setenv("FASTAI_SERVE_CORS_ORIGINS", "http://a.example, http://b.example")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.max_rows == 7
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
