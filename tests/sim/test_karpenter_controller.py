"""Simulated Karpenter against a real Store: phases and delays, device-plugin gated Initialized, limits, ICE, cleanup."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pytest_gpucluster.sim import resources
from pytest_gpucluster.sim.controllers.base import get_condition
from pytest_gpucluster.sim.controllers.daemonsets import DaemonSetController
from pytest_gpucluster.sim.controllers.deviceplugins import DevicePluginController, NodeFacts
from pytest_gpucluster.sim.controllers.karpenter import Karpenter
from pytest_gpucluster.sim.controllers.karpenter_catalog import parse_duration
from pytest_gpucluster.sim.controllers.podgc import PodGarbageCollector
from pytest_gpucluster.sim.controllers.scheduler import Scheduler
from tests.sim.controllers_testing import FakeKubelet, eventually, find, running
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.store import Store

DELAY = 0.15
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def make_world(name: str = "healthy", **nodepool_changes: Any) -> tuple[Store, Any, list[Any]]:
    scenario = load_scenario(name)
    for phase in ("launch", "register", "initialize", "ready"):
        setattr(scenario.karpenter, phase, DELAY)
    store = Store()
    for key in resources.CUSTOM_KEYS:
        store.create("customresourcedefinitions.apiextensions.k8s.io", resources.crd_manifest(key))
    for spec in scenario.nodepools:
        manifest = spec.manifest(scenario.cluster)
        manifest["spec"].update(nodepool_changes.get(spec.name, {}))
        store.create("nodepools.karpenter.sh", manifest)
    store.create("daemonsets.apps", {
        "metadata": {"name": "nvidia-device-plugin-daemonset", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": "nvdp"}}, "template": {
            "metadata": {"labels": {"app": "nvdp"}},
            "spec": {"tolerations": [GPU_TOLERATION], "nodeSelector": {"workload": "gpu"},
                     "containers": [{"name": "plugin", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"}]}}}})
    facts = NodeFacts(scenario)
    controllers = [Scheduler(store, scenario), DaemonSetController(store, scenario),
                   DevicePluginController(store, scenario, facts), Karpenter(store, scenario, facts),
                   FakeKubelet(store, scenario), PodGarbageCollector(store, scenario)]
    return store, scenario, controllers


def gpu_pod(name: str, *, gpus: int = 8, instance: str | None = "p5.48xlarge") -> dict[str, Any]:
    spec: dict[str, Any] = {"tolerations": [GPU_TOLERATION], "containers": [
        {"name": "main", "image": "nvcr.io/nvidia/pytorch:25.01-py3",
         "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}
    if instance:
        spec["nodeSelector"] = {"node.kubernetes.io/instance-type": instance}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def claims(store: Store) -> list[dict[str, Any]]:
    return find(store, "nodeclaims.karpenter.sh", lambda c: True)


def condition_status(claim: dict[str, Any], ctype: str) -> str | None:
    condition = get_condition(claim, ctype)
    return condition.get("status") if condition else None


def pod_events(store: Store, name: str, reason: str) -> list[dict[str, Any]]:
    return find(store, "events", lambda e: e["involvedObject"]["name"] == name and e["reason"] == reason)


def test_durations_parse_like_go() -> None:
    assert parse_duration("720h") == 720 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("0.5s") == 0.5
    assert parse_duration("Never") is None
    with pytest.raises(ValueError, match="'5 minutes'"):
        parse_duration("5 minutes")


def test_nodeclaim_goes_through_the_phases_with_the_configured_delays() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world()
        async with running(controllers) as tasks:
            start = time.monotonic()
            store.create("pods", gpu_pod("trainer"))
            [claim] = await eventually(lambda: claims(store), what="a NodeClaim", tasks=tasks)
            name = claim["metadata"]["name"]
            assert name.startswith("gpu-") and len(name) == len("gpu-") + 5
            assert claim["metadata"]["ownerReferences"][0]["kind"] == "NodePool"
            assert "karpenter.sh/termination" in claim["metadata"]["finalizers"]
            assert [c["type"] for c in claim["status"]["conditions"]] == [
                "Initialized", "Launched", "Ready", "Registered"]
            [nominated] = pod_events(store, "trainer", "Nominated")
            assert nominated["message"] == f"Pod should schedule on: nodeclaim/{name}"
            assert nominated["source"]["component"] == "karpenter"

            seen: dict[str, float] = {}
            for phase in ("Launched", "Registered", "Initialized", "Ready"):
                await eventually(lambda: condition_status(store.get("nodeclaims.karpenter.sh", None, name),
                                                          phase) == "True", what=phase, tasks=tasks)
                seen[phase] = time.monotonic() - start
            assert seen["Launched"] >= DELAY * 0.9
            assert seen["Registered"] - seen["Launched"] >= DELAY * 0.8
            # node Ready after `initialize`, Initialized once the plugin published the GPUs, Ready after `ready`
            assert seen["Initialized"] - seen["Registered"] >= DELAY * 0.8
            assert seen["Ready"] - seen["Initialized"] >= DELAY * 0.8
            assert seen["Ready"] < 4 * DELAY + 1.5

            claim = store.get("nodeclaims.karpenter.sh", None, name)
            node = store.get("nodes", None, claim["status"]["nodeName"])
            labels = node["metadata"]["labels"]
            assert labels["karpenter.sh/nodepool"] == "gpu" and labels["karpenter.sh/initialized"] == "true"
            assert labels["node.kubernetes.io/instance-type"] == "p5.48xlarge"
            assert labels["karpenter.k8s.aws/instance-gpu-count"] == "8"
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
            assert {"key": "nvidia.com/gpu", "effect": "NoSchedule"} in node["spec"]["taints"]
            assert not any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"]["taints"])
            assert claim["status"]["providerID"].startswith("aws:///us-west-2")
            messages = [e["message"] for e in find(store, "events", lambda e: e["involvedObject"]["name"] == name)]
            assert "Status condition transitioned, Type: Launched, Status: Unknown -> True, Reason: Launched" \
                in messages
            await eventually(lambda: store.get("pods", "default", "trainer")["spec"].get("nodeName") == node[
                "metadata"]["name"], what="pod bound to the new node", tasks=tasks)
            pool = store.get("nodepools.karpenter.sh", None, "gpu")
            await eventually(lambda: (store.get("nodepools.karpenter.sh", None, "gpu").get("status") or {}).get(
                "resources", {}).get("nvidia.com/gpu") == "8", what="NodePool status.resources", tasks=tasks)
            assert pool["metadata"]["name"] == "gpu"

    asyncio.run(run())


def test_efa_is_attached_only_when_a_pod_asks_for_it() -> None:
    """karpenter-provider-aws getEFACountForInstance: EFA interfaces only for a claim whose pods request
    vpc.amazonaws.com/efa (or an EC2NodeClass with networkInterfaces); the NodeClaim advertises EFA only then, and
    the node's hardware (what pods get) has none otherwise."""
    async def run() -> None:
        store, scenario, controllers = make_world()
        async with running(controllers) as tasks:
            plain, with_efa = gpu_pod("plain"), gpu_pod("efa")
            with_efa["spec"]["containers"][0]["resources"]["limits"]["vpc.amazonaws.com/efa"] = "32"
            store.create("pods", plain)
            store.create("pods", with_efa)
            await eventually(lambda: len([c for c in claims(store) if (c.get("status") or {}).get("nodeName")]) == 2,
                             what="both registered", tasks=tasks)
            efa = {c["status"]["nodeName"]: c["status"]["capacity"].get("vpc.amazonaws.com/efa")
                   for c in claims(store)}
            assert sorted(efa.values(), key=str) == ["32", None], efa
            for node, count in efa.items():
                spec = scenario.launched_node(node)
                assert spec is not None and len(spec.hardware.efa_devices) == (32 if count else 0)

    asyncio.run(run())


