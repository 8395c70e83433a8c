"""Offline checks of deploy/k8s/kserve-inferenceservice.yaml: the fields KServe needs to run our image as
an Open Inference Protocol (v2) predictor over a store on a PVC. No cluster (and no kubernetes-validate):
the YAML is parsed and the fields are checked against what the server itself does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from service.api.app import create_app
from service.settings import Settings
from tests.helpers import make_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "kserve-inferenceservice.yaml"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    """The first document of each kind (the REST InferenceService; `grpc_service` is the other)."""
    found: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if doc:
            found.setdefault(doc["kind"], doc)
    return found


@pytest.fixture(scope="module")
def grpc_service() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "InferenceService"]
    [service] = [d for d in docs if d["spec"]["predictor"]["model"]["protocolVersion"] == "grpc-v2"]
    return service


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_an_inference_service_with_a_v2_predictor_from_a_pvc(documents: dict[str, dict[str, Any]]) -> None:
    service = documents["InferenceService"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["name"]
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"].startswith("pvc://")
    runtime = documents["ServingRuntime"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]


def test_the_runtime_runs_our_image_where_kserve_expects_it(documents: dict[str, dict[str, Any]]) -> None:
    runtime = documents["ServingRuntime"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert "v2" in runtime["spec"]["protocolVersions"]
    [container] = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe routes to
    assert container["image"].startswith("fastai-serve")
    env = _env(container)
    port = int(env["FASTAI_SERVE_PORT"])
    assert port == 8080 == container["ports"][0]["containerPort"]  # KServe's predictor port
    assert env["FASTAI_SERVE_MODEL_STORE"] == "/mnt/models"  # where KServe mounts storageUri
    assert set(env) <= {f"FASTAI_SERVE_{name.upper()}" for name in Settings.model_fields}


def test_the_probes_are_served_v2_paths(documents: dict[str, dict[str, Any]]) -> None:
    [container] = documents["ServingRuntime"]["spec"]["containers"]
    served = create_app(make_settings(Path("unused"))).openapi()["paths"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in served
        assert container[probe]["httpGet"]["port"] == 8080


def test_a_grpc_inference_service_routes_the_runtimes_grpc_port(
    documents: dict[str, dict[str, Any]], grpc_service: dict[str, Any]
) -> None:
    runtime = documents["ServingRuntime"]
    assert "grpc-v2" in runtime["spec"]["protocolVersions"]
    [container] = runtime["spec"]["containers"]
    port = int(_env(container)["FASTAI_SERVE_GRPC_PORT"])
    assert port == 8081  # KServe's gRPC port
    model = grpc_service["spec"]["predictor"]["model"]
    assert grpc_service["metadata"]["name"] != documents["InferenceService"]["metadata"]["name"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["storageUri"] == documents["InferenceService"]["spec"]["predictor"]["model"]["storageUri"]
    # Knative routes the one port, as HTTP/2 cleartext when it is named h2c.
    assert model["ports"] == [{"name": "h2c", "containerPort": port, "protocol": "TCP"}]
