"""Device plugins (marker gpu): NVIDIA device plugin, GPU allocatable, GFD labels, GPU Operator, EFA device plugin.

The cluster is read here; pytest_gpucluster/checks/device_plugins.py judges."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_gpucluster.checks import device_plugins as judge
from pytest_gpucluster.checks.device_plugins import NodeFacts, PluginOnNode, PodFacts
from pytest_gpucluster.kube import errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.objects import NodeInfo, phase, pod_ready
from pytest_gpucluster.kube.placement import BLOCKING_EFFECTS
from pytest_gpucluster.kube.plugins import (
    Plugins,
    ds_ref,
    ds_rollout,
    ds_tolerations,
    install_method,
    plugin_healthy,
    pod_state,
)
from pytest_gpucluster.kube.quantity import count
from pytest_gpucluster.kube.taints import taint_text, tolerates
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.gpu


# -- gathering -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plugins(device_plugins: Plugins) -> Plugins:
    """Every device-plugin DaemonSet with its pods, once they settled (the session's one read)."""
    return device_plugins




def node_now(cluster: Cluster, node: NodeInfo) -> NodeFacts:
    """The node as it is now (the inventory is a snapshot from collection time)."""
    obj = cluster.get("nodes", node.name)
    status = obj.get("status") or {}
    return NodeFacts(node.id, node.name, node.instance_type, dict(obj["metadata"].get("labels") or {}),
                     {k: count(v) for k, v in (status.get("allocatable") or {}).items()},
                     {k: count(v) for k, v in (status.get("capacity") or {}).items()})


def pod_facts(pod: dict[str, Any], ready_since: float | None = None) -> PodFacts:
    return PodFacts(pod["metadata"]["name"], phase(pod), pod_ready(pod),
                    plugin_healthy(pod, ready_since=ready_since), pod_state(pod, ready_since=ready_since))


def on_node(plugins: Plugins, role: str, node: NodeInfo) -> list[PluginOnNode]:
    """The role's DaemonSets as the node sees them: tolerations, the node's taints they miss, their pods there."""
    blocking = [t for t in node.taints if t.get("effect") in BLOCKING_EFFECTS]
    return [PluginOnNode(ds_ref(ds), install_method(ds), ds_rollout(ds),
                         [t.get("key", "*") for t in ds_tolerations(ds)],
                         [taint_text(t) for t in blocking if not tolerates(ds_tolerations(ds), t)],
                         [pod_facts(p, node.ready_since) for p in plugins.pods_on(ds, node.name)])
            for ds in plugins.daemonsets(role)]


# -- checks --------------------------------------------------------------------------------------------
def test_nvidia_device_plugin_runs_on(gpu_node: NodeInfo, plugins: Plugins, cluster: Cluster, evidence: Any) -> None:
    """A Ready NVIDIA device-plugin pod on the node (Helm, static or GPU Operator); Auto Mode: judged by allocatable."""
    daemonsets = on_node(plugins, "nvidia", gpu_node)
    if daemonsets:
        evidence.attach(f"NVIDIA device plugin DaemonSets seen from {gpu_node.name}",
                        "\n".join(judge.describe_plugins(daemonsets)))
    enforce(judge.nvidia_plugin(node_now(cluster, gpu_node), daemonsets,
                                      plugins.host_plugin("nvidia", gpu_node.name)), evidence)


def test_gpu_allocatable_matches_profile(gpu_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                         evidence: Any) -> None:
    """nvidia.com/gpu allocatable equals the profile's GPU count (MIG and time-slicing recognised and reported)."""
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    node = node_now(cluster, gpu_node) if inst is not None and inst.gpus else NodeFacts(
        gpu_node.id, gpu_node.name, gpu_node.instance_type)
    enforce(judge.gpu_allocatable(node, inst, gpu_profile.path), evidence)


def test_gfd_labels_agree_with_node(gpu_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                    evidence: Any) -> None:
    """GPU Feature Discovery labels (when present) agree with allocatable, the profile's product and each other."""
    node = node_now(cluster, gpu_node)
    gfd = judge.gfd_labels_of(node.labels)
    if gfd:
        evidence.attach(f"GFD labels of {gpu_node.name}", "\n".join(f"{k}={v}" for k, v in sorted(gfd.items())))
    enforce(judge.gfd_labels(node, gpu_profile.for_instance(gpu_node.instance_type)), evidence)


def test_gpu_operator_ready_on(gpu_node: NodeInfo, cluster: Cluster, evidence: Any) -> None:
    """GPU Operator (when installed): ClusterPolicy state `ready`, validator pods succeeded on the node."""
    try:
        policies: list[dict[str, Any]] | None = cluster.items("clusterpolicies.nvidia.com")
    except errors.NotFound:
        policies = None
    validators = [] if not policies else [
        pod_facts(p) for p in cluster.items("pods", judge.operator_namespace(policies),
                                            field_selector=f"spec.nodeName={gpu_node.name}")
        if "validator" in p["metadata"]["name"]]
    node = NodeFacts(gpu_node.id, gpu_node.name, gpu_node.instance_type)
    enforce(judge.gpu_operator(node, policies, validators), evidence)


@pytest.mark.efa
def test_efa_device_plugin_runs_on(efa_node: NodeInfo, plugins: Plugins, cluster: Cluster, evidence: Any) -> None:
    """EFA device plugin tolerates the node's taints and runs on every EFA-capable node (Auto Mode: allocatable),
    and the node advertises the profile's EFA interfaces."""
    verdict = judge.efa_plugin(node_now(cluster, efa_node), on_node(plugins, "efa", efa_node),
                                     plugins.host_plugin("efa", efa_node.name), efa_node.expected_efa)
    enforce(verdict, evidence)
