"""DaemonSet controller + device plugins against a real Store: placement by taints, status, allocatable, GFD."""
from __future__ import annotations

import asyncio
from typing import Any

from pytest_gpucluster.sim.controllers.base import Controller
from pytest_gpucluster.sim.controllers.daemonsets import BEHAVIOUR_ANNOTATION, DaemonSetController
from pytest_gpucluster.sim.controllers.deviceplugins import DevicePluginController, NodeFacts, plugin_fault_behaviour
from pytest_gpucluster.sim.controllers.podgc import PodGarbageCollector
from pytest_gpucluster.sim.controllers.scheduler import Scheduler
from tests.sim.controllers_testing import FakeKubelet, eventually, find, running
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.store import Store

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def seed_nodes(store: Store, scenario: Any) -> None:
    for spec in scenario.expand_nodes():
        labels = {"kubernetes.io/hostname": spec.name, "node.kubernetes.io/instance-type": spec.instance.name,
                  **spec.labels}
        store.create("nodes", {
            "metadata": {"name": spec.name, "labels": labels},
            "spec": {"taints": [t.to_k8s() for t in spec.taints]},
            "status": {"allocatable": spec.instance.allocatable(), "capacity": spec.instance.capacity(),
                       "conditions": [{"type": "Ready", "status": "True"}]}})


