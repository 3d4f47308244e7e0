"""Rendering fixtures/probe-pod.yaml, reading pods into ProbeResults, discovery and sampling, cleanup parsing."""
from __future__ import annotations

import kubernetes_validate
import pytest

from pytest_gpucluster.kube import cleanup, probes
from pytest_gpucluster.kube.discovery import Inventory, sample_nodes
from pytest_gpucluster.kube.objects import NodeInfo
from pytest_gpucluster.profile import load_profile

CTX = probes.ProbeContext(namespace="gpucluster-20261123-160000-abcd", run_id="20261123-160000-abcd",
                          cuda_image="nvidia/cuda:13.0.2-runtime-ubuntu22.04", timeout_s=120,
                          gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])


def render(**kwargs: object) -> dict:
    spec = probes.ProbeSpec(name="nvidia-smi", command=["sh", "-c", "nvidia-smi -L"], **kwargs)  # type: ignore[arg-type]
    return probes.render(spec, CTX, name="gc-nvidia-smi-0123456789", fleet="smi-abcdef01")


def test_rendered_pod_is_a_valid_v1_pod() -> None:
    pod = render(node="ip-10-0-3-17", gpus=8, efa=32, hugepages_2mi="5128Mi", memory="8Gi", ipc_lock=True,
                 env={"NCCL_DEBUG": "INFO"})
    kubernetes_validate.validate(pod, "1.32", strict=True)


def test_labels_deadline_restart_policy_and_namespace() -> None:
    pod = render()
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "pytest-gpucluster"
    assert labels["gpucluster.io/run"] == CTX.run_id
    assert labels["gpucluster.io/fleet"] == "smi-abcdef01" and labels["gpucluster.io/probe"] == "nvidia-smi"
    assert pod["metadata"]["namespace"] == CTX.namespace
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["activeDeadlineSeconds"] == 120 + probes.DEADLINE_SLACK_S


def test_node_pinning_uses_required_affinity_not_node_name() -> None:
    spec = render(node="ip-10-0-3-17")["spec"]
    assert "nodeName" not in spec
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["ip-10-0-3-17"]}]
    fallback = render(node="ip-10-0-3-17", pin="nodeName")["spec"]
    assert fallback["nodeName"] == "ip-10-0-3-17" and "affinity" not in fallback


def test_resources_tolerations_and_capabilities() -> None:
    container = render(gpus=8, efa=32, hugepages_2mi="5128Mi", memory="8Gi", ipc_lock=True)["spec"]["containers"][0]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == "8"
    assert limits["vpc.amazonaws.com/efa"] == requests["vpc.amazonaws.com/efa"] == "32"
    assert limits["hugepages-2Mi"] == "5128Mi" and limits["memory"] == requests["memory"] == "8Gi"
    assert container["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    plain = render()["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in plain["resources"]["limits"]
    assert plain["securityContext"]["capabilities"]["add"] == []


def test_gpu_tolerations_come_from_the_context_and_can_be_turned_off() -> None:
    assert render()["spec"]["tolerations"] == CTX.gpu_tolerations
    extra = {"key": "aws.amazon.com/efa", "operator": "Exists"}
    assert render(tolerate_gpu=False, tolerations=[extra])["spec"]["tolerations"] == [extra]


def test_untrusted_values_stay_data() -> None:
    nasty = "x\n  hostNetwork: true\n# "
    pod = render(env={"A": nasty}, image="img:1\nprivileged: true")
    assert pod["spec"]["containers"][0]["env"][0] == {"name": "A", "value": nasty}
    assert "hostNetwork" not in pod["spec"] and pod["spec"]["containers"][0]["image"].startswith("img:1\n")


def test_pod_names_are_deterministic_dns_labels() -> None:
    a = probes.pod_name("nvidia-smi", "fleet/ip-10-0-3-17", "20261123-160000-abcd")
    assert a == probes.pod_name("nvidia-smi", "fleet/ip-10-0-3-17", "20261123-160000-abcd")
    assert a != probes.pod_name("nvidia-smi", "fleet/ip-10-0-3-18", "20261123-160000-abcd")
    long = probes.pod_name("A very LONG purpose_with odd*chars " * 4, "k", "r")
    assert len(long) <= 63 and long.replace("-", "").isalnum() and long == long.lower()


def pod(phase: str, **status: object) -> dict:
    return {"metadata": {"name": "gc-x", "namespace": "ns", "creationTimestamp": "2026-11-23T16:00:00Z"},
            "spec": {"nodeName": status.pop("node", None), "containers": [{"name": "probe", "image": "img:1"}]},
            "status": {"phase": phase, **status}}


def test_image_pull_errors_are_terminal_and_name_the_image() -> None:
    p = pod("Pending", node="n1", containerStatuses=[{"state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image \"img:1\""}}}])
    terminal, reason, message = probes.classify(p)
    assert terminal and reason == "ImagePullBackOff" and "img:1" in (message or "")


def test_unschedulable_pod_reports_the_scheduler_message() -> None:
    p = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])
    result = probes.result_from_pod(p, "", [], timed_out=True)
    assert result.reason == "Unschedulable" and result.pending_reason.startswith("0/3 nodes")  # type: ignore[union-attr]
    assert not result.ok and "not scheduled" in result.describe()


