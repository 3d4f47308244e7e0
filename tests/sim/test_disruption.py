"""The node-disrupted fault: a node is cordoned and tainted karpenter.sh/disrupted after its first probe finished."""
from __future__ import annotations

import asyncio

from pytest_gpucluster.sim.controllers.karpenter_disruption import Disruption
from tests.sim.controllers_testing import eventually, running
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.seed import seed_store
from pytest_gpucluster.sim.store import Store


def test_the_node_goes_into_transition_after_its_first_probe() -> None:
    async def run() -> None:
        scenario = load_scenario("node-disrupted-during-run")
        store = Store()
        seed_store(store, scenario)
        target = scenario.node(2).name
        async with running([Disruption(store, scenario)]) as tasks:
            await asyncio.sleep(0.05)
            assert not store.get("nodes", None, target)["spec"].get("unschedulable")   # no probe finished yet
            store.create("pods", {"metadata": {"name": "probe", "namespace": "default",
                                               "labels": {"gpucluster.io/run": "r1"}},
                                  "spec": {"nodeName": target, "containers": [{"name": "c", "image": "busybox"}]},
                                  "status": {"phase": "Succeeded"}})
            spec = await eventually(lambda: (s := store.get("nodes", None, target)["spec"]).get("unschedulable") and s,
                                    what="the node cordoned", tasks=tasks)
            assert {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"} in spec["taints"]
            assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in spec["taints"]

    asyncio.run(run())
