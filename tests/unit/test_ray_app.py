"""The Ray application as Ray's own tools would build it, and `fastai-serve serve --ray`'s refusals (no
cluster needed: binding deployments only describes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

from ray.serve.schema import ServeDeploySchema  # noqa: E402

from service.cli import main  # noqa: E402
from service.rayserve.app import _replica_options, build  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.helpers import ROOT, make_settings  # noqa: E402

CONFIG = ROOT / "deploy" / "ray" / "serve_config.yaml"


def _store(tmp_path: Path, manifests: dict[str, dict[str, object]]) -> Path:
    for name, manifest in manifests.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.json").write_text(json.dumps(manifest))
    return tmp_path


def test_the_serve_config_builds_one_deployment_per_model(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks the file against
    (app,) = config["applications"]
    assert app["import_path"] == "service.rayserve.app:build"
    assert set(app["args"]) <= set(Settings.model_fields), "args must be settings names"
    store = _store(tmp_path, {"a": {}, "b": {"replicas": {"min": 1, "max": 4}, "num_cpus": 2}})
    ingress = build({**app["args"], "model_store": str(store)})
    assert ingress._bound_deployment.name == "ingress"
    settings, models = ingress._bound_deployment.init_args
    assert settings.model_store == store and settings.ray_replicas == app["args"]["ray_replicas"]
    assert sorted(models) == ["a", "b"]
    a, b = models["a"]._bound_deployment, models["b"]._bound_deployment
    assert (a.name, a.num_replicas) == ("model-a", app["args"]["ray_replicas"])
    assert b.name == "model-b" and b._deployment_config.autoscaling_config.max_replicas == 4
    assert b.ray_actor_options["num_cpus"] == 2


def test_replica_options_follow_settings_then_the_model_json(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ray_replicas=3, ray_num_cpus=0.5)
    plain = _replica_options(settings, {})
    assert plain["num_replicas"] == 3
    assert plain["ray_actor_options"] == {
        "num_cpus": 0.5,
        "num_gpus": 0.0,
        "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
    }
    assert plain["max_ongoing_requests"] == settings.batch_max_size  # so a replica's batcher can fill
    gpu = _replica_options(make_settings(tmp_path, device="cuda"), {"replicas": 1})
    assert gpu["num_replicas"] == 1 and gpu["ray_actor_options"]["num_gpus"] == 1.0
    shared = _replica_options(make_settings(tmp_path, device="cuda", ray_num_gpus=0.5), {})
    assert shared["ray_actor_options"]["num_gpus"] == 0.5
    scaled = _replica_options(settings, {"replicas": {"min": 2, "max": 5}})["autoscaling_config"]
    assert (scaled["min_replicas"], scaled["max_replicas"], scaled["initial_replicas"]) == (2, 5, 3)
    assert "num_replicas" not in _replica_options(settings, {"replicas": {"min": 2, "max": 5}})


def test_ray_and_several_workers_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--ray", "auto", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastai-serve: error: --ray and --workers do not mix") and "\n" not in err
