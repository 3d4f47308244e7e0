"""The scheduler controller against a real Store: binding, FailedScheduling, re-evaluation, admission."""
from __future__ import annotations

import asyncio
from typing import Any

from pytest_gpucluster.sim.controllers.base import get_condition
from pytest_gpucluster.sim.controllers.scheduler import Scheduler
from tests.sim.controllers_testing import eventually, find, running
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.store import Store

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def node(name: str, *, gpus: int = 0, taints: list[dict] | None = None) -> dict[str, Any]:
    allocatable = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": allocatable, "capacity": dict(allocatable),
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def pod(name: str, *, gpus: int = 0, tolerate_gpu: bool = False) -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {"requests": {"cpu": "100m"}}
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36", "resources": resources}]}
    if tolerate_gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def events_for(store: Store, name: str, reason: str) -> list[dict[str, Any]]:
    return find(store, "events", lambda e: e["involvedObject"]["name"] == name and e["reason"] == reason)


def cluster(store: Store) -> None:
    store.create("nodes", node("cpu-1"))
    store.create("nodes", node("cpu-2"))
    store.create("nodes", node("gpu-1", gpus=8, taints=[GPU_TAINT]))
    store.create("nodes", node("gpu-2", gpus=8, taints=[GPU_TAINT]))


def test_binds_a_gpu_pod_and_records_the_scheduled_event() -> None:
    async def scenario() -> None:
        store = Store()
        cluster(store)
        async with running([Scheduler(store, None)]) as tasks:
            store.create("pods", pod("trainer", gpus=8, tolerate_gpu=True))
            bound = await eventually(lambda: store.get("pods", "default", "trainer")["spec"].get("nodeName"),
                                     what="pod bound", tasks=tasks)
            assert bound in ("gpu-1", "gpu-2")
            obj = store.get("pods", "default", "trainer")
            scheduled = get_condition(obj, "PodScheduled")
            assert scheduled and scheduled["status"] == "True" and scheduled["lastTransitionTime"].endswith("Z")
            [event] = events_for(store, "trainer", "Scheduled")
            assert event["message"] == f"Successfully assigned default/trainer to {bound}"
            assert event["source"]["component"] == "default-scheduler"

    asyncio.run(scenario())


def test_unschedulable_pod_gets_the_condition_and_one_aggregated_event() -> None:
    async def scenario() -> None:
        store = Store()
        cluster(store)
        async with running([Scheduler(store, None)]) as tasks:
            store.create("pods", pod("greedy", gpus=16, tolerate_gpu=True))
            condition = await eventually(
                lambda: get_condition(store.get("pods", "default", "greedy"), "PodScheduled"),
                what="PodScheduled condition", tasks=tasks)
            assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
            assert condition["message"] == (
                "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are "
                "available: 4 Preemption is not helpful for scheduling.")
            for i in range(5):  # unrelated churn must not spam new events
                store.create("configmaps", {"metadata": {"name": f"cm{i}", "namespace": "default"}})
                store.mutate("pods", "default", "greedy",
                             lambda p: p["metadata"].setdefault("labels", {}).update(touch="x"))
                await asyncio.sleep(0.02)
            events = events_for(store, "greedy", "FailedScheduling")
            assert len(events) == 1 and events[0]["type"] == "Warning"
            assert events[0]["count"] <= 2

    asyncio.run(scenario())


def test_untolerated_gpu_taint_message_and_binding_after_a_node_frees_up() -> None:
    async def scenario() -> None:
        store = Store()
        cluster(store)
        async with running([Scheduler(store, None)]) as tasks:
            store.create("pods", pod("untolerant", gpus=1))
            condition = await eventually(
                lambda: get_condition(store.get("pods", "default", "untolerant"), "PodScheduled"),
                what="PodScheduled condition", tasks=tasks)
            assert condition["message"] == (
                "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
                "{nvidia.com/gpu: present}. preemption: 0/4 nodes are available: 4 Preemption is not "
                "helpful for scheduling.")
            # Taking the taint off one GPU node lets the pod schedule there.
            store.mutate("nodes", None, "gpu-2", lambda n: n["spec"].__setitem__("taints", []))
            assert await eventually(
                lambda: store.get("pods", "default", "untolerant")["spec"].get("nodeName") == "gpu-2",
                what="pod bound to gpu-2", tasks=tasks)

    asyncio.run(scenario())


def test_a_1_34_scheduler_keeps_the_taint_out_of_its_message() -> None:
    """kubernetes/kubernetes#134740 (release-1.34: #135023): `node(s) had untolerated taint(s)`, no key or value."""
    async def scenario() -> None:
        store = Store()
        cluster(store)
        sim = load_scenario("healthy")
        sim.cluster.kubernetes_version = "1.34"
        async with running([Scheduler(store, sim)]) as tasks:
            store.create("pods", pod("untolerant", gpus=1))
            condition = await eventually(
                lambda: get_condition(store.get("pods", "default", "untolerant"), "PodScheduled"),
                what="PodScheduled condition", tasks=tasks)
            assert condition["message"] == (
                "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint(s). "
                "preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.")

    asyncio.run(scenario())


def test_terminated_pods_release_gpus_for_pending_ones() -> None:
    async def scenario() -> None:
        store = Store()
        store.create("nodes", node("gpu-1", gpus=8))
        async with running([Scheduler(store, None)]) as tasks:
            store.create("pods", pod("first", gpus=8))
            await eventually(lambda: store.get("pods", "default", "first")["spec"].get("nodeName"),
                             what="first bound", tasks=tasks)
            store.create("pods", pod("second", gpus=8))
            await eventually(lambda: get_condition(store.get("pods", "default", "second"), "PodScheduled"),
                             what="second unschedulable", tasks=tasks)
            store.mutate("pods", "default", "first", lambda p: p["status"].__setitem__("phase", "Succeeded"),
                         subresource="status")
            assert await eventually(
                lambda: store.get("pods", "default", "second")["spec"].get("nodeName") == "gpu-1",
                what="second bound after first finished", tasks=tasks)

    asyncio.run(scenario())


def test_extended_resource_toleration_is_added_at_admission() -> None:
    async def scenario() -> None:
        store = Store()
        cluster(store)
        async with running([Scheduler(store, None, extended_resource_toleration=True)]) as tasks:
            await asyncio.sleep(0.01)
            created = store.create("pods", pod("admitted", gpus=4))
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
                created["spec"]["tolerations"]
            node_name = await eventually(
                lambda: store.get("pods", "default", "admitted")["spec"].get("nodeName"),
                what="pod bound", tasks=tasks)
            assert node_name.startswith("gpu-")
            plain = store.create("pods", pod("cpu-only"))
            assert "tolerations" not in plain["spec"]

    asyncio.run(scenario())
