"""checks/device_plugins.py: every judge on plain node, DaemonSet and pod facts."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_gpucluster.checks.device_plugins import (
    NodeFacts,
    PluginOnNode,
    PodFacts,
    gpu_sharing,
    efa_plugin,
    gfd_labels,
    gpu_allocatable,
    gpu_operator,
    nvidia_plugin,
    mig_slices,
    operator_namespace,
)
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.kube.objects import EFA_RESOURCE as EFA
from pytest_gpucluster.kube.objects import GPU_RESOURCE as GPU
from pytest_gpucluster.profile import load_profile

NAME = "ip-10-0-3-17"
ID = f"{NAME}/p5.48xlarge"
P5 = load_profile().for_instance("p5.48xlarge")
GPU_TAINT = "nvidia.com/gpu:NoSchedule"
HEALTHY = PodFacts("nvdp-abc", "Running", True, True, "Running (ready)")
CRASHING = PodFacts("nvdp-abc", "Running", False, False,
                    "Running (not ready, CrashLoopBackOff, 7 restarts, 7 in the last 10 min)")
GFD_OK = {"nvidia.com/gpu.count": "8", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
          "nvidia.com/cuda.driver-version.major": "580", "nvidia.com/cuda.driver-version.minor": "105",
          "nvidia.com/cuda.driver-version.revision": "08", "nvidia.com/cuda.driver-version.full": "580.105.08"}


def node(gpus: int = 8, efa: int = 32, labels: dict[str, str] | None = None) -> NodeFacts:
    return NodeFacts(ID, NAME, "p5.48xlarge", labels or {}, {GPU: gpus, EFA: efa}, {GPU: 8, EFA: 32})


def plugin(*pods: PodFacts, untolerated: tuple[str, ...] = (), ref: str = "nvidia-device-plugin/nvdp") -> PluginOnNode:
    return PluginOnNode(ref, "Helm chart nvidia-device-plugin-0.17.0 (release nvdp)", "desired 2, ready 2, available 2",
                        ["nvidia.com/gpu"], untolerated, pods)


# -- NVIDIA device plugin ------------------------------------------------------------------------------
def test_nvidia_plugin_passes_with_a_healthy_pod() -> None:
    verdict = nvidia_plugin(node(), [plugin(HEALTHY)], None)
    assert verdict.status is Status.PASS
    assert "Helm chart nvidia-device-plugin-0.17.0" in verdict.facts["nvidia device plugin"][0]


def test_nvidia_plugin_fails_a_crash_loop() -> None:
    verdict = nvidia_plugin(node(), [plugin(CRASHING)], None)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"NVIDIA device plugin not ready on {ID}: expected a Running, Ready plugin pod")
    assert "CrashLoopBackOff" in verdict.message and "kubectl -n nvidia-device-plugin logs <pod>" in verdict.message


def test_nvidia_plugin_names_the_taint_it_does_not_tolerate() -> None:
    verdict = nvidia_plugin(node(), [plugin(untolerated=(GPU_TAINT,))], None)
    assert verdict.status is Status.FAIL
    assert f"no pod on this node; the DaemonSet does not tolerate the node's taint(s) {GPU_TAINT}" in verdict.message


def test_nvidia_plugin_points_at_placement_when_tolerated_but_absent() -> None:
    verdict = nvidia_plugin(node(), [plugin()], None)
    assert verdict.status is Status.FAIL and "nodeSelector/affinity" in verdict.message


def test_nvidia_plugin_missing_everywhere_fails_with_the_install_command() -> None:
    verdict = nvidia_plugin(node(), [], None)
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"No NVIDIA device plugin on {ID}")
    assert "helm upgrade -i nvdp" in verdict.message


@pytest.mark.parametrize("how", ["EKS Auto Mode", "Bottlerocket"])
def test_host_plugins_are_judged_by_allocatable(how: str) -> None:
    assert nvidia_plugin(node(), [], how).status is Status.PASS
    failed = nvidia_plugin(node(gpus=0), [], how)
    assert failed.status is Status.FAIL and f"No GPUs advertised by the {how} node on {ID}" in failed.message
    assert failed.criteria[0].passed is False


def test_a_bottlerocket_node_is_judged_by_its_host_plugin_where_other_nodes_use_the_daemonset() -> None:
    """Mixed AL2023 + Bottlerocket: the Helm DaemonSet exists (for the AL2023 nodes) but has no pod on the Bottlerocket
    node, whose host runs the plugin; the decision is the node's, not the first GPU node's."""
    verdict = nvidia_plugin(node(), [plugin()], "Bottlerocket")
    assert verdict.status is Status.PASS and verdict.facts["nvidia device plugin"] == "on the host (Bottlerocket)"


# -- GPU allocatable (MIG, time-slicing) ---------------------------------------------------------------
def test_allocatable_passes_and_fails_against_the_profile() -> None:
    assert gpu_allocatable(node(), P5, "default.yaml").status is Status.PASS
    failed = gpu_allocatable(node(gpus=7), P5, "default.yaml")
    assert failed.status is Status.FAIL
    assert failed.message.startswith(f"GPU count mismatch on {ID}: expected nvidia.com/gpu allocatable 8 (profile "
                                     "gpus 8, whole GPUs (no MIG, no sharing)); observed allocatable 7, capacity 8")
    assert "dmesg | grep -i xid" in failed.message
    assert "test_nvidia_device_plugin_runs_on" in gpu_allocatable(node(gpus=0), P5, "x").message


def test_allocatable_counts_time_slicing_replicas() -> None:
    labels = {"nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing"}
    assert gpu_allocatable(node(gpus=32, labels=labels), P5, "x").status is Status.PASS
    failed = gpu_allocatable(node(gpus=8, labels=labels), P5, "x")
    assert failed.status is Status.FAIL and "GPU sharing time-slicing with 4 replicas per GPU" in failed.message


def test_allocatable_counts_single_strategy_mig_slices() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "nvidia.com/mig.strategy": "single"}
    assert gpu_allocatable(node(gpus=56, labels=labels), P5, "x").status is Status.PASS
    assert gpu_allocatable(node(gpus=8, labels=labels), P5, "x").status is Status.FAIL


def test_allocatable_mixed_mig_needs_a_device_per_gpu() -> None:
    mixed = NodeFacts(ID, NAME, "p5.48xlarge", {}, {GPU: 0, "nvidia.com/mig-1g.10gb": 8})
    assert gpu_allocatable(mixed, P5, "x").status is Status.PASS
    short = NodeFacts(ID, NAME, "p5.48xlarge", {}, {GPU: 0, "nvidia.com/mig-1g.10gb": 3})
    failed = gpu_allocatable(short, P5, "x")
    assert failed.status is Status.FAIL and failed.message.startswith(f"MIG devices missing on {ID}")


def test_allocatable_is_not_shown_for_an_unknown_instance_type() -> None:
    verdict = gpu_allocatable(node(), None, "profile.yaml")
    assert verdict.status is Status.NOT_SHOWN and "p5.48xlarge is not in the acceptance profile" in verdict.message


def test_sharing_and_mig_helpers() -> None:
    assert (mig_slices("1g.10gb"), mig_slices("2g.20gb"), mig_slices("3g.40gb"), mig_slices("7g.80gb")) == (7, 3, 2, 1)
    assert gpu_sharing({"nvidia.com/gpu.replicas": "x"}, {}).replicas == 1
    assert gpu_sharing({}, {"nvidia.com/mig-1g.10gb": 0}).mig_strategy is None


# -- GFD labels ----------------------------------------------------------------------------------------
def test_gfd_labels_pass_when_they_agree() -> None:
    assert gfd_labels(node(labels=GFD_OK), P5).status is Status.PASS


@pytest.mark.parametrize("change, words", [
    ({"nvidia.com/gpu.count": "7"}, "nvidia.com/gpu.count=7 but the profile says 8 GPUs"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, "but the profile expects 'NVIDIA H100 80GB HBM3'"),
    ({"nvidia.com/cuda.driver-version.full": "570.1.1"}, "driver version labels disagree"),
])
def test_gfd_labels_fail_each_disagreement(change: dict[str, str], words: str) -> None:
    verdict = gfd_labels(node(labels={**GFD_OK, **change}), P5)
    assert verdict.status is Status.FAIL and words in verdict.message
    assert verdict.message.startswith(f"GFD labels disagree with the node on {ID}")


def test_gfd_count_compared_with_allocatable_without_a_profile() -> None:
    assert gfd_labels(node(gpus=6, labels={"nvidia.com/gpu.count": "8"}), None).status is Status.FAIL


def test_gfd_incomplete_driver_version_fails() -> None:
    labels = {"nvidia.com/gpu.count": "8", "nvidia.com/cuda.driver.major": "580"}
    assert "no complete driver version" in gfd_labels(node(labels=labels), P5).message


def test_gfd_absent_is_not_shown() -> None:
    assert gfd_labels(node(), P5).status is Status.NOT_SHOWN


# -- GPU Operator --------------------------------------------------------------------------------------
def policy(state: str, namespace: str = "gpu-operator") -> dict[str, Any]:
    return {"metadata": {"name": "cluster-policy"}, "status": {"state": state, "namespace": namespace}}


VALIDATOR = PodFacts("nvidia-operator-validator-x", "Running", True, True, "Running (ready)")


def test_operator_ready_passes() -> None:
    assert gpu_operator(node(), [policy("ready")], [VALIDATOR]).status is Status.PASS


def test_operator_not_ready_fails_with_the_state() -> None:
    verdict = gpu_operator(node(), [policy("notReady")], [VALIDATOR])
    assert verdict.status is Status.FAIL
    assert "ClusterPolicy cluster-policy status.state='notReady'" in verdict.message
    assert "kubectl -n gpu-operator get pods" in verdict.message


def test_operator_validators_fail() -> None:
    cuda = PodFacts("nvidia-cuda-validator-x", "Failed", False, False, "Failed (not ready)")
    assert "nvidia-cuda-validator failed" in gpu_operator(node(), [policy("ready")], [cuda]).message
    stuck = PodFacts("nvidia-operator-validator-x", "Pending", False, False, "Pending (not ready, Init:0/4)")
    assert "nvidia-operator-validator not ready" in gpu_operator(node(), [policy("ready")], [stuck]).message
    assert "no validator pods on the node" in gpu_operator(node(), [policy("ready")], []).message


def test_operator_absent_is_not_shown() -> None:
    assert gpu_operator(node(), None, []).status is Status.NOT_SHOWN
    assert gpu_operator(node(), [], []).status is Status.NOT_SHOWN
    assert operator_namespace([policy("ready", "nvidia-gpu-operator")]) == "nvidia-gpu-operator"


# -- EFA device plugin ---------------------------------------------------------------------------------
EFA_POD = PodFacts("aws-efa-k8s-device-plugin-x", "Running", True, True, "Running (ready)")


def efa_plugin_pods(*pods: PodFacts, untolerated: tuple[str, ...] = ()) -> PluginOnNode:
    return plugin(*pods, untolerated=untolerated, ref="kube-system/aws-efa-k8s-device-plugin-daemonset")


def test_efa_plugin_passes_healthy_with_all_interfaces() -> None:
    verdict = efa_plugin(node(), [efa_plugin_pods(EFA_POD)], None, 32)
    assert verdict.status is Status.PASS and verdict.criteria[0].passed


def test_efa_plugin_fails_when_it_does_not_tolerate_the_gpu_taint() -> None:
    verdict = efa_plugin(node(efa=0), [efa_plugin_pods(untolerated=(GPU_TAINT,))], None, 32)
    assert verdict.status is Status.FAIL
    assert f"does not tolerate the node's taint(s) {GPU_TAINT}" in verdict.message
    assert f"advertises {EFA}=0" in verdict.message and "tolerations: [{key: nvidia.com/gpu" in verdict.message


def test_efa_plugin_fails_not_ready() -> None:
    crashing = PodFacts("aws-efa-k8s-device-plugin-x", "Running", False, False, "Running (not ready, Error)")
    verdict = efa_plugin(node(efa=0), [efa_plugin_pods(crashing)], None, 32)
    assert verdict.status is Status.FAIL and verdict.message.startswith(f"EFA device plugin not ready on {ID}")


def test_efa_plugin_fails_when_allocatable_is_below_the_profile() -> None:
    """Issue 19c: the check recorded EFA allocatable >= profile but asserted only the plugin pod's health."""
    verdict = efa_plugin(node(efa=4), [efa_plugin_pods(EFA_POD)], None, 32)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"EFA interfaces missing on {ID}: expected {EFA} allocatable >= 32 (profile "
                                      "p5.48xlarge efa); observed 4 with a healthy EFA device plugin")
    assert verdict.criteria[0].passed is False


def test_efa_on_auto_mode_is_judged_by_allocatable() -> None:
    assert efa_plugin(node(), [], "EKS Auto Mode", 32).status is Status.PASS
    assert efa_plugin(node(efa=2), [], "EKS Auto Mode", 32).status is Status.FAIL   # issue 19c
    missing = efa_plugin(node(efa=0), [], None, 32)
    assert missing.status is Status.FAIL and missing.message.startswith(f"No EFA device plugin on {ID}")
