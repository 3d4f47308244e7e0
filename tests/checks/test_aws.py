"""The AWS judges on plain data (what EC2/IAM would answer), every failure shape: expected, observed, the fix.
The same judges against a simulated account (moto) are in tests/aws/test_checks.py."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pytest_gpucluster.aws.gather import NodeRef
from pytest_gpucluster.aws.ec2 import InstanceInfo, InstanceTypeInfo, RoleInfo, Rule, SecurityGroupInfo, TermMatch
from pytest_gpucluster.checks import Status
from pytest_gpucluster.checks.aws import (
    NodeClassRefs, efa_security_groups, efa_support, instance_running, node_role,
    selector_terms, nodeclass_refs,
)

P5 = NodeRef("gpu-0", "p5.48xlarge", "aws:///us-west-2a/i-0123456789abcdef0", 32)
LAUNCHED = datetime(2026, 11, 23, 16, 0, tzinfo=timezone.utc)


def instance(state: str = "running", itype: str = "p5.48xlarge", groups: tuple[str, ...] = ("sg-node", "sg-efa"),
             reason: str | None = None) -> InstanceInfo:
    return InstanceInfo("i-0123456789abcdef0", itype, state, reason, LAUNCHED, "us-west-2a", "subnet-1", groups)


def group(gid: str, ingress_self: bool, egress_self: bool) -> SecurityGroupInfo:
    def rules(self_rule: bool) -> tuple[Rule, ...]:
        return (Rule("-1", (gid,), ()),) if self_rule else (Rule("tcp", (), ("0.0.0.0/0",), 443, 443),)
    return SecurityGroupInfo(gid, gid.replace("sg-", "cluster-"), rules(ingress_self), rules(egress_self))


def nodeclass(**spec: object) -> NodeClassRefs:
    return nodeclass_refs({"kind": "EC2NodeClass", "metadata": {"name": "gpu"}, "spec": spec})


# -- EFA support -----------------------------------------------------------------------------------------------
def test_efa_support_passes_when_ec2_allows_the_profiles_count() -> None:
    verdict = efa_support(P5, InstanceTypeInfo("p5.48xlarge", True, 32, 8))
    assert verdict.ok and verdict.observed == "EfaSupported=true, MaximumEfaInterfaces=32"
    assert verdict.facts == {"efa_supported": True, "max_efa_interfaces": 32}


def test_missing_efa_supported_field_is_not_shown_and_says_how_to_get_it() -> None:
    """Issue 19: no NetworkInfo.EfaSupported in the answer is missing evidence, not a pass on the profile's word."""
    verdict = efa_support(P5, InstanceTypeInfo("p5.48xlarge", None, None))
    assert verdict.status is Status.NOT_SHOWN
    assert verdict.message.startswith("gpu-0 (p5.48xlarge): cannot judge: DescribeInstanceTypes returned no "
                                      "NetworkInfo.EfaSupported for p5.48xlarge; run `aws ec2 "
                                      "describe-instance-types --instance-types p5.48xlarge")
    assert verdict.facts["efa_supported"] is None


def test_type_without_efa_fails_with_the_nodepool_fix() -> None:
    verdict = efa_support(P5, InstanceTypeInfo("p5.48xlarge", False, None))
    assert verdict.status is Status.FAIL
    assert verdict.message.startswith("gpu-0 (p5.48xlarge): expected EFA support with 32 interface(s) (profile); "
                                      "observed EC2 says p5.48xlarge does not support EFA")
    assert "NodePool's instance-type requirements" in verdict.fix


def test_profile_expecting_more_interfaces_than_ec2_allows_fails() -> None:
    verdict = efa_support(NodeRef("n", "p4d.24xlarge", None, 8), InstanceTypeInfo("p4d.24xlarge", True, 4))
    assert not verdict.ok and "EC2 allows at most 4 EFA interface(s) on p4d.24xlarge" in verdict.message
    assert verdict.fix == "correct the profile's efa count for p4d.24xlarge"


def test_unknown_instance_type_fails() -> None:
    verdict = efa_support(NodeRef("n", "p99.metal", None, 4), None)
    assert not verdict.ok and "does not know instance type 'p99.metal'" in verdict.message
    assert "region" in verdict.fix


# -- EFA security group ----------------------------------------------------------------------------------------
def test_a_group_allowing_itself_both_ways_passes() -> None:
    groups = {"sg-node": group("sg-node", False, False), "sg-efa": group("sg-efa", True, True)}
    verdict = efa_security_groups(P5, instance(), groups)
    assert verdict.ok and verdict.facts == {"efa_security_group": "sg-efa"}