def test_nodepool_gpu_limit_stops_a_second_node() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world(gpu={"limits": {"nvidia.com/gpu": "8"}})
        async with running(controllers) as tasks:
            store.create("pods", gpu_pod("first"))
            await eventually(lambda: claims(store), what="first NodeClaim", tasks=tasks)
            store.create("pods", gpu_pod("second"))
            [event] = await eventually(lambda: [e for e in pod_events(store, "second", "FailedScheduling")
                                                if e["source"]["component"] == "karpenter"],
                                       what="karpenter FailedScheduling for the second pod", tasks=tasks)
            assert 'all available instance types exceed limits for nodepool "gpu"' in event["message"]
            assert len(claims(store)) == 1

    asyncio.run(run())


def test_insufficient_capacity_fails_the_launch_and_leaves_the_pod_pending() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world("karpenter-no-capacity")
        async with running(controllers) as tasks:
            store.create("pods", gpu_pod("starved"))
            [ice] = await eventually(lambda: find(store, "events", lambda e: e["reason"] == "InsufficientCapacityError"),
                                     what="InsufficientCapacityError event", tasks=tasks)
            assert ice["type"] == "Warning" and ice["involvedObject"]["kind"] == "NodeClaim"
            assert "InsufficientInstanceCapacity: We currently do not have sufficient p5.48xlarge capacity" \
                in ice["message"]
            await eventually(lambda: any("no instance type met the scheduling requirements" in e["message"]
                                         for e in pod_events(store, "starved", "FailedScheduling")),
                             what="karpenter gives up on the pod", tasks=tasks)
            await eventually(lambda: not claims(store), what="failed NodeClaim deleted", tasks=tasks)
            assert find(store, "nodes", lambda n: True) == []
            assert not store.get("pods", "default", "starved")["spec"].get("nodeName")

    asyncio.run(run())


