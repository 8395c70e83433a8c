"""CPUs per replica sized from the cluster's free CPUs, node by node, and the console's words when a
deployment cannot be placed (no cluster needed: the numbers are the cluster's, passed in)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

from service.rayserve.app import application, sized_replicas, waiting_message  # noqa: E402
from service.rayserve.placement import MIN_CPUS, Fit, fits, fitted  # noqa: E402
from tests.helpers import make_settings  # noqa: E402
from tests.unit.test_ray_app import _store  # noqa: E402


def test_a_replica_fits_one_node_not_the_sum_of_two() -> None:
    # The case: 0.4 CPU free in all, as 0.2 on each node, holds no replica of 0.3 (or 0.4).
    assert not fits(0.3, 1, (0.2, 0.2))
    assert fits(0.2, 2, (0.2, 0.2)) and not fits(0.2, 3, (0.2, 0.2))


@pytest.mark.parametrize(
    ("replicas", "free", "cpus"),
    [
        (5, (2.0,), 0.4),  # 2 models x 2 replicas + the ingress on a 2-CPU machine
        (4, (1.0, 1.0), 0.5),  # the 2-node test cluster, local front
        (3, (1.0, 1.0), 0.5),  # 0.65 would fit one per node: 2 < 3
        (1, (8.0,), 1.0),  # never more than one CPU unless configured
        (2, (0.2, 0.2), 0.2),
    ],
)
def test_the_fitted_share_is_the_largest_with_which_all_fit(
    replicas: int, free: tuple[float, ...], cpus: float
) -> None:
    assert fitted(replicas, free) == pytest.approx(cpus)
    assert fits(cpus, replicas, free)


def test_nothing_fits_a_full_cluster_and_the_message_gives_the_numbers_and_the_setting() -> None:
    assert fitted(4, (0.0, 0.02)) == MIN_CPUS
    fit = Fit(cpus=1.0, replicas=5, free=(1.0, 1.0))
    assert not fit.placeable
    problem = fit.problem()
    assert "5 replica(s) of 1 CPU each (5 CPUs)" in problem
    assert "2 free (1, 1 on its 2 node(s))" in problem
    assert "FASTAI_SERVE_RAY_NUM_CPUS" in problem and "--replicas" in problem


def test_sized_replicas_count_the_shared_request_only(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": {}, "b": {"replicas": {"min": 1, "max": 4}}, "c": {"num_cpus": 2}})
    settings = make_settings(store, ray_replicas=2, ray_ingress_replicas=1)
    # a: 2, b: its initial 2 (between min and max), c asks its own CPUs; the proxy front adds the ingress.
    assert sized_replicas(settings, front="local") == 4
    assert sized_replicas(settings, front="proxy") == 5


def test_the_local_front_deploys_the_models_under_a_root_that_takes_no_cpu(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": {}, "b": {}})
    root = application(make_settings(store, ray_num_cpus=0.3), front="local")._bound_deployment
    assert root.name == "models" and root.ray_actor_options["num_cpus"] == 0
    (models,) = root.init_args
    assert sorted(models) == ["a", "b"]
    assert models["a"]._bound_deployment.ray_actor_options["num_cpus"] == 0.3


def test_the_waiting_message_names_what_waits_and_why() -> None:
    class Deployment:
        def __init__(self, status: str, states: dict[str, int], message: str) -> None:
            self.status, self.replica_states, self.message = status, states, message

    class App:
        deployments = {  # noqa: RUF012 - Serve's status shape
            "model-a": Deployment("UPDATING", {"PENDING_ALLOCATION": 2}, "taken more than 30s to be placed"),
            "models": Deployment("HEALTHY", {"RUNNING": 1}, ""),
        }

    text = waiting_message("app", Fit(cpus=1.0, replicas=4, free=(1.0, 1.0)), App(), 31)
    assert text.startswith("Ray application 'app' is not running after 31 s: model-a: 2 PENDING_ALLOCATION")
    assert "taken more than 30s to be placed" in text
    assert "models:" not in text  # a healthy deployment is not listed
    assert "4 replica(s) of 1 CPU each" in text
