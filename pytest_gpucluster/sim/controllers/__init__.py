"""The simulated cluster's controllers: `build_controllers` assembles them for one scenario."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pytest_gpucluster.sim.controllers.base import Controller
from pytest_gpucluster.sim.controllers.daemonsets import DaemonSetController
from pytest_gpucluster.sim.controllers.jobs import JobController
from pytest_gpucluster.sim.controllers.karpenter import Karpenter
from pytest_gpucluster.sim.controllers.karpenter_disruption import Disruption
from pytest_gpucluster.sim.controllers.mpi_operator import MpiOperator
from pytest_gpucluster.sim.controllers.deviceplugins import DevicePluginController, NodeFacts, plugin_fault_behaviour
from pytest_gpucluster.sim.controllers.podgc import PodGarbageCollector
from pytest_gpucluster.sim.controllers.scheduler import Scheduler

__all__ = ["Controller", "RunnableController", "build_controllers"]


class RunnableController(Protocol):
    """What the launcher runs: a name and a coroutine that runs until cancelled."""

    name: str

    async def run(self) -> None: ...


def build_controllers(store: Any, scenario: Any, workdir: Path, aws: Any | None) -> list[RunnableController]:
    """Every controller of a simulated cluster, kubelet included, ready to run as asyncio tasks.

    `aws` is the sim's AwsSim (or None without AWS): Karpenter launches and terminates its
    instances through it so moto holds what the cluster shows.
    """
    facts = NodeFacts(scenario)
    cluster = getattr(scenario, "cluster", None)
    controllers: list[RunnableController] = [
        Scheduler(store, scenario,
                  extended_resource_toleration=bool(getattr(cluster, "extended_resource_toleration", False))),
        DaemonSetController(store, scenario, behaviour=plugin_fault_behaviour(facts)),
        DevicePluginController(store, scenario, facts),
        PodGarbageCollector(store, scenario),
        Disruption(store, scenario),
    ]
    controllers.extend(_optional_controllers(store, scenario, workdir, aws, facts))
    from pytest_gpucluster.sim.kubelet import Kubelet  # the world engineer's; imported late on purpose

    controllers.append(Kubelet(store, scenario, workdir))
    return controllers


def _optional_controllers(store: Any, scenario: Any, workdir: Path, aws: Any | None,
                          facts: NodeFacts) -> list[RunnableController]:
    """Controllers of add-ons; each idles while its CRD is absent (a scenario may leave it out)."""
    return [Karpenter(store, scenario, facts, aws=aws), JobController(store, scenario),
            MpiOperator(store, scenario)]