def daemonset(name: str, *, tolerations: list[dict] | None, node_selector: dict | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": name, "image": f"example/{name}:1"}]}
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def controllers(store: Store, scenario: Any) -> list[Controller]:
    facts = NodeFacts(scenario)
    return [Scheduler(store, scenario), DaemonSetController(store, scenario, behaviour=plugin_fault_behaviour(facts)),
            DevicePluginController(store, scenario, facts), FakeKubelet(store, scenario),
            PodGarbageCollector(store, scenario)]


def ds_status(store: Store, name: str) -> dict[str, Any]:
    return store.get("daemonsets.apps", "kube-system", name).get("status") or {}


def test_daemon_pods_land_only_where_tolerated_and_allocatable_follows_readiness() -> None:
    async def scenario_run() -> None:
        scenario = load_scenario("healthy")
        store = Store()
        seed_nodes(store, scenario)
        gpu_nodes = [n.name for n in scenario.gpu_nodes()]
        async with running(controllers(store, scenario)) as tasks:
            store.create("daemonsets.apps", daemonset(
                "nvidia-device-plugin-daemonset", tolerations=[GPU_TOLERATION],
                node_selector={"workload": "gpu"}))
            store.create("daemonsets.apps", daemonset("aws-efa-k8s-device-plugin-daemonset", tolerations=None))
            store.create("daemonsets.apps", daemonset("gpu-feature-discovery", tolerations=[GPU_TOLERATION]))
            await eventually(lambda: ds_status(store, "nvidia-device-plugin-daemonset").get("numberReady") == 2,
                             what="NVIDIA plugin ready on both GPU nodes", tasks=tasks)
            status = ds_status(store, "nvidia-device-plugin-daemonset")
            assert status["desiredNumberScheduled"] == status["currentNumberScheduled"] == 2
            assert status["updatedNumberScheduled"] == 2 and status["numberMisscheduled"] == 0

            def gpus_allocatable() -> bool:
                return all(store.get("nodes", None, n)["status"]["allocatable"].get("nvidia.com/gpu") == "8"
                           for n in gpu_nodes)
            await eventually(gpus_allocatable, what="8 GPUs allocatable on each GPU node", tasks=tasks)
            # The EFA plugin without the GPU toleration only runs on the (untainted) CPU nodes.
            efa_pods = find(store, "pods", lambda p: p["metadata"]["name"].startswith("aws-efa-k8s"))
            placed = {p["spec"]["nodeName"] for p in efa_pods}
            assert placed and not placed & set(gpu_nodes)
            node = store.get("nodes", None, gpu_nodes[0])
            assert "vpc.amazonaws.com/efa" not in node["status"]["allocatable"]
            await eventually(lambda: store.get("nodes", None, gpu_nodes[0])["metadata"]["labels"].get(
                "nvidia.com/gpu.product") == "NVIDIA-H100-80GB-HBM3", what="GFD labels", tasks=tasks)
            labels = store.get("nodes", None, gpu_nodes[0])["metadata"]["labels"]
            assert labels["nvidia.com/gpu.count"] == "8" and labels["nvidia.com/gpu.present"] == "true"
            assert labels["nvidia.com/cuda.driver.major"] == labels["nvidia.com/cuda.driver-version.major"]
            pod = next(p for p in find(store, "pods", lambda p: p["metadata"]["name"].startswith("nvidia-device")))
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
            terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [pod["spec"]["nodeName"]]
            assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"} in \
                pod["spec"]["tolerations"]

    asyncio.run(scenario_run())


def test_efa_plugin_with_the_toleration_publishes_efa_except_on_the_efa_absent_node() -> None:
    async def scenario_run() -> None:
        scenario = load_scenario("efa-absent")
        store = Store()
        seed_nodes(store, scenario)
        broken = scenario.fault_nodes(scenario.faults_for("efa-absent")[0])[0]
        healthy = next(n.name for n in scenario.gpu_nodes() if n.name != broken)
        async with running(controllers(store, scenario)) as tasks:
            store.create("daemonsets.apps", daemonset("aws-efa-k8s-device-plugin-daemonset",
                                                      tolerations=[GPU_TOLERATION]))
            await eventually(lambda: store.get("nodes", None, healthy)["status"]["allocatable"].get(
                "vpc.amazonaws.com/efa") == "32", what="32 EFA on the healthy p5", tasks=tasks)
            await asyncio.sleep(0.05)
            assert "vpc.amazonaws.com/efa" not in store.get("nodes", None, broken)["status"]["allocatable"]

    asyncio.run(scenario_run())


def test_device_plugin_not_ready_fault_keeps_gpus_off_one_node_and_ds_not_ready() -> None:
    async def scenario_run() -> None:
        scenario = load_scenario("device-plugin-not-ready")
        store = Store()
        seed_nodes(store, scenario)
        broken = scenario.node(1).name
        healthy = scenario.node(0).name
        async with running(controllers(store, scenario)) as tasks:
            store.create("daemonsets.apps", daemonset("nvidia-device-plugin-daemonset",
                                                      tolerations=[GPU_TOLERATION],
                                                      node_selector={"workload": "gpu"}))
            await eventually(lambda: store.get("nodes", None, healthy)["status"]["allocatable"].get(
                "nvidia.com/gpu") == "8", what="GPUs on the healthy node", tasks=tasks)
            await eventually(lambda: ds_status(store, "nvidia-device-plugin-daemonset").get(
                "currentNumberScheduled") == 2, what="both plugin pods scheduled", tasks=tasks)
            status = ds_status(store, "nvidia-device-plugin-daemonset")
            assert status["numberReady"] == 1 and status["desiredNumberScheduled"] == 2
            assert status["numberUnavailable"] == 1
            assert "nvidia.com/gpu" not in store.get("nodes", None, broken)["status"]["allocatable"]
            crashing = find(store, "pods", lambda p: p["spec"].get("nodeName") == broken
                            and p["metadata"]["name"].startswith("nvidia-device-plugin"))
            assert crashing[0]["metadata"]["annotations"][BEHAVIOUR_ANNOTATION] == "crashloop"

    asyncio.run(scenario_run())


def test_new_and_removed_nodes_gain_and_lose_daemon_pods() -> None:
    async def scenario_run() -> None:
        store = Store()
        async with running(controllers(store, None)) as tasks:
            store.create("daemonsets.apps", daemonset("node-agent", tolerations=[{"operator": "Exists"}]))
            for name in ("a", "b"):
                store.create("nodes", {"metadata": {"name": name}, "spec": {}, "status": {
                    "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                    "conditions": [{"type": "Ready", "status": "True"}]}})
            await eventually(lambda: ds_status(store, "node-agent").get("numberReady") == 2,
                             what="two ready daemon pods", tasks=tasks)
            store.delete("nodes", None, "b")
            await eventually(lambda: ds_status(store, "node-agent").get("desiredNumberScheduled") == 1
                             and len(find(store, "pods", lambda p: True)) == 1,
                             what="pod of the removed node gone", tasks=tasks)

    asyncio.run(scenario_run())
