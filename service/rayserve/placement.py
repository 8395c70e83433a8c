"""CPUs per replica that fit the cluster, and saying so on the console when a deployment cannot be placed.

Ray places an actor only on a node with its whole CPU request free, and Serve retries a replica that does not
fit forever, logging "taken more than 30s to be scheduled" into its own log every 30 s. So the request is
sized from the cluster before deploying (each node's free CPUs, not their sum: 0.4 free as 0.2 on each of
two nodes holds no replica of 0.3), and a deployment still waiting after `WAIT_WARN_S` is reported with the
numbers and the setting to change.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import ray

from service.errors import MSG_RAY_UNPLACEABLE

logger = logging.getLogger(__name__)
# The smallest share sized for a replica: below it a replica's torch thread barely runs.
MIN_CPUS = 0.05
WAIT_WARN_S = 30.0


@dataclass(frozen=True)
class Fit:
    cpus: float  # per replica
    replicas: int
    free: tuple[float, ...]  # free CPUs of each node, when sized

    @property
    def placeable(self) -> bool:
        return fits(self.cpus, self.replicas, self.free)

    def problem(self) -> str:
        """What cannot be placed and what to change (MSG_RAY_UNPLACEABLE)."""
        nodes = ", ".join(f"{f:g}" for f in self.free) or "no nodes"
        return MSG_RAY_UNPLACEABLE.format(
            replicas=self.replicas,
            cpus=self.cpus,
            needed=self.cpus * self.replicas,
            free=sum(self.free),
            nodes=f"{nodes} on its {len(self.free)} node(s)",
        )


def fits(cpus: float, replicas: int, free: tuple[float, ...]) -> bool:
    """Whether `replicas` actors of `cpus` each fit nodes with these free CPUs (each on one node)."""
    if cpus <= 0:
        return True
    return sum(math.floor(f / cpus + 1e-9) for f in free) >= replicas


def fitted(replicas: int, free: tuple[float, ...], *, at_most: float = 1.0) -> float:
    """The largest CPU share per replica, a multiple of MIN_CPUS up to `at_most`, with which all fit (or
    MIN_CPUS when none does: the deployment waits for CPUs to free up, and the console says why)."""
    steps = int(round(at_most / MIN_CPUS))
    for step in range(steps, 0, -1):
        cpus = round(step * MIN_CPUS, 4)
        if fits(cpus, replicas, free):
            return cpus
    return MIN_CPUS


def free_cpus() -> tuple[float, ...]:
    """Each alive node's free CPUs (the connected cluster's)."""
    try:
        from ray._private.state import available_resources_per_node

        per_node = available_resources_per_node()
        return tuple(float(r.get("CPU", 0.0)) for r in per_node.values())
    except Exception:  # noqa: BLE001 - a private API: fall back to the nodes' totals
        return tuple(float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive"))


def plan(configured: float | None, replicas: int) -> Fit:
    """CPUs per replica for `replicas` replicas: as configured, or fitted to the cluster's free CPUs."""
    free = free_cpus()
    cpus = configured if configured is not None else fitted(replicas, free)
    return Fit(cpus=cpus, replicas=replicas, free=free)
