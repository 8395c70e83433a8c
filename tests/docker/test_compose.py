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
def ray_head(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["ray-head"]
    return service


@pytest.fixture(scope="module")
def ray_worker(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["ray-worker"]
    return service


@pytest.fixture(scope="module")
def ngrok(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["ngrok"]
    return service


def default(value: str) -> str:
    """What `${VAR:-default}` interpolates to when VAR is unset (plain strings pass through)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"api", "ngrok", "ray-head", "ray-worker"}
    assert "profiles" not in compose["services"]["api"]  # started by a plain `docker compose up`
    assert compose["services"]["ngrok"]["profiles"] == ["public"]
    assert compose["services"]["ray-head"]["profiles"] == ["ray"]
    assert compose["services"]["ray-worker"]["profiles"] == ["ray"]


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


def shell_words(service: dict[str, Any]) -> list[str]:
    """The `bash -c` script of a service's command, split into words (`&&` and `;` as their own)."""
    assert service["command"][:2] == ["bash", "-c"]
    return default(service["command"][2]).replace(";", " ; ").split()


def after(words: list[str], program: list[str]) -> list[str]:
    """The arguments of the first `program` call in `words`, up to the next `&&` or `;`."""
    start = next(i for i in range(len(words)) if words[i : i + len(program)] == program) + len(program)
    end = next((i for i in range(start, len(words)) if words[i] in {"&&", ";"}), len(words))
    return words[start:end]


def flag(args: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in `args`."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[i + 1]
    raise AssertionError(f"{name} not in {args}")


def test_ray_nodes_share_one_image_built_with_the_ray_extra(
    api: dict[str, Any], ray_head: dict[str, Any], ray_worker: dict[str, Any]
) -> None:
    assert ray_head["build"] == ray_worker["build"]
    assert ray_head["build"]["args"]["EXTRAS"] == "ray"
    assert ray_head["build"]["dockerfile"] == api["build"]["dockerfile"]
    assert default(ray_head["build"]["args"]["TORCH_INDEX_URL"]) == "https://download.pytorch.org/whl/cpu"
    assert ray_head["image"] == ray_worker["image"]
    # Its own tag: building the ray image must not replace the plain one the api runs.
    assert default(ray_head["image"]) != default(api["image"])
    assert default(ray_head["image"]).partition(":")[0] == default(api["image"]).partition(":")[0]


def test_ray_nodes_read_the_store_at_the_same_path(
    compose: dict[str, Any], api: dict[str, Any], ray_head: dict[str, Any], ray_worker: dict[str, Any]
) -> None:
    fields = {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields}
    for node in (ray_head, ray_worker):
        assert node["volumes"] == api["volumes"]  # the same (named) volume at the same path
        [volume] = node["volumes"]
        source, target = default(volume).split(":")
        assert source in compose["volumes"]
        assert node["environment"]["FASTAI_SERVE_MODEL_STORE"] == target
        assert set(node["environment"]) <= fields
        # Ray's object store must fit in /dev/shm, or Ray moves it to disk.
        words = shell_words(node)
        start = after(words, ["ray", "start"] if node is ray_head else ["exec", "ray", "start"])
        assert int(flag(start, "--object-store-memory")) < int(node["shm_size"].rstrip("gb")) * 2**30


def test_ray_head_starts_the_cluster_then_serves_the_app_through_ray(ray_head: dict[str, Any]) -> None:
    words = shell_words(ray_head)
    ray_start = after(words, ["ray", "start"])
    assert "--head" in ray_start
    assert flag(ray_start, "--port") == "6379"
    assert int(flag(ray_start, "--num-cpus")) >= 1
    assert flag(ray_start, "--dashboard-host") == "0.0.0.0"
    serve = after(words, ["exec", "fastai-serve", "serve"])
    assert flag(serve, "--ray") == "auto"  # the cluster `ray start` made in this container
    assert (flag(serve, "--host"), flag(serve, "--port")) == ("0.0.0.0", "8000")
    assert int(flag(serve, "--replicas")) >= 1


def test_the_cli_takes_the_heads_serve_arguments(ray_head: dict[str, Any]) -> None:
    from service.cli import build_parser

    if not (ROOT / "service" / "rayserve").is_dir():
        pytest.skip("`fastai-serve serve --ray` is not on this branch yet (issue 13, service/rayserve)")
    args = build_parser().parse_args(after(shell_words(ray_head), ["exec", "fastai-serve"]))
    assert args.command == "serve"


def test_ray_worker_joins_the_head_by_service_name(
    ray_head: dict[str, Any], ray_worker: dict[str, Any]
) -> None:
    words = shell_words(ray_worker)
    head_port = flag(after(shell_words(ray_head), ["ray", "start"]), "--port")
    assert flag(after(words, ["ray", "health-check"]), "--address") == f"ray-head:{head_port}"
    ray_start = after(words, ["exec", "ray", "start"])
    assert flag(ray_start, "--address") == f"ray-head:{head_port}"
    assert "--block" in ray_start  # the container lives as long as the node
    assert "--head" not in ray_start
    assert ray_worker["depends_on"] == ["ray-head"]


def test_ray_head_ports_do_not_clash_and_the_dashboard_stays_local(
    api: dict[str, Any], ray_head: dict[str, Any]
) -> None:
    serve, dashboard = (default(port) for port in ray_head["ports"])
    host_port, container_port = serve.split(":")
    assert container_port == "8000"
    assert host_port != default(api["ports"][0]).split(":")[0]  # the api and the ray profile can both run
    assert dashboard == "127.0.0.1:8265:8265"  # the dashboard runs submitted jobs: never on every interface


def test_ray_healthchecks(ray_head: dict[str, Any], ray_worker: dict[str, Any]) -> None:
    assert "http://127.0.0.1:8000/health/ready" in " ".join(ray_head["healthcheck"]["test"])
    assert "/api/local_raylet_healthz" in " ".join(ray_worker["healthcheck"]["test"])
