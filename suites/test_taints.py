"""Taints (marker taints): GPU nodes carry the expected taint, the scheduler enforces it, CPU nodes carry none
(the pods whose scheduling decisions are the evidence: pytest_gpucluster/gather/taints.py)."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_gpucluster.checks import taints as judge
from pytest_gpucluster.kube import nodepool
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.gather import taints as pods
from pytest_gpucluster.kube.decisions import DECISION_TIMEOUT_S, Decision, place
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.objects import GPU_RESOURCE, NodeInfo
from pytest_gpucluster.kube.probes import ProbeContext
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.taints



@pytest.fixture(scope="module")
def accepted_taints(inventory: Inventory, cluster: Cluster, gpu_profile: Profile) -> dict[str, list[judge.Taint]]:
    """Per GPU node: the taints accepted as its GPU taint (profile, by the node's flavour; on EKS Auto Mode also
    what its NodePool declares, read only where the flavour says so)."""
    flavours = {n.name: judge.flavour_of(n.labels) for n in inventory.gpu_nodes}
    pools = nodepool.taints_by_pool(cluster) if any(map(gpu_profile.gpu_taint_from_nodepool, flavours.values())) \
        else {}
    return {n.name: judge.accepted_gpu_taints(gpu_profile, n.instance_type, flavours[n.name],
                                              pools.get(n.nodepool or "")) for n in inventory.gpu_nodes}


@pytest.fixture(scope="module")
def untolerated(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext) -> dict[str, Decision]:
    """Per GPU node: a pod without any toleration, pinned to the node by hostname."""
    return place(cluster, probe_context, "taints/untolerated",
                 {n.name: pods.untolerated(n) for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def tolerated(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext,
              accepted_taints: dict[str, list[judge.Taint]]) -> dict[str, Decision]:
    """Per GPU node: a pod tolerating the GPU taints accepted for the node, requesting no GPU, pinned to it."""
    return place(cluster, probe_context, "taints/tolerated",
                 {n.name: pods.tolerated(n, accepted_taints[n.name]) for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def gpu_request_without_toleration(inventory: Inventory, cluster: Cluster,
                                   probe_context: ProbeContext) -> dict[str, Decision]:
    """Per GPU node: a pod requesting 1 GPU with no toleration of its own (ExtendedResourceToleration may add one)."""
    return place(cluster, probe_context, "taints/ert",
                 {n.name: pods.gpu_without_toleration(n) for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def gpu_request_on_cpu(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext) -> dict[str, Decision]:
    """Per CPU-only node: a pod requesting 1 GPU (tolerating the GPU taints), pinned to the node."""
    return place(cluster, probe_context, "taints/gpu-on-cpu",
                 {n.name: pods.gpu_on_cpu(n) for n in inventory.cpu_nodes})


# -- checks --------------------------------------------------------------------------------------------
def test_gpu_node_carries_gpu_taint(gpu_node: NodeInfo, gpu_profile: Profile,
                                    accepted_taints: dict[str, list[judge.Taint]], evidence: Any) -> None:
    """The node carries one of the GPU taints the profile expects (default nvidia.com/gpu:NoSchedule; on EKS
    Auto Mode the taint the node's NodePool declares)."""
    source = f"profile {gpu_profile.path}, {judge.flavour_of(gpu_node.labels)} cluster"
    enforce(judge.gpu_taint(gpu_node.id, gpu_node.taints, accepted_taints[gpu_node.name], source), evidence)


def test_pod_without_toleration_stays_pending(gpu_node: NodeInfo, untolerated: dict[str, Decision],
                                              evidence: Any) -> None:
    """A pod with no toleration, pinned to the GPU node, is refused with a FailedScheduling naming the taint."""
    decision = untolerated[gpu_node.name]
    enforce(judge.untolerated_pending(gpu_node.id, gpu_node.taints, decision.node, decision.message,
                                      DECISION_TIMEOUT_S), evidence)


def test_pod_with_toleration_is_admitted(gpu_node: NodeInfo, tolerated: dict[str, Decision], evidence: Any) -> None:
    """A pod tolerating the GPU taint(s), requesting no GPU, pinned to the node, is placed there."""
    decision = tolerated[gpu_node.name]
    enforce(judge.tolerated_admitted(gpu_node.id, gpu_node.name, gpu_node.taints, decision.node, decision.message),
            evidence)


def test_gpu_request_toleration_behaviour(gpu_node: NodeInfo, gpu_request_without_toleration: dict[str, Decision],
                                          evidence: Any) -> None:
    """A GPU-requesting pod without tolerations: with EKS's ExtendedResourceToleration it gets the
    `nvidia.com/gpu` toleration and runs; without it, it is refused by the taint. Report which; never both."""
    decision = gpu_request_without_toleration[gpu_node.name]
    enforce(judge.gpu_request_behaviour(gpu_node.id, gpu_node.taints, decision.tolerations, decision.node,
                                        decision.message, DECISION_TIMEOUT_S), evidence)


def test_gpu_pod_not_placed_on_cpu_node(cpu_node: NodeInfo, gpu_request_on_cpu: dict[str, Decision],
                                        evidence: Any) -> None:
    """A pod requesting a GPU never lands on a CPU-only node (refused for Insufficient nvidia.com/gpu)."""
    decision = gpu_request_on_cpu[cpu_node.name]
    enforce(judge.gpu_pod_on_cpu(cpu_node.id, cpu_node.allocatable.get(GPU_RESOURCE, "0"), decision.node,
                                 decision.message), evidence)


def test_cpu_node_has_no_gpu_taint(cpu_node: NodeInfo, gpu_profile: Profile, evidence: Any) -> None:
    """CPU-only nodes carry none of the GPU taints (system pods must be able to run there)."""
    gpu_keys = {t["key"] for t in gpu_profile.gpu_tolerations()}
    enforce(judge.cpu_node_untainted(cpu_node.id, cpu_node.taints, gpu_keys), evidence)
