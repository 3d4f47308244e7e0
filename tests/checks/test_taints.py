"""checks/taints.py: every verdict of the taint judges, on plain node and scheduler data."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_gpucluster.checks import taints as judge
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.profile import load_profile

NVIDIA = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
WORKLOAD = {"key": "gpu-workload", "value": "true", "effect": "NoSchedule"}
NODE = "ip-10-0-3-17/p5.48xlarge"
CURRENT = "0/4 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: }, 3 node(s) didn't match " \
          "Pod's node affinity/selector."
OLDER = "0/4 nodes are available: 1 node(s) had taint {nvidia.com/gpu: }, that the pod didn't tolerate."
INSUFFICIENT = "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node affinity."


# -- which taint is the GPU taint (issue 19e) ----------------------------------------------------------
def test_a_standard_cluster_with_a_gpu_workload_taint_and_no_profile_entry_is_flagged() -> None:
    profile = load_profile()
    accepted = judge.accepted_gpu_taints(profile, "p5.48xlarge", judge.flavour_of({}), nodepool_taints=[WORKLOAD])
    verdict = judge.gpu_taint(NODE, [WORKLOAD], accepted, "profile default")
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"Missing GPU taint on {NODE}: expected one of nvidia.com/gpu:NoSchedule")
    assert "observed gpu-workload=true:NoSchedule" in verdict.message and "set cluster.gpu_taints" in verdict.message


def test_auto_mode_accepts_the_taint_its_nodepool_declares() -> None:
    profile = load_profile()
    auto = judge.flavour_of({"eks.amazonaws.com/compute-type": "auto"})
    assert auto == "auto-mode"
    accepted = judge.accepted_gpu_taints(profile, "p5.48xlarge", auto, nodepool_taints=[WORKLOAD])
    assert judge.gpu_taint(NODE, [WORKLOAD], accepted, "profile").ok
    # ... but a node missing what its NodePool declares still fails
    assert judge.gpu_taint(NODE, [], accepted, "profile").status is Status.FAIL


def test_auto_mode_reading_from_the_nodepool_can_be_turned_off(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("cluster:\n  flavours:\n    auto-mode: {gpu_taint_from_nodepool: false}\n")
    accepted = judge.accepted_gpu_taints(load_profile(user), "p5.48xlarge", "auto-mode", [WORKLOAD])
    assert judge.gpu_taint(NODE, [WORKLOAD], accepted, "profile").status is Status.FAIL


def test_a_flavour_with_its_own_taints_and_an_unknown_flavour_key(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("cluster:\n  flavours:\n    auto-mode: {gpu_taints: [{key: dedicated, value: gpu}]}\n")
    profile = load_profile(user)
    assert profile.expected_taints("p5.48xlarge", "auto-mode") == [{"key": "dedicated", "value": "gpu"}]
    assert {"key": "dedicated", "operator": "Exists"} in profile.gpu_tolerations()
    user.write_text("cluster:\n  flavours:\n    gke: {gpu_taints: []}\n")
    with pytest.raises(pytest.UsageError, match="unknown key 'gke'"):
        load_profile(user)


def test_expected_value_and_effect_are_matched_by_kubernetes_rules() -> None:
    assert judge.accepts({"key": "k"}, {"key": "k", "value": "x", "effect": "NoExecute"})
    assert not judge.accepts({"key": "k", "value": "y"}, {"key": "k", "value": "x", "effect": "NoSchedule"})
    assert not judge.accepts({"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"})


# -- the untolerated pod (issue 19c) -------------------------------------------------------------------
@pytest.mark.parametrize("message", [CURRENT, OLDER, "0/4 nodes are available: 1 node(s) had untolerated taint(s)."])
def test_refusal_by_the_taint_in_every_scheduler_wording_passes(message: str) -> None:
    assert judge.untolerated_pending(NODE, [NVIDIA], None, message, 60).ok


def test_insufficient_gpu_is_not_a_refusal_by_the_taint() -> None:
    verdict = judge.untolerated_pending(NODE, [NVIDIA], None, INSUFFICIENT, 60)
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith(f"Pod refused for another reason than its taint on {NODE}: expected the "
                                      "FailedScheduling message to name an untolerated taint (nvidia.com/gpu:NoSchedule)")


def test_a_refusal_naming_another_nodes_taint_only_fails() -> None:
    message = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}."
    assert judge.untolerated_pending(NODE, [NVIDIA], None, message, 60).status is Status.FAIL


def test_untolerated_pod_bound_or_undecided_fails() -> None:
    bound = judge.untolerated_pending(NODE, [], "ip-10-0-3-17", None, 60)
    assert bound.status is Status.FAIL and bound.message.startswith(f"Taint not enforced on {NODE}")
    assert "observed it bound to ip-10-0-3-17 (node taints: none)" in bound.message
    undecided = judge.untolerated_pending(NODE, [NVIDIA], None, None, 60)
    assert undecided.status is Status.FAIL and "within 60s" in undecided.message


# -- the tolerated pod, ERT, CPU nodes -----------------------------------------------------------------
def test_tolerated_pod_admitted_or_not() -> None:
    assert judge.tolerated_admitted(NODE, "n1", [NVIDIA], "n1", None).ok
    refused = judge.tolerated_admitted(NODE, "n1", [NVIDIA, WORKLOAD], None, CURRENT)
    assert refused.status is Status.FAIL and "add it to cluster.gpu_taints" in refused.message


def test_ert_admitted_refused_by_taint_not_shown_and_wrong_reason() -> None:
    ert = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    admitted = judge.gpu_request_behaviour(NODE, [NVIDIA], ert, "n1", None, 60)
    assert admitted.ok and admitted.facts["behaviour"].startswith("ExtendedResourceToleration active")
    ignored = judge.gpu_request_behaviour(NODE, [NVIDIA], [], "n1", None, 60)
    assert ignored.status is Status.FAIL and ignored.message.startswith("Scheduler ignored taints")
    assert judge.gpu_request_behaviour(NODE, [NVIDIA], [], None, CURRENT, 60).ok
    assert judge.gpu_request_behaviour(NODE, [NVIDIA], [], None, INSUFFICIENT, 60).status is Status.NOT_SHOWN
    other = judge.gpu_request_behaviour(NODE, [NVIDIA], [], None, "0/4 nodes are available: 4 Too many pods.", 60)
    assert other.status is Status.FAIL and "for another reason than a taint" in other.message


def test_gpu_pod_on_cpu_node_and_cpu_node_taints() -> None:
    assert judge.gpu_pod_on_cpu("cpu/m6i.2xlarge", "0", None, INSUFFICIENT).ok
    placed = judge.gpu_pod_on_cpu("cpu/m6i.2xlarge", "8", "cpu", None)
    assert placed.status is Status.FAIL and "advertises nvidia.com/gpu=8" in placed.message
    assert judge.gpu_pod_on_cpu("cpu/m6i.2xlarge", "0", None, "Too many pods").status is Status.FAIL
    assert judge.cpu_node_untainted("cpu/m6i.2xlarge", [], {"nvidia.com/gpu"}).ok
    tainted = judge.cpu_node_untainted("cpu/m6i.2xlarge", [NVIDIA], {"nvidia.com/gpu"})
    assert tainted.status is Status.FAIL and tainted.message.startswith("GPU taint on CPU-only node")
