"""Static checks of docker-compose.yml (and the GPU override): services, profiles, healthcheck, env wiring.

No container engine needed: these run in CI. `docker/smoke-test.sh` runs the same file for real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def api(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["api"]
    return service


@pytest.fixture(scope="module")
def ngrok(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["ngrok"]
    return service


def default(value: str) -> str:
    """What `${VAR:-default}` interpolates to when VAR is unset (plain strings pass through)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"api", "ngrok"}
    assert "profiles" not in compose["services"]["api"]  # started by a plain `docker compose up`
    assert compose["services"]["ngrok"]["profiles"] == ["public"]


def test_api_builds_from_the_dockerfile(api: dict[str, Any]) -> None:
    build = api["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == ROOT / "docker" / "Dockerfile"
    assert default(build["args"]["TORCH_INDEX_URL"]) == "https://download.pytorch.org/whl/cpu"


def test_api_port_volume_env_restart(compose: dict[str, Any], api: dict[str, Any]) -> None:
    assert [default(p) for p in api["ports"]] == ["8000:8000"]
    [volume] = api["volumes"]
    source, target = default(volume).split(":")
    assert target == "/app/model_store"
    assert source in compose["volumes"]  # a named volume by default (seeded from the image's demo models)
    assert api["env_file"] == [{"path": ".env", "required": False}]
    assert api["restart"] == "unless-stopped"


def test_api_environment_names_real_settings(api: dict[str, Any]) -> None:
    fields = {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(api["environment"]) <= fields
    assert api["environment"]["FASTAI_SERVE_MODEL_STORE"] == "/app/model_store"
    assert api["environment"]["FASTAI_SERVE_PORT"] == "8000"


def test_api_healthcheck_probes_readiness(api: dict[str, Any]) -> None:
    check = api["healthcheck"]
    assert check["test"][0] == "CMD"
    assert "http://127.0.0.1:8000/health/ready" in " ".join(check["test"])
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def test_ngrok_sidecar(ngrok: dict[str, Any], api: dict[str, Any]) -> None:
    image, _, tag = default(ngrok["image"]).partition(":")
    assert image == "ngrok/ngrok"
    assert tag and tag != "latest"
    assert ngrok["environment"]["NGROK_AUTHTOKEN"] == "${NGROK_AUTHTOKEN:-}"  # `:?` would break plain `up`
    assert ngrok["command"][:2] == ["http", "http://api:8000"]
    assert [default(p) for p in ngrok["ports"]] == ["4040:4040"]
    assert ngrok["depends_on"] == {"api": {"condition": "service_healthy"}}
    # The api asks the sidecar's local API by its service name, on the port the agent listens on.
    assert api["environment"]["FASTAI_SERVE_NGROK_API_URL"] == "http://ngrok:4040/api/tunnels"


def test_settings_default_matches_the_compose_wiring(api: dict[str, Any]) -> None:
    default_url = Settings.model_fields["ngrok_api_url"].default
    assert api["environment"]["FASTAI_SERVE_NGROK_API_URL"] == default_url


def test_gpu_override_reserves_an_nvidia_device() -> None:
    override = load("docker-compose.gpu.yml")["services"]["api"]
    [device] = override["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert override["environment"]["FASTAI_SERVE_DEVICE"] == "cuda"
    assert "whl/cpu" not in default(override["build"]["args"]["TORCH_INDEX_URL"])


def test_env_example_lists_every_setting() -> None:
    listed = set(re.findall(r"^(FASTAI_SERVE_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields} <= listed
