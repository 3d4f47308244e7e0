"""Each AWS judgement passes on the healthy account and fails, with a message saying what to fix, on its fault."""
from __future__ import annotations

from typing import Callable

import pytest

from pytest_gpucluster.aws import ec2
from pytest_gpucluster.aws.gather import NodeRef, take_snapshot
from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks import aws as checks
from pytest_gpucluster.sim.aws import AwsSim

from .conftest import CLUSTER, node_refs, session_for

DISCOVERY = [{"tags": {"karpenter.sh/discovery": CLUSTER}}]


def _nodeclass(role: str = f"KarpenterNodeRole-{CLUSTER}") -> checks.NodeClassRefs:
    return checks.nodeclass_refs({"kind": "EC2NodeClass", "metadata": {"name": "gpu"}, "spec": {
        "role": role, "subnetSelectorTerms": DISCOVERY, "securityGroupSelectorTerms": DISCOVERY}})


def _efa_nodes(sim: AwsSim) -> list[NodeRef]:
    return [n for n in node_refs(sim) if n.expected_efa > 0]


def test_healthy_account_passes_every_judgement(healthy: AwsSim) -> None:
    session = session_for(healthy)
    snap = take_snapshot(session, node_refs(healthy))
    judgements = []
    for node in _efa_nodes(healthy):
        judgements.append(checks.efa_support(node, snap.instance_types.get(node.instance_type)))
        judgements.append(checks.efa_security_groups(node, snap.instances.get(node.instance_id or ""),
                                                           snap.security_groups))
    for node in node_refs(healthy):
        judgements.append(checks.instance_running(node, snap.instances.get(node.instance_id or "")))
    refs = _nodeclass()
    for kind, terms in (("subnet", refs.subnet_terms), ("security-group", refs.security_group_terms)):
        judgements.append(checks.selector_terms(refs, kind, ec2.resolve_selector_terms(session, kind, terms)))
    judgements.append(checks.node_role(refs, ec2.get_role(session, refs.role or "")))
    assert [j.message for j in judgements if not j.ok] == []
    assert len(judgements) == 3 * 2 + 4 + 3
    running = [j for j in judgements if j.subject.startswith("EC2 instance of gpu-p5-0")][0]
    assert running.facts["launch_time"] and running.facts["instance_id"] == healthy.instance_ids["gpu-p5-0"]


def test_no_efa_support_fails_the_instance_type_check(start_sim: Callable[..., AwsSim]) -> None:
    sim = start_sim({"aws-no-efa-support": {"instance_types": ["p5.48xlarge"]}})
    snap = take_snapshot(session_for(sim), node_refs(sim))
    verdicts = {n.name: checks.efa_support(n, snap.instance_types.get(n.instance_type)) for n in _efa_nodes(sim)}
    assert {name: v.ok for name, v in verdicts.items()} == {"gpu-p5-0": False, "gpu-p5-1": False, "gpu-p4d-0": True}
    message = verdicts["gpu-p5-0"].message
    assert "expected EFA support with 32 interface(s) (profile)" in message
    assert "EC2 says p5.48xlarge does not support EFA" in message and "NodePool" in message


def test_profile_expecting_more_efa_than_ec2_allows_fails(healthy: AwsSim) -> None:
    node = NodeRef("gpu-p4d-0", "p4d.24xlarge", healthy.provider_id("gpu-p4d-0"), expected_efa=8)
    info = ec2.describe_instance_types(session_for(healthy), ["p4d.24xlarge"])["p4d.24xlarge"]
    verdict = checks.efa_support(node, info)
    assert not verdict.ok and "at most 4 EFA interface(s)" in verdict.message


def test_unknown_instance_type_is_reported_not_raised(healthy: AwsSim) -> None:
    found = ec2.describe_instance_types(session_for(healthy), ["p5.48xlarge", "p99.metal"])
    assert set(found) == {"p5.48xlarge"}
    verdict = checks.efa_support(NodeRef("x", "p99.metal", None, 4), found.get("p99.metal"))
    assert not verdict.ok and "does not know instance type 'p99.metal'" in verdict.message


def test_missing_efa_field_is_not_shown_not_passed() -> None:
    """Issue 19: an answer without NetworkInfo.EfaSupported is no evidence; the profile's word is not a pass."""
    verdict = checks.efa_support(NodeRef("x", "p5.48xlarge", None, 32),
                                       ec2.InstanceTypeInfo("p5.48xlarge", None, None))
    assert verdict.status is Status.NOT_SHOWN and not verdict.ok
    assert "DescribeInstanceTypes returned no NetworkInfo.EfaSupported for p5.48xlarge" in verdict.message
    assert "aws ec2 describe-instance-types --instance-types p5.48xlarge" in verdict.message