def test_nodepool_deletion_drains_and_removes_its_nodes() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world()
        async with running(controllers) as tasks:
            store.create("pods", gpu_pod("trainer"))
            node_name = await eventually(lambda: store.get("pods", "default", "trainer")["spec"].get("nodeName"),
                                         what="pod bound", tasks=tasks)
            store.delete("nodepools.karpenter.sh", None, "gpu")
            await eventually(lambda: not claims(store) and not find(store, "nodes", lambda n: True),
                             what="NodeClaims and nodes gone", tasks=tasks)
            assert not find(store, "pods", lambda p: p["metadata"]["name"] == "trainer")
            assert node_name.startswith("ip-")

    asyncio.run(run())


def test_empty_node_is_consolidated_after_consolidate_after() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world(
            gpu={"disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "0.3s"}})
        async with running(controllers) as tasks:
            store.create("pods", gpu_pod("short"))
            await eventually(lambda: store.get("pods", "default", "short")["spec"].get("nodeName"),
                             what="pod bound", tasks=tasks)
            [claim] = claims(store)
            store.mutate("pods", "default", "short", lambda p: p["status"].__setitem__("phase", "Succeeded"),
                         subresource="status")
            emptied = time.monotonic()
            await eventually(lambda: not claims(store), what="empty NodeClaim consolidated", tasks=tasks)
            assert time.monotonic() - emptied >= 0.25
            assert find(store, "events", lambda e: e["reason"] == "DisruptionTerminating"
                        and e["involvedObject"]["name"] == claim["metadata"]["name"])
            assert not find(store, "nodes", lambda n: True)

    asyncio.run(run())


def test_pod_that_no_nodepool_tolerates_gets_karpenter_reason() -> None:
    async def run() -> None:
        store, scenario, controllers = make_world()
        async with running(controllers) as tasks:
            pod = gpu_pod("untolerant", instance=None)
            pod["spec"].pop("tolerations")
            store.create("pods", pod)
            [event] = await eventually(lambda: [e for e in pod_events(store, "untolerant", "FailedScheduling")
                                                if e["source"]["component"] == "karpenter"],
                                       what="karpenter FailedScheduling", tasks=tasks)
            assert 'incompatible with nodepool "gpu", did not tolerate nvidia.com/gpu=:NoSchedule' in event["message"]
            assert not claims(store)

    asyncio.run(run())
