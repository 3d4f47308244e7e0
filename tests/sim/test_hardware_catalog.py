"""The simulated hardware catalog's newer instance types (issue 15): a scenario can use them, and their nodes advertise
what AWS publishes (profiles/default.yaml names the sources)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.sim.controllers.karpenter_catalog import (
    instance_allocatable,
    instance_labels,
)
from tests.sim.controllers_testing import eventually, running
from pytest_gpucluster.sim.hardware import instance_type
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.store import Store
from tests.sim.test_daemonsets_plugins import (
    GPU_TOLERATION,
    controllers,
    daemonset,
    seed_nodes,
)

SCENARIO = """\
extends: healthy
description: healthy, with two p6-b200.48xlarge GPU nodes
nodes:
  - instance_type: p6-b200.48xlarge
    count: 2
    zone: us-west-2a
    nodepool: gpu
    labels: {workload: gpu}
    taints:
      - {key: nvidia.com/gpu, effect: NoSchedule}
  - instance_type: m6i.2xlarge
    count: 2
    zone: us-west-2a
    labels: {workload: system}
"""


def test_p6_b200_node_advertises_8_gpus_and_8_efa(tmp_path: Path) -> None:
    path = tmp_path / "p6-b200.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)

    async def scenario_run() -> None:
        store = Store()
        seed_nodes(store, scenario)
        gpu_nodes = [n.name for n in scenario.gpu_nodes()]
        async with running(controllers(store, scenario)) as tasks:
            for name in ("nvidia-device-plugin-daemonset", "aws-efa-k8s-device-plugin-daemonset"):
                store.create("daemonsets.apps", daemonset(name, tolerations=[GPU_TOLERATION]))

            def advertised() -> bool:
                return all({k: store.get("nodes", None, n)["status"]["allocatable"].get(k)
                            for k in ("nvidia.com/gpu", "vpc.amazonaws.com/efa")}
                           == {"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "8"} for n in gpu_nodes)
            await eventually(advertised, what="8 GPUs and 8 EFA allocatable on each p6-b200 node", tasks=tasks)

    asyncio.run(scenario_run())


def test_catalog_matches_the_profile_for_the_new_types() -> None:
    """The simulated catalog and the default profile state the same GPU, EFA and network figures."""
    profile = load_profile()
    for name in ("p5.4xlarge", "p6-b200.48xlarge", "p6-b300.48xlarge"):
        inst, want = instance_type(name), profile.for_instance(name)
        assert want is not None and inst.gpu_model is not None
        assert (inst.gpus, inst.efa, inst.network_gbps) == (want.gpus, want.efa, want.network_gbps), name
        assert (inst.gpu_model.name, inst.gpu_model.memory_mib) == (want.gpu_product, want.gpu_memory_mib), name
    assert instance_allocatable(instance_type("p6-b300.48xlarge"))["vpc.amazonaws.com/efa"] == "16"
    labels = instance_labels(instance_type("p6-b200.48xlarge"))
    assert labels["karpenter.k8s.aws/instance-generation"] == "6"
    assert labels["karpenter.k8s.aws/instance-gpu-name"] == "b200"
