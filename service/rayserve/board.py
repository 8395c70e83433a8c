"""A reload, rolled through every replica of a model: which version is wanted, who holds it, who may load.

Ray Serve routes a handle call to one replica, so a reload cannot be sent to all of them; instead the ingress
posts the wanted version (the learner file's sha256) on this board, one named actor per application, and each
replica, which polls it, loads that version beside the one it serves, one replica of a model at a time (a
lease), and reports it. The ingress swaps its own preprocessing only once every running replica holds the new
version, so no request is ever prepared for a version its replica lacks.
"""

from __future__ import annotations

import ray

NAMESPACE = "fastai-serve"
LEASE_S = 300.0  # a replica that died holding the lease frees it after this long


@ray.remote(num_cpus=0)
class ReloadBoard:
    def __init__(self) -> None:
        self._wanted: dict[str, str] = {}  # model -> sha256 of the version to roll out
        self._held: dict[str, dict[str, str]] = {}  # model -> replica -> newest sha256 it holds
        self._serving: dict[str, dict[str, dict[str, str | None]]] = {}  # model -> replica -> runtime etc.
        self._leases: dict[str, tuple[str, float]] = {}  # model -> (replica, since)
        self._errors: dict[str, dict[str, str]] = {}  # model -> replica -> why its last load failed

    def want(self, model: str, sha256: str) -> None:
        self._wanted[model] = sha256
        self._errors.pop(model, None)

    def wanted(self) -> dict[str, str]:
        return dict(self._wanted)

    def lease(self, model: str, replica: str, now: float) -> bool:
        """Whether `replica` may load now: one replica of a model at a time, so the others keep serving."""
        holder = self._leases.get(model)
        if holder is None or holder[0] == replica or now - holder[1] > LEASE_S:
            self._leases[model] = (replica, now)
            return True
        return False

    def report(
        self,
        model: str,
        replica: str,
        sha256: str | None,
        error: str | None = None,
        serving: dict[str, str | None] | None = None,
    ) -> None:
        """`replica` holds `sha256` now (at start, and after a reload), or failed to load (`error`); frees
        its lease. `serving`: its runtime, runtime note and device."""
        if sha256:
            self._held.setdefault(model, {})[replica] = sha256
        if serving:
            self._serving.setdefault(model, {})[replica] = serving
        if error:
            self._errors.setdefault(model, {})[replica] = error
        holder = self._leases.get(model)
        if holder is not None and holder[0] == replica:
            del self._leases[model]

    def serving(self, model: str) -> tuple[dict[str, str | None] | None, list[str]]:
        """What the newest report of the model's replicas says they run it on, and any load errors."""
        reports = list(self._serving.get(model, {}).values())
        return (reports[-1] if reports else None), sorted(set(self._errors.get(model, {}).values()))

    def forget(self, model: str, replica: str) -> None:
        """A replica stopped (its state is no longer the deployment's)."""
        for table in (self._held, self._serving, self._errors):
            table.get(model, {}).pop(replica, None)

    def progress(self, model: str, sha256: str) -> tuple[list[str], list[str]]:
        """The replicas that hold `sha256`, and why loading it failed where it did."""
        holding = sorted(r for r, held in self._held.get(model, {}).items() if held == sha256)
        return holding, sorted(set(self._errors.get(model, {}).values()))


def board_for(app_name: str) -> ray.actor.ActorHandle:
    """The application's board, created by whoever asks first; detached, so it outlives any one replica."""
    return ReloadBoard.options(  # type: ignore[attr-defined,no-any-return]
        name=f"{app_name}-reloads", namespace=NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote()
