"""Static checks of docker-compose.yml (and the GPU override): services, profiles, healthcheck, env wiring.

No container engine needed: these run in CI. `docker/smoke-test.sh` runs the same file for real.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from service.share_policy import POLICY_FILE_NAME

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
def share_policy(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["share-policy"]
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
    assert set(compose["services"]) == {"api", "share-policy", "ngrok", "ray-head", "ray-worker"}
    assert "profiles" not in compose["services"]["api"]  # started by a plain `docker compose up`
    assert compose["services"]["share-policy"]["profiles"] == ["public"]
    assert compose["services"]["ngrok"]["profiles"] == ["public"]
    assert compose["services"]["ray-head"]["profiles"] == ["ray"]
    assert compose["services"]["ray-worker"]["profiles"] == ["ray"]


def test_api_builds_from_the_dockerfile(api: dict[str, Any]) -> None:
    build = api["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == ROOT / "docker" / "Dockerfile"
    assert default(build["args"]["TORCH_INDEX_URL"]) == "https://download.pytorch.org/whl/cpu"


def store_volume(service: dict[str, Any]) -> str:
    """The service's model store mount (`source:/app/model_store`)."""
    [volume] = [v for v in service["volumes"] if default(v).split(":")[1] == "/app/model_store"]
    return str(volume)


def mount(service: dict[str, Any], volume: str) -> tuple[str, str]:
    """Where `service` mounts the named `volume`, and how (`rw` or `ro`)."""
    [(target, mode)] = [
        (parts[1], parts[2] if len(parts) > 2 else "rw")
        for parts in (default(v).split(":") for v in service.get("volumes", []))
        if parts[0] == volume
    ]
    return target, mode


def test_api_port_volume_env_restart(compose: dict[str, Any], api: dict[str, Any]) -> None:
    assert [default(p) for p in api["ports"]] == ["8000:8000", "8001:8001"]  # HTTP, gRPC
    source, target = default(store_volume(api)).split(":")
    assert target == "/app/model_store"
    assert source in compose["volumes"]  # a named volume by default (seeded from the image's demo models)
    assert api["env_file"] == [{"path": ".env", "required": False}]
    assert api["restart"] == "unless-stopped"