def test_finished_pod_result_has_exit_code_and_timings() -> None:
    p = pod("Succeeded", node="n1", conditions=[
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T16:00:01Z"}],
        containerStatuses=[{"state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                     "startedAt": "2026-11-23T16:00:05Z",
                                                     "finishedAt": "2026-11-23T16:00:09Z"}}}])
    result = probes.result_from_pod(p, "GPU 0: NVIDIA H100", [], timed_out=False)
    assert result.ok and result.exit_code == 0 and result.node == "n1"
    t = result.timings
    assert t["scheduled"] - t["created"] == 1 and t["finished"] - t["started"] == 4


def node(name: str, itype: str, labels: dict | None = None, **status: object) -> dict:
    return {"metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": itype, **(labels or {})}},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}], **status}}


def test_probes_run_without_the_cuda_requirement_unless_they_need_cuda() -> None:
    """A probe that runs no CUDA (nvidia-smi, isolation, kernel log, Karpenter) must not be refused by the runtime
    for the CUDA image's NVIDIA_REQUIRE_CUDA (CUDA 13 images on driver 560): NVIDIA_DISABLE_REQUIRE=true by default."""
    env = {e["name"]: e["value"] for e in render()["spec"]["containers"][0]["env"]}
    assert env == {"NVIDIA_DISABLE_REQUIRE": "true"}
    assert render(needs_cuda=True)["spec"]["containers"][0]["env"] == []
    mine = render(env={"NVIDIA_DISABLE_REQUIRE": "false", "X": "1"})["spec"]["containers"][0]["env"]
    assert {e["name"]: e["value"] for e in mine} == {"NVIDIA_DISABLE_REQUIRE": "false", "X": "1"}


def test_gpu_nodes_are_found_by_allocatable_labels_or_profile() -> None:
    profile = load_profile()
    by_alloc = NodeInfo.from_node(node("a", "x1.large", allocatable={"nvidia.com/gpu": "4"}))
    by_gfd = NodeInfo.from_node(node("b", "x1.large", {"nvidia.com/gpu.present": "true"}))
    by_karpenter = NodeInfo.from_node(node("c", "x1.large", {"karpenter.k8s.aws/instance-gpu-count": "1"}))
    # Device plugin broken: allocatable says nothing, but the profile knows g5.xlarge has a GPU.
    by_profile = NodeInfo.from_node(node("d", "g5.xlarge"), profile)
    cpu = NodeInfo.from_node(node("e", "m5.large"), profile)
    assert all(n.is_gpu for n in (by_alloc, by_gfd, by_karpenter, by_profile))
    assert not cpu.is_gpu and not cpu.is_efa
    assert NodeInfo.from_node(node("f", "p5.48xlarge"), profile).is_efa
    assert by_profile.id == "d/g5.xlarge" and by_profile.ready


def test_efa_nodes_are_the_nodes_with_efa_attached_or_required() -> None:
    """EFA is attached when asked for, not because the type can have it: a g6e.12xlarge without EFA, whose type the
    profile does not require EFA on, is not an EFA node (it was judged as one and failed every EFA check)."""
    profile = load_profile()
    bare = NodeInfo.from_node(node("a", "g6e.12xlarge", allocatable={"nvidia.com/gpu": "4"}), profile)
    assert not bare.is_efa and bare.efa_not_needed and bare.expected_efa == 1
    advertised = NodeInfo.from_node(node("b", "g6e.12xlarge", allocatable={"vpc.amazonaws.com/efa": "1"}), profile)
    launched = NodeInfo.from_node(node("c", "g6e.12xlarge"), profile)
    launched.efa_launched = 1          # the NodeClaim says the launch attached it, the plugin never registered it
    required = NodeInfo.from_node(node("d", "p5.48xlarge"), profile)
    assert advertised.is_efa and launched.is_efa and required.is_efa and required.efa_required
    inventory = Inventory([bare, required], [bare, required], [required], [], total_gpu_nodes=2, total_efa_nodes=1)
    assert "not EFA nodes (no EFA attached, not required on their type by the profile): g6e.12xlarge x1" in \
        inventory.summary_lines()


def test_sampling_is_deterministic_per_instance_type() -> None:
    nodes = [NodeInfo.from_node(node(f"ip-10-0-{i}-1", t)) for i in range(20) for t in ("p5.48xlarge", "g5.xlarge")
             if (i % 2 == 0) == (t == "p5.48xlarge")]
    first = sample_nodes(nodes, 3)
    assert [n.name for n in first] == [n.name for n in sample_nodes(list(reversed(nodes)), 3)]
    assert sorted(n.instance_type for n in first) == ["g5.xlarge"] * 3 + ["p5.48xlarge"] * 3
    assert len(sample_nodes(nodes, None)) == len(nodes)


@pytest.mark.parametrize("text, seconds", [("2h", 7200), ("90m", 5400), ("1d", 86400), ("1h30m", 5400), ("0s", 0)])
def test_cleanup_durations(text: str, seconds: float) -> None:
    assert cleanup.parse_duration(text) == seconds


def test_cleanup_rejects_bad_durations() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        cleanup.parse_duration("2 hours")


def test_run_age_comes_from_the_run_id_then_creation_timestamp() -> None:
    labelled = {"metadata": {"labels": {"gpucluster.io/run": "20261123-160000-abcd"},
                             "creationTimestamp": "2026-11-24T00:00:00Z"}}
    unlabelled = {"metadata": {"creationTimestamp": "2026-11-24T00:00:00Z"}}
    assert cleanup.run_started(labelled) == 1795449600.0
    assert cleanup.run_started(unlabelled) == 1795478400.0
