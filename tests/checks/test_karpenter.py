"""checks/karpenter.py: Karpenter's requirement semantics per well-known label, NodePool readiness, node class,
taints, limits and the provisioning budgets, on plain NodePool dicts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_gpucluster.checks import karpenter as judge
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.kube.objects import ZONE_LABEL
from pytest_gpucluster.profile import load_profile

PROFILE = load_profile()
FITS, BLOCKS, UNKNOWN = judge.FITS, judge.BLOCKS, judge.UNKNOWN
READY = {"conditions": [{"type": t, "status": "True"} for t in ("ValidationSucceeded", "NodeClassReady", "Ready")]}


@dataclass
class Node:
    instance_type: str
    labels: dict[str, str] = field(default_factory=dict)
    capacity: dict[str, str] = field(default_factory=dict)


def pool(name: str = "gpu", *reqs: dict[str, Any], status: dict[str, Any] | None = None, weight: int = 0,
         taints: list[dict[str, Any]] | None = None, group: str = "karpenter.k8s.aws",
         limits: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": READY if status is None else status,
            "spec": {"weight": weight, "limits": limits or {}, "template": {"spec": {
                "requirements": list(reqs), "taints": taints if taints is not None else
                [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
                "nodeClassRef": {"group": group, "kind": "EC2NodeClass", "name": "gpu"}}}}}


def req(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": op, "values": list(values)}


P5 = judge.instance_facts("p5.48xlarge", 8, "NVIDIA H100 80GB HBM3", None)
ZONES = {ZONE_LABEL: {"us-west-2a"}}


# -- 19b: can-launch under Karpenter's semantics ---------------------------------------------------------
@pytest.mark.parametrize("requirement, expected", [
    (req("node.kubernetes.io/instance-type", "In", "p5.48xlarge"), FITS),
    (req("node.kubernetes.io/instance-type", "In", "g5.48xlarge"), BLOCKS),
    (req("karpenter.k8s.aws/instance-family", "In", "p5", "p4d"), FITS),
    (req("eks.amazonaws.com/instance-family", "NotIn", "p5"), BLOCKS),
    (req("karpenter.k8s.aws/instance-category", "In", "p", "g"), FITS),
    (req("karpenter.k8s.aws/instance-generation", "Gt", "4"), FITS),
    (req("eks.amazonaws.com/instance-generation", "Gt", "5"), BLOCKS),
    (req("karpenter.k8s.aws/instance-generation", "Lt", "6"), FITS),
    (req("karpenter.k8s.aws/instance-size", "In", "48xlarge"), FITS),
    (req("karpenter.k8s.aws/instance-gpu-name", "In", "a100"), BLOCKS),
    (req("eks.amazonaws.com/instance-gpu-name", "In", "h100"), FITS),
    (req("karpenter.k8s.aws/instance-gpu-count", "Gt", "7"), FITS),
    (req("karpenter.k8s.aws/instance-gpu-count", "DoesNotExist"), BLOCKS),
    (req("karpenter.k8s.aws/instance-gpu-manufacturer", "In", "nvidia"), FITS),
    (req("kubernetes.io/arch", "In", "amd64"), FITS),
    (req("kubernetes.io/arch", "In", "arm64"), BLOCKS),
    (req("kubernetes.io/os", "In", "linux"), FITS),
    (req("karpenter.sh/capacity-type", "In", "spot", "on-demand"), FITS),
    (req("karpenter.sh/capacity-type", "In", "bogus"), BLOCKS),
    (req("topology.kubernetes.io/zone", "In", "us-west-2a"), FITS),
    (req("topology.kubernetes.io/zone", "In", "us-east-1a"), UNKNOWN),   # other zones may offer the type
    # facts only a live node shows: unknown here, never "fits"
    (req("karpenter.k8s.aws/instance-gpu-memory", "Gt", "40000"), UNKNOWN),
    (req("karpenter.k8s.aws/instance-memory", "Gt", "1000"), UNKNOWN),
    (req("eks.amazonaws.com/instance-cpu", "In", "192"), UNKNOWN),
    (req("karpenter.k8s.aws/instance-network-bandwidth", "Gt", "100000"), UNKNOWN),
    # a well-known domain the judge does not know: cannot tell (the old check read it as "fits")
    (req("karpenter.k8s.aws/instance-hypervisor", "In", "nitro"), UNKNOWN),
    (req("node.kubernetes.io/some-future-label", "Exists"), UNKNOWN),
    # a user label never blocks: Karpenter puts it on the node
    (req("team", "In", "ml"), FITS),
    (req("example.com/workload", "DoesNotExist"), FITS),
])
def test_requirement_is_read_as_karpenter_does(requirement: dict[str, Any], expected: str) -> None:
    assert judge.evaluate(requirement, P5, ZONES)[0] == expected


def test_live_node_labels_supply_the_facts_the_profile_lacks() -> None:
    live = {"karpenter.k8s.aws/instance-gpu-memory": "81920", "karpenter.k8s.aws/instance-cpu": "192",
            "topology.kubernetes.io/zone": "us-west-2a"}       # zone: not an instance fact
    facts = judge.instance_facts("p5.48xlarge", 8, "NVIDIA H100 80GB HBM3", live)
    assert judge.evaluate(req("karpenter.k8s.aws/instance-gpu-memory", "Gt", "40000"), facts, {})[0] == FITS
    assert judge.evaluate(req("karpenter.k8s.aws/instance-cpu", "Lt", "100"), facts, {})[0] == BLOCKS
    assert "topology.kubernetes.io/zone" not in facts


def test_instance_facts_from_the_name_and_profile() -> None:
    assert judge.gpu_name("Tesla T4") == "t4" and judge.gpu_name("NVIDIA A100-SXM4-40GB") == "a100"
    g5g = judge.instance_facts("g5g.16xlarge", 2, "NVIDIA T4G", None)
    assert g5g["kubernetes.io/arch"] == "arm64" and g5g["karpenter.k8s.aws/instance-category"] == "g"
    assert judge.instance_facts("p5en.48xlarge", 8, None, None)["eks.amazonaws.com/instance-generation"] == "5"


def test_no_nodepool_admitting_the_type_fails_naming_each_requirement() -> None:
    targets = judge.pool_targets([pool("gpu", req("node.kubernetes.io/instance-type", "In", "g5.48xlarge"))],
                                 [Node("p5.48xlarge")], PROFILE)
    verdict = judge.can_launch(targets[0])
    assert verdict.status is Status.FAIL and targets[0].id == "no-nodepool/p5.48xlarge"
    assert verdict.message.startswith("No NodePool can launch p5.48xlarge: expected a NodePool whose requirements")
    assert "gpu: requirement node.kubernetes.io/instance-type In ['g5.48xlarge']" in verdict.message


def test_a_custom_label_requirement_does_not_block_the_launch() -> None:
    targets = judge.pool_targets([pool("gpu", req("team", "In", "ml"))], [Node("p5.48xlarge")], PROFILE)
    assert targets[0].name == "gpu" and judge.can_launch(targets[0]).ok


def test_an_unjudgeable_requirement_is_not_shown_and_a_certain_fit_is_preferred() -> None:
    unknown = pool("big", req("karpenter.k8s.aws/instance-hypervisor", "In", "nitro"), weight=50)
    targets = judge.pool_targets([unknown], [Node("p5.48xlarge")], PROFILE)
    verdict = judge.can_launch(targets[0])
    assert verdict.status is Status.NOT_SHOWN and "instance-hypervisor" in verdict.message
    both = judge.pool_targets([unknown, pool("gpu", req("karpenter.k8s.aws/instance-family", "In", "p5"))],
                              [Node("p5.48xlarge")], PROFILE)
    assert both[0].name == "gpu" and judge.can_launch(both[0]).ok


def test_weight_orders_nodepools_and_scale_from_zero_keeps_admitted_types() -> None:
    pools = [pool("low", weight=1), pool("high", weight=10)]
    assert judge.pool_targets(pools, [Node("p5.48xlarge")], PROFILE)[0].name == "high"
    only_g6 = judge.pool_targets([pool("gpu", req("node.kubernetes.io/instance-type", "In", "g6.12xlarge"))], [],
                                 PROFILE)
    assert [t.id for t in only_g6] == ["gpu/g6.12xlarge"]


# -- 19a: NodePool readiness ----------------------------------------------------------------------------
def _target(**kw: Any) -> judge.PoolTarget:
    return judge.PoolTarget("p5.48xlarge", pool(**kw))


def test_nodepool_without_a_ready_condition_fails() -> None:
    verdict = judge.can_launch(_target(status={}))
    assert verdict.status is Status.FAIL
    assert "not Ready: expected status Ready=True; observed no Ready condition: the Karpenter controller has not " \
           "reconciled this NodePool" in verdict.message


def test_nodepool_ready_false_fails_and_true_passes() -> None:
    failing = {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeClassNotReady", "message": "x"}]}
    verdict = judge.can_launch(_target(status=failing))
    assert verdict.status is Status.FAIL and "observed False NodeClassNotReady: x" in verdict.message
    assert judge.can_launch(_target()).ok


# -- node class, taints, limits ------------------------------------------------------------------------
def test_nodeclass_unknown_missing_not_ready_ready() -> None:
    target = _target()
    ref = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}
    assert "unknown node class" in judge.nodeclass_ready(target, {"kind": "X"}, None, None, {}).message
    assert "it does not exist" in judge.nodeclass_ready(target, ref, "k", None, {}).message
    bad = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "SubnetsNotFound"}]}}
    verdict = judge.nodeclass_ready(target, ref, "k", bad, {"Ready": "False SubnetsNotFound"})
    assert "EC2NodeClass gpu of NodePool gpu (for p5.48xlarge) is not Ready: expected Ready=True; observed False " \
           "SubnetsNotFound" in verdict.message
    assert judge.nodeclass_ready(target, ref, "k", {"status": READY}, {}).ok


def test_nodepool_taints_missing_extra_and_auto_mode() -> None:
    assert judge.nodepool_taints(_target(), PROFILE).ok
    none = judge.nodepool_taints(_target(taints=[]), PROFILE)
    assert "none of the profile's GPU taints (non-GPU pods could land on GPU nodes)" in none.message
    extra = judge.nodepool_taints(_target(taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"},
                                                  {"key": "example.com/dedicated", "effect": "NoSchedule"}]), PROFILE)
    assert "adds example.com/dedicated:NoSchedule, which GPU pods tolerating only the profile's taints" in extra.message
    workload = [{"key": "gpu-workload", "value": "true", "effect": "NoSchedule"}]
    assert judge.nodepool_taints(_target(taints=workload, group="eks.amazonaws.com"), PROFILE).ok
    assert judge.nodepool_taints(_target(taints=workload), PROFILE).status is Status.FAIL   # 19e: standard cluster


def test_limits_room_and_full() -> None:
    assert judge.limits_room(_target(limits={"nvidia.com/gpu": "64"}), 8).ok
    full = _target(limits={"nvidia.com/gpu": "16"})
    assert full.nodepool is not None
    full.nodepool["status"]["resources"] = {"nvidia.com/gpu": "16"}
    verdict = judge.limits_room(full, 8)
    assert verdict.message.startswith("NodePool gpu has no room for another p5.48xlarge")
    assert "observed nvidia.com/gpu: 16 in use + 8 > limit 16" in verdict.message
    assert judge.limits_room(_target(limits={"memory": "1Ti"}), 8).facts["memory: one more node"].startswith("unknown")


# -- provisioning budgets ------------------------------------------------------------------------------
def test_provisioning_budget_overrun_names_the_slowest_phase() -> None:
    watch = {"pod created": 0.0, "NodeClaim created": 1.0, "Launched": 2.0, "Registered": 22.0, "Node Ready": 23.0,
             "Initialized": 24.0, "container started": 25.0}
    verdict = judge.provisioning("p5.48xlarge", "gpu", "gc-probe-x", watch, {"registered": 10, "total": 60}, "profile",
                                 26.0, None, [], 60)
    assert verdict.status is Status.FAIL
    assert "registered 21.0s > 10s (NodeClaim created -> Registered; slowest phase: boot and register 20.0s)" in \
        verdict.message
    ok = judge.provisioning("p5.48xlarge", "gpu", "x", watch, {"total": 60}, "profile", 26.0, None, [], 60)
    assert ok.ok and ok.criteria[0].value == 25.0


def test_provisioning_stall_and_leftovers_fail() -> None:
    watch = {"pod created": 0.0, "NodeClaim created": 1.0}
    verdict = judge.provisioning("p5.48xlarge", "gpu", "x", watch, {"launched": 5}, "profile", 9.0,
                                 "NodeClaim never Launched: InsufficientCapacityError", ["nodes/n1"], 60)
    assert "stalled: NodeClaim never Launched" in verdict.message
    assert "launched 8.0s > 5s (NodeClaim created -> Launched; not reached: stuck 8.0s after NodeClaim created)" in \
        verdict.message and "scale-down: still present 60s after deleting the NodePool: nodes/n1" in verdict.message


def test_each_budget_criterion_says_where_its_number_comes_from() -> None:
    """The profile's sources["provisioning_budget_s"] (a measured figure, Karpenter's docs or site policy) travels
    into every budget criterion, so the report shows it beside the threshold."""
    from pytest_gpucluster.profile import load_profile
    inst = load_profile().for_instance("p6-b200.48xlarge")
    assert inst is not None
    origin = inst.sources["provisioning_budget_s"]
    assert origin.startswith("site policy: set yours")
    watch = {"pod created": 0.0, "NodeClaim created": 1.0, "Launched": 2.0, "Registered": 22.0, "Node Ready": 23.0,
             "Initialized": 24.0, "container started": 25.0}
    verdict = judge.provisioning("p6-b200.48xlarge", "gpu", "x", watch, inst.provisioning_budget_s,
                                 "profile p6-b200.48xlarge provisioning_budget_s", 26.0, None, [], 1200, origin)
    assert verdict.ok and {c.name for c in verdict.criteria} >= {"budget launched: NodeClaim created -> Launched"}
    for crit in verdict.criteria:
        assert crit.source.startswith("profile p6-b200.48xlarge provisioning_budget_s.")
        assert crit.source.endswith(f"({origin})"), crit.source
    measured = judge.provisioning("p5.48xlarge", "gpu", "x", watch, {"total": 60}, "profile", 26.0, None, [], 60,
                                  "measured: 2x p5.48xlarge, 2026-01-05 baseline")
    assert measured.criteria[0].source == "profile.total (measured: 2x p5.48xlarge, 2026-01-05 baseline)"
    unstated = judge.provisioning("p5.48xlarge", "gpu", "x", watch, {"total": 60}, "profile", 26.0, None, [], 60)
    assert unstated.criteria[0].source == "profile.total"
