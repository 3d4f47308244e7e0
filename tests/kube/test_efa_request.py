"""What the Karpenter latency probe asks for: EFA only where the profile requires it and a plugin serves the pool."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.gather.karpenter import efa_request
from pytest_gpucluster.kube.plugins import Plugins, admits

GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
P5_LABELS = {"node.kubernetes.io/instance-type": "p5.48xlarge", "kubernetes.io/arch": "amd64", "workload": "gpu"}


def efa_plugin(tolerations: list[dict[str, Any]], types: list[str] | None = None) -> dict[str, Any]:
    """The EFA plugin DaemonSet as its Helm chart renders it (aws/eks-charts aws-efa-k8s-device-plugin: nodeAffinity
    on the EFA-capable instance types, tolerations from the values)."""
    spec: dict[str, Any] = {"tolerations": tolerations, "containers": [{"name": "efa"}]}
    if types is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types}]}]}}}
    return {"metadata": {"name": "aws-efa-k8s-device-plugin-daemonset", "namespace": "kube-system"},
            "spec": {"template": {"spec": spec}}}


def plugins(*daemonsets: dict[str, Any]) -> Plugins:
    return Plugins(by_role={"efa": list(daemonsets)} if daemonsets else {})


def test_admits_reads_tolerations_and_node_affinity() -> None:
    tolerating = efa_plugin([{"key": "nvidia.com/gpu", "operator": "Exists"}], ["p5.48xlarge"])
    assert admits(tolerating, P5_LABELS, [GPU_TAINT]) is None
    assert admits(efa_plugin([], ["p5.48xlarge"]), P5_LABELS, [GPU_TAINT]) == "does not tolerate nvidia.com/gpu:NoSchedule"
    assert "node affinity" in str(admits(tolerating, {**P5_LABELS, "node.kubernetes.io/instance-type": "g6e.12xlarge"},
                                         [GPU_TAINT]))


def test_requests_efa_where_required_and_served() -> None:
    ask = efa_request("p5.48xlarge", 32, True, "gc-probe-x", P5_LABELS, [GPU_TAINT],
                      plugins(efa_plugin([{"key": "nvidia.com/gpu", "operator": "Exists"}], ["p5.48xlarge"])))
    assert ask.count == 32 and "admits NodePool gc-probe-x's taints and labels" in ask.why


def test_does_not_request_efa_the_profile_does_not_require() -> None:
    """The probe asked for a g6e's EFA: Karpenter attached it, no plugin served it, the node never Initialized."""
    ask = efa_request("g6e.12xlarge", 1, False, "gc-probe-x", {}, [GPU_TAINT], plugins())
    assert ask.count == 0 and "does not require EFA on g6e.12xlarge" in ask.why


def test_does_not_request_efa_no_plugin_serves_and_says_why() -> None:
    ask = efa_request("p5.48xlarge", 32, True, "gc-probe-x", P5_LABELS, [GPU_TAINT],
                      plugins(efa_plugin([{"key": "CriticalAddonsOnly", "operator": "Exists"}], ["p5.48xlarge"])))
    assert ask.count == 0
    assert "kube-system/aws-efa-k8s-device-plugin-daemonset does not tolerate nvidia.com/gpu:NoSchedule" in ask.why
    assert "would never be Initialized" in efa_request("p5.48xlarge", 32, True, "p", P5_LABELS, [], plugins()).why


def test_auto_mode_runs_the_efa_plugin_itself() -> None:
    assert efa_request("p5.48xlarge", 32, True, "p", P5_LABELS, [], Plugins(auto_mode=True)).count == 32
