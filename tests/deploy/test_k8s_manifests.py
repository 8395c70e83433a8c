"""Offline checks of deploy/k8s: every built-in object against Kubernetes' own schemas (kubernetes-validate,
strict: an unknown or misspelt field fails, as `kubectl apply` rejects it), the RayService against KubeRay's
CRD schema (tests/fixtures/kuberay/) with its pod templates against Kubernetes' pod schema, and the wiring
against the code: probes on routes the app serves, the image's port and user, settings that exist."""

from __future__ import annotations

import ast
import copy
import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

from service.api.app import create_app
from service.settings import Settings
from tests.helpers import make_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
KUBERAY_SCHEMA = ROOT / "tests" / "fixtures" / "kuberay" / "rayservice_v1_schema.yaml"
SERVE_CONFIG = ROOT / "deploy" / "ray" / "serve_config.yaml"
RAY_APP = ROOT / "service" / "rayserve" / "app.py"
# The Kubernetes release whose schemas every built-in object is checked against (kubernetes-validate
# ships them; nothing is downloaded).
KUBERNETES = "1.33"
# Objects of operators, not of Kubernetes: the RayService is checked here against KubeRay's schema, the
# KServe objects in tests/docker/test_kserve_manifest.py. Any other kind must validate as built-in.
CUSTOM_KINDS = {
    ("ray.io/v1", "RayService"),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
}
SETTINGS = {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields}
CLAIM = "fastai-serve-model-store"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


DOCUMENTS = _documents()
BUILT_IN = [(file, doc) for file, doc in DOCUMENTS if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS]


def find(kind: str, name: str = "fastai-serve") -> dict[str, Any]:
    [doc] = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return copy.deepcopy(doc)


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(kind)["spec"]["template"]["spec"]
    return spec


def ray_templates() -> dict[str, dict[str, Any]]:
    """The RayService's pod templates by group: "head" and each worker group's name."""
    cluster = find("RayService")["spec"]["rayClusterConfig"]
    groups = {"head": cluster["headGroupSpec"]["template"]}
    groups.update({group["groupName"]: group["template"] for group in cluster["workerGroupSpecs"]})
    return groups


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("500m", "2", "4Gi") as a number, for comparisons."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match[1]) * units.get(match[2], 1.0)


def dockerfile_user() -> tuple[int, int]:
    [(uid, gid)] = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.M)
    return int(uid), int(gid)


def dockerfile_ports() -> list[int]:
    [ports] = re.findall(r"^EXPOSE ([\d ]+)$", DOCKERFILE.read_text(), re.M)
    return [int(p) for p in ports.split()]


def dockerfile_port() -> int:
    """The image's HTTP port (the first it exposes; the second is gRPC's)."""
    return dockerfile_ports()[0]


def compose_image(service: str) -> str:
    """The image a docker-compose.yml service gets when no variable is set (`${VAR:-default}` → default)."""
    image: str = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]["image"]
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", image)


def served_paths() -> set[str]:
    paths: dict[str, Any] = create_app(make_settings(Path("unused"))).openapi()["paths"]
    return set(paths)


def strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it to `kubectl apply` (strict field validation): an object
    with `properties` takes no field it does not name."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def kuberay_validator() -> jsonschema.Draft7Validator:
    schema = strict(yaml.safe_load(KUBERAY_SCHEMA.read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# --- every object is valid -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc", [doc for _, doc in BUILT_IN], ids=[f"{file}:{doc['kind']}" for file, doc in BUILT_IN]
)
def test_built_in_objects_are_valid_kubernetes(doc: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(doc, KUBERNETES, strict=True) == KUBERNETES


def test_the_manifests_hold_what_the_docs_promise() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCUMENTS}
    assert {
        ("PersistentVolumeClaim", CLAIM),
        ("Deployment", "fastai-serve"),
        ("Service", "fastai-serve"),
        ("HorizontalPodAutoscaler", "fastai-serve"),
        ("PodDisruptionBudget", "fastai-serve"),
        ("RayService", "fastai-serve"),
    } <= kinds
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") in {
        (d["apiVersion"], d["kind"]) for _, d in BUILT_IN
    }
    assert ("policy/v1", "PodDisruptionBudget") in {(d["apiVersion"], d["kind"]) for _, d in BUILT_IN}