@pytest.mark.parametrize("direction", ["both", "ingress", "egress"])
def test_sg_without_self_rule_fails_for_every_efa_node(start_sim: Callable[..., AwsSim], direction: str) -> None:
    sim = start_sim({"aws-sg-no-self-rule": {"direction": direction}})
    snap = take_snapshot(session_for(sim), node_refs(sim))
    verdicts = [checks.efa_security_groups(n, snap.instances.get(n.instance_id or ""), snap.security_groups)
                for n in _efa_nodes(sim)]
    assert [v.ok for v in verdicts] == [False, False, False]
    efa_line = f"({CLUSTER}-efa): self inbound {'no' if direction != 'egress' else 'yes'}, " \
               f"self outbound {'no' if direction != 'ingress' else 'yes'}"
    assert efa_line in verdicts[0].message
    assert "authorize-security-group-ingress" in verdicts[0].message


@pytest.mark.parametrize("resources, failing", [("both", {"subnet", "security-group"}),
                                                ("subnets", {"subnet"}),
                                                ("security-groups", {"security-group"})])
def test_missing_discovery_tags_fail_the_selector_check(start_sim: Callable[..., AwsSim], resources: str,
                                                        failing: set[str]) -> None:
    sim = start_sim({"aws-missing-discovery-tags": {"resources": resources}})
    session, refs = session_for(sim), _nodeclass()
    verdicts = {kind: checks.selector_terms(refs, kind, ec2.resolve_selector_terms(session, kind, terms))
                for kind, terms in (("subnet", refs.subnet_terms), ("security-group", refs.security_group_terms))}
    assert {kind for kind, v in verdicts.items() if not v.ok} == failing
    bad = verdicts[sorted(failing)[0]]
    assert f"{{karpenter.sh/discovery={CLUSTER}}} -> nothing" in bad.message
    assert f"karpenter.sh/discovery={CLUSTER}" in bad.fix and "create-tags" in bad.fix


def test_selector_by_id_and_wildcard_tag(healthy: AwsSim) -> None:
    session = session_for(healthy)
    sg = healthy.security_group_ids[f"{CLUSTER}-efa"]
    matches = ec2.resolve_selector_terms(session, "security-group",
                                         [{"id": sg}, {"tags": {"karpenter.sh/discovery": "*"}}, {"name": "nope"}])
    assert [m.resource_ids for m in matches] == [(sg,), tuple(sorted(healthy.security_group_ids.values())), ()]
    assert not checks.selector_terms(_nodeclass(), "security-group", matches).ok


def test_missing_node_role_fails(healthy: AwsSim) -> None:
    refs = _nodeclass(role="KarpenterNodeRole-typo")
    verdict = checks.node_role(refs, ec2.get_role(session_for(healthy), refs.role or ""))
    assert not verdict.ok and "NoSuchEntity" in verdict.message and "fix spec.role of gpu" in verdict.message
    arn_role = ec2.get_role(session_for(healthy), f"arn:aws:iam::{healthy.account_id}:role/KarpenterNodeRole-{CLUSTER}")
    assert arn_role is not None


def test_stopped_or_unknown_instance_fails(start_sim: Callable[..., AwsSim]) -> None:
    sim = start_sim({"aws-sg-no-self-rule": {"direction": "both"}})   # any started account will do
    session = session_for(sim)
    instance_id, _ = sim.launch_instance("p5.48xlarge", "us-west-2a")   # its own instance, others untouched
    node = NodeRef("late-0", "p5.48xlarge", f"aws:///us-west-2a/{instance_id}", 32)
    sim.client("ec2").stop_instances(InstanceIds=[instance_id])
    verdict = checks.instance_running(node, ec2.describe_instances(session, [node.instance_id or ""]).get(
        node.instance_id or ""))
    assert not verdict.ok and f"{node.instance_id} is stopped" in verdict.message
    ghost = NodeRef("ghost", "p5.48xlarge", "aws:///us-west-2a/i-0123456789abcdef0")
    verdict = checks.instance_running(ghost, ec2.describe_instances(session, [ghost.instance_id or ""]).get(
        ghost.instance_id or ""))
    assert not verdict.ok and "EC2 has no instance i-0123456789abcdef0" in verdict.message