@pytest.mark.parametrize("ingress, egress", [(False, False), (True, False), (False, True)])
def test_a_missing_self_rule_fails_naming_each_direction(ingress: bool, egress: bool) -> None:
    groups = {"sg-efa": group("sg-efa", ingress, egress)}
    verdict = efa_security_groups(P5, instance(groups=("sg-efa",)), groups)
    assert verdict.status is Status.FAIL
    yes = {True: "yes", False: "no"}
    assert verdict.observed == f"sg-efa (cluster-efa): self inbound {yes[ingress]}, self outbound {yes[egress]}"
    assert "authorize-security-group-ingress" in verdict.fix and "efa-start-security" in verdict.fix


def test_no_attached_group_and_no_instance_fail() -> None:
    assert efa_security_groups(P5, instance(groups=()), {}).observed == "no security groups attached"
    verdict = efa_security_groups(P5, None, {})
    assert not verdict.ok and "EC2 has no instance i-0123456789abcdef0 in this account/region" in verdict.message
    not_ec2 = efa_security_groups(NodeRef("n", "p5.48xlarge", "kind://docker/n", 32), None, {})
    assert "is not an EC2 providerID" in not_ec2.observed and "--gpucluster-region" in not_ec2.fix


# -- instance state ----------------------------------------------------------------------------------------------
def test_a_running_instance_passes_with_its_launch_time() -> None:
    verdict = instance_running(P5, instance())
    assert verdict.ok and verdict.facts["launch_time"] == "2026-11-23T16:00:00+00:00"


def test_a_stopped_instance_fails_with_its_state_reason() -> None:
    verdict = instance_running(P5, instance("stopped", reason="Client.UserInitiatedShutdown"))
    assert not verdict.ok and "i-0123456789abcdef0 is stopped (Client.UserInitiatedShutdown)" in verdict.message
    assert "NodeClaim" in verdict.fix


def test_an_instance_of_another_type_than_labelled_fails() -> None:
    verdict = instance_running(P5, instance(itype="p4d.24xlarge"))
    assert not verdict.ok and "is a p4d.24xlarge, the node label says p5.48xlarge" in verdict.message


# -- node class --------------------------------------------------------------------------------------------------
def test_selector_terms_each_selecting_something_pass() -> None:
    refs = nodeclass(subnetSelectorTerms=[{"tags": {"karpenter.sh/discovery": "c"}}])
    verdict = selector_terms(refs, "subnet", [TermMatch({"tags": {"karpenter.sh/discovery": "c"}},
                                                              ("subnet-1",))])
    assert verdict.ok and verdict.facts == {"{karpenter.sh/discovery=c}": ["subnet-1"]}


def test_a_term_selecting_nothing_fails_with_the_tag_to_add() -> None:
    term = {"tags": {"karpenter.sh/discovery": "c"}}
    verdict = selector_terms(nodeclass(), "security-group", [TermMatch(term, ())])
    assert verdict.message.startswith("EC2NodeClass gpu securityGroupSelectorTerms: expected each term selects")
    assert "{karpenter.sh/discovery=c} -> nothing" in verdict.observed
    assert "tag the cluster's security groups with karpenter.sh/discovery=c" in verdict.fix
    by_id = selector_terms(nodeclass(), "subnet", [TermMatch({"id": "subnet-9"}, ())])
    assert by_id.fix == "fix the id/name in subnetSelectorTerms"
    none = selector_terms(nodeclass(), "subnet", [])
    assert not none.ok and none.observed == "no subnetSelectorTerms in the spec"


def test_node_role_must_exist() -> None:
    role = RoleInfo("KarpenterNodeRole-c", "arn:aws:iam::123456789012:role/KarpenterNodeRole-c", None)
    assert node_role(nodeclass(role="KarpenterNodeRole-c"), role).ok
    missing = node_role(nodeclass(role="typo"), None)
    assert not missing.ok and "NoSuchEntity" in missing.message and "fix spec.role of gpu" in missing.fix
    profile = node_role(nodeclass(instanceProfile="ip"), None)
    assert not profile.ok and "IAM GetInstanceProfile" in profile.observed
    assert node_role(nodeclass(instanceProfile="ip"), role).facts == {"node_role_arn": role.arn}
    neither = node_role(nodeclass(), None)
    assert not neither.ok and neither.fix == "set spec.role to the Karpenter node role name"