def test_strict_validation_rejects_what_kubectl_would(kuberay_validator: jsonschema.Draft7Validator) -> None:
    deployment = find("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container["readinesProbe"] = container.pop("readinessProbe")  # a typo kubectl refuses
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    service = find("RayService")
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    del worker["groupName"]  # required by the CRD
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        kuberay_validator.validate(service)
    service = find("RayService")
    service["spec"]["serveConfig"] = service["spec"].pop("serveConfigV2")  # KubeRay's old field
    with pytest.raises(jsonschema.ValidationError, match="serveConfig"):
        kuberay_validator.validate(service)


# --- the plain Deployment ----------------------------------------------------------------------------------


def test_probes_are_routes_the_app_serves_on_its_port() -> None:
    [container] = pod_spec("Deployment")["containers"]
    served = served_paths()
    probes = {
        kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    # Liveness must not wait for models (a slow load would get the pod killed); readiness does.
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert probe["path"] in served
        assert port_number(container, probe["port"]) == int(env(container)["FASTAI_SERVE_PORT"])
    assert int(env(container)["FASTAI_SERVE_PORT"]) == dockerfile_port()


def test_probe_timing_leaves_time_for_models_to_load() -> None:
    [container] = pod_spec("Deployment")["containers"]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert container["readinessProbe"]["periodSeconds"] <= 10  # traffic soon after the models are ready
    assert container["livenessProbe"]["failureThreshold"] >= 3


def test_the_deployment_runs_the_image_as_its_user_locked_down() -> None:
    spec = pod_spec("Deployment")
    [container] = spec["containers"]
    uid, gid = dockerfile_user()
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["image"] == compose_image("api")  # the plain image, as compose tags it
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "command" not in container and "args" not in container  # the image's CMD: fastai-serve serve


def test_resources_have_requests_within_limits() -> None:
    [container] = pod_spec("Deployment")["containers"]
    resources = container["resources"]
    for name in ("cpu", "memory"):
        assert quantity(resources["requests"][name]) <= quantity(resources["limits"][name])
    assert quantity(env(container)["FASTAI_SERVE_TORCH_THREADS"]) <= quantity(resources["limits"]["cpu"])


def test_what_the_app_writes_lands_on_volumes_and_the_store_is_read_only() -> None:
    spec = pod_spec("Deployment")
    [container] = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    def volume_at(path: str) -> dict[str, Any]:
        [mount] = [m for root, m in mounts.items() if path == root or path.startswith(root.rstrip("/") + "/")]
        return volumes[mount["name"]]

    # The root filesystem is read-only: the ONNX cache and temporary files need emptyDirs.
    assert "emptyDir" in volume_at(env(container)["FASTAI_SERVE_ONNX_CACHE_DIR"])
    assert "emptyDir" in volume_at("/tmp")
    store = env(container)["FASTAI_SERVE_MODEL_STORE"]
    assert volume_at(store)["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}
    assert mounts[store]["readOnly"] is True


def test_env_names_are_real_settings() -> None:
    containers = pod_spec("Deployment")["containers"]
    containers += [c for t in ray_templates().values() for c in t["spec"]["containers"]]
    for container in containers:
        assert set(env(container)) <= SETTINGS, container["name"]


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    deployment = find("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    [container] = pod_spec("Deployment")["containers"]

    service = find("Service")["spec"]
    assert service["selector"] == selector
    http, grpc = service["ports"]
    assert port_number(container, http["targetPort"]) == dockerfile_port()
    # gRPC: the container's port is the one the pod's GRPC_PORT listens on, and the image exposes it.
    assert grpc["name"] == "grpc" and grpc["appProtocol"] == "kubernetes.io/h2c"
    assert port_number(container, grpc["targetPort"]) == int(env(container)["FASTAI_SERVE_GRPC_PORT"])
    assert int(env(container)["FASTAI_SERVE_GRPC_PORT"]) == dockerfile_ports()[1]

    hpa = find("HorizontalPodAutoscaler")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "fastai-serve")
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in container["resources"]["requests"]  # utilisation is measured against the request
    assert "replicas" not in deployment["spec"]  # the HPA owns it

    pdb = find("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    assert pdb["minAvailable"] < hpa["minReplicas"]  # a drain can always move one pod


def test_one_model_store_claim_for_every_front_door() -> None:
    claim = find("PersistentVolumeClaim", CLAIM)
    assert set(claim["spec"]["accessModes"]) <= {"ReadWriteMany", "ReadOnlyMany"}  # pods on many nodes
    templates = [find("Deployment")["spec"]["template"], *ray_templates().values()]
    for template in templates:
        [volume] = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == CLAIM
        [container] = template["spec"]["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        # KServe reads the same claim: pvc://<claim>/<folder> is the folder these pods mount.
        kserve = find("InferenceService")["spec"]["predictor"]["model"]["storageUri"]
        assert kserve == f"pvc://{CLAIM}/{mount['subPath']}"


# --- the RayService ----------------------------------------------------------------------------------------


def test_the_rayservice_matches_kuberays_schema(kuberay_validator: jsonschema.Draft7Validator) -> None:
    service = find("RayService")
    assert service["apiVersion"] == "ray.io/v1"
    kuberay_validator.validate(service)
    # What the vendored subset leaves out (PROVENANCE.md) must stay unused, or it goes unchecked.
    cluster = service["spec"]["rayClusterConfig"]
    assert "serveService" not in service["spec"]
    assert "autoscalerOptions" not in cluster
    assert "headService" not in cluster["headGroupSpec"]


@pytest.mark.parametrize("group", sorted(ray_templates()))
def test_ray_pod_templates_are_valid_kubernetes_pods(group: str) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": f"fastai-serve-{group}"},
        "template": ray_templates()[group],
    }
    assert kubernetes_validate.validate(template, KUBERNETES, strict=True) == KUBERNETES


def test_every_ray_pod_runs_the_ray_image_with_the_store_at_one_path() -> None:
    uid, gid = dockerfile_user()
    stores = set()
    for group, template in ray_templates().items():
        spec = template["spec"]
        [container] = spec["containers"]
        assert container["image"] == compose_image("ray-head"), group  # the Dockerfile with EXTRAS=ray
        # No command: KubeRay writes `ray start` itself; a command would run before it.
        assert "command" not in container and "args" not in container, group
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        [claim] = [v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == claim]
        assert mount["readOnly"] is True
        assert env(container)["FASTAI_SERVE_MODEL_STORE"] == mount["mountPath"], group
        stores.add((mount["mountPath"], mount.get("subPath")))
    assert len(stores) == 1  # a replica may land on any node: the same store at the same path everywhere


def ray_source_has(path: str, folder: str) -> bool:
    """Whether the installed Ray's own code under `folder` names this HTTP path (as a string literal)."""
    spec = importlib.util.find_spec("ray")
    if spec is None or spec.origin is None:
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    literal = f'"{path}"'
    return any(literal in py.read_text() for py in (Path(spec.origin).parent / folder).rglob("*.py"))


def test_ray_probes_are_explicit_http_checks_ray_answers() -> None:
    templates = ray_templates()
    for group, template in templates.items():
        [container] = template["spec"]["containers"]
        for kind in ("readinessProbe", "livenessProbe"):
            # Set, so KubeRay injects none of its own (they run wget, which the image lacks).
            probe = container[kind]["httpGet"]
            assert probe["path"].startswith(("/api/", "/-/")), (group, kind)
            folder = "serve" if probe["path"].startswith("/-/") else "dashboard"
            assert ray_source_has(probe["path"], folder), probe["path"]
    [head] = templates["head"]["spec"]["containers"]
    assert port_number(head, head["readinessProbe"]["httpGet"]["port"]) == 8265  # the dashboard: GCS health
    from ray._private.ray_constants import DEFAULT_DASHBOARD_AGENT_LISTEN_PORT

    for group in set(templates) - {"head"}:
        [worker] = templates[group]["spec"]["containers"]
        assert worker["livenessProbe"]["httpGet"]["port"] == DEFAULT_DASHBOARD_AGENT_LISTEN_PORT
        assert worker["readinessProbe"]["httpGet"]["path"] == "/-/healthz"  # its Serve proxy


def serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(find("RayService")["spec"]["serveConfigV2"])
    return config


def test_serve_config_deploys_our_builder_on_the_serve_port() -> None:
    config = serve_config()
    [app] = config["applications"]
    assert app["import_path"] == "service.rayserve.app:build"
    assert app["route_prefix"] == "/"
    port = config["http_options"]["port"]
    # The builder's args override the pods' FASTAI_SERVE_* environment: they must name settings, and
    # agree with the pods on where the store is mounted and which device they have.
    args = app.get("args", {})
    assert set(args) <= set(Settings.model_fields)
    for group, template in ray_templates().items():
        [container] = template["spec"]["containers"]
        assert port_number(container, "serve") == port, group  # KubeRay's serve Service targets "serve"
        store = env(container)["FASTAI_SERVE_MODEL_STORE"]
        assert args.get("model_store", store) == store, group
        assert (
            args.get("device", env(container)["FASTAI_SERVE_DEVICE"]) == env(container)["FASTAI_SERVE_DEVICE"]
        )


def test_serve_config_is_deploy_ray_serve_config_yaml() -> None:
    if not SERVE_CONFIG.is_file():
        pytest.skip("deploy/ray/serve_config.yaml is not on this branch yet (issue 13, the Ray application)")
    assert serve_config() == yaml.safe_load(SERVE_CONFIG.read_text())


def test_the_builder_exists_in_the_package() -> None:
    if not RAY_APP.is_file():
        pytest.skip("service/rayserve/ is not on this branch yet (issue 13, the Ray application)")
    module, _, function = serve_config()["applications"][0]["import_path"].partition(":")
    assert ROOT / (module.replace(".", "/") + ".py") == RAY_APP
    tree = ast.parse(RAY_APP.read_text())
    assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_ray_version_is_the_one_the_image_installs() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    [ray] = [Requirement(line) for line in extra if Requirement(line).name == "ray"]
    assert "serve" in ray.extras
    version = find("RayService")["spec"]["rayClusterConfig"]["rayVersion"]
    assert ray.specifier.contains(version), (version, str(ray.specifier))


def test_ray_groups_fit_their_replicas() -> None:
    cluster = find("RayService")["spec"]["rayClusterConfig"]
    # The head keeps Ray's control plane; replicas go to workers.
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        [container] = group["template"]["spec"]["containers"]
        resources = container["resources"]
        # Ray takes its CPUs and memory from the limits: requests equal to them keep that true.
        assert resources["requests"] == resources["limits"]
        assert quantity(resources["limits"]["cpu"]) >= 1