def test_api_environment_names_real_settings(api: dict[str, Any]) -> None:
    fields = {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(api["environment"]) <= fields
    assert api["environment"]["FASTAI_SERVE_MODEL_STORE"] == "/app/model_store"
    assert api["environment"]["FASTAI_SERVE_PORT"] == "8000"
    assert api["environment"]["FASTAI_SERVE_GRPC_PORT"] == "8001"  # what the second port publishes


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
    # The inspector shows whole requests, credentials included: this host only.
    assert [default(p) for p in ngrok["ports"]] == ["127.0.0.1:4040:4040"]
    assert ngrok["restart"] == "unless-stopped"
    # The api asks the sidecar's local API by its service name, on the port the agent listens on.
    assert api["environment"]["FASTAI_SERVE_NGROK_API_URL"] == "http://ngrok:4040/api/tunnels"


def test_share_policy_renders_before_the_agent(
    compose: dict[str, Any], api: dict[str, Any], share_policy: dict[str, Any]
) -> None:
    from service.cli import build_parser

    # The api's own image (the CLI is in it), run once: a failure must stay a failure, not a restart loop.
    assert (share_policy["build"], share_policy["image"]) == (api["build"], api["image"])
    assert share_policy["restart"] == "no"
    assert share_policy["healthcheck"] == {"disable": True}
    args = build_parser().parse_args(share_policy["command"][1:])
    assert share_policy["command"][0] == "fastai-serve"
    assert args.command == "share-policy"
    target, mode = mount(share_policy, "tunnel_policy")
    assert (args.out_dir, mode) == (target, "rw")
    assert "tunnel_policy" in compose["volumes"]


def test_share_policy_reads_every_ngrok_setting(share_policy: dict[str, Any]) -> None:
    names = {
        "NGROK_OAUTH_PROVIDER",
        "NGROK_OAUTH_ALLOW_EMAILS",
        "NGROK_OAUTH_ALLOW_DOMAINS",
        "NGROK_BASIC_AUTH",
        "NGROK_ALLOW_ANONYMOUS",
    }
    assert set(share_policy["environment"]) == names
    # Empty when unset, so the renderer (not compose) decides, and says why it refuses.
    assert all(share_policy["environment"][name] == f"${{{name}:-}}" for name in names)


def test_the_agent_starts_only_with_the_rendered_policy(
    ngrok: dict[str, Any], share_policy: dict[str, Any]
) -> None:
    out_dir = share_policy["command"][share_policy["command"].index("--out-dir") + 1]
    policy_file = flag(ngrok["command"], "--traffic-policy-file")
    # Always passed: without a rendered file the agent fails to start instead of opening an open tunnel.
    assert policy_file == f"{out_dir}/{POLICY_FILE_NAME}"
    assert mount(ngrok, "tunnel_policy") == (out_dir, "ro")
    assert ngrok["depends_on"] == {
        "api": {"condition": "service_healthy"},
        "share-policy": {"condition": "service_completed_successfully"},
    }


def test_the_api_reads_the_policy_the_agent_runs_with(
    api: dict[str, Any], ngrok: dict[str, Any], share_policy: dict[str, Any]
) -> None:
    out_dir, _ = mount(share_policy, "tunnel_policy")
    assert mount(api, "tunnel_policy") == (out_dir, "ro")
    assert api["environment"]["FASTAI_SERVE_NGROK_POLICY_FILE"] == flag(
        ngrok["command"], "--traffic-policy-file"
    )


def test_x_forwarded_for_is_believed_from_the_sidecar_only(
    compose: dict[str, Any], api: dict[str, Any], ngrok: dict[str, Any]
) -> None:
    sidecar = default(ngrok["networks"]["tunnel"]["ipv4_address"])
    assert default(api["environment"]["FASTAI_SERVE_FORWARDED_ALLOW_IPS"]) == sidecar
    assert (
        ngrok["networks"]["tunnel"]["ipv4_address"] == api["environment"]["FASTAI_SERVE_FORWARDED_ALLOW_IPS"]
    )
    assert set(ngrok["networks"]) == {"tunnel"}
    assert "tunnel" in api["networks"] and "default" in api["networks"]
    # podman-compose: with one network declared, the undeclared `default` would be "missing".
    assert set(compose["networks"]) == {"default", "tunnel"}
    [ipam] = compose["networks"]["tunnel"]["ipam"]["config"]
    subnet = ipaddress.IPv4Network(default(ipam["subnet"]))
    dynamic = ipaddress.IPv4Network(default(ipam["ip_range"]))
    address = ipaddress.IPv4Address(sidecar)
    # The sidecar's address is in the network, but outside the range other containers get theirs from.
    assert address in subnet and dynamic.subnet_of(subnet)
    assert address not in dynamic
    assert address not in {subnet.network_address, subnet.broadcast_address, next(subnet.hosts())}


def test_the_compose_file_names_the_companion_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("FASTAI_SERVE_PREDICT_API_KEYS", "FASTAI_SERVE_RATE_LIMIT", "NGROK_ALLOW_ANONYMOUS"):
        assert name in text


def test_settings_default_matches_the_compose_wiring(api: dict[str, Any]) -> None:
    default_url = Settings.model_fields["ngrok_api_url"].default
    assert api["environment"]["FASTAI_SERVE_NGROK_API_URL"] == default_url


def test_gpu_override_runs_share_policy_on_the_same_image() -> None:
    services = load("docker-compose.gpu.yml")["services"]
    assert services["share-policy"]["image"] == services["api"]["image"]
    assert services["share-policy"]["build"] == services["api"]["build"]


def test_env_example_lists_what_the_public_profile_reads() -> None:
    listed = set(re.findall(r"^(NGROK_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = set(re.findall(r"\$\{(NGROK_[A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert read and read <= listed


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
        assert node["volumes"] == [store_volume(api)]  # the same (named) volume at the same path
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
    # The api (HTTP and gRPC) and the ray profile can both run.
    assert host_port not in [default(p).split(":")[0] for p in api["ports"]]
    assert dashboard == "127.0.0.1:8265:8265"  # the dashboard runs submitted jobs: never on every interface


def test_ray_healthchecks(ray_head: dict[str, Any], ray_worker: dict[str, Any]) -> None:
    assert "http://127.0.0.1:8000/health/ready" in " ".join(ray_head["healthcheck"]["test"])
    assert "/api/local_raylet_healthz" in " ".join(ray_worker["healthcheck"]["test"])
