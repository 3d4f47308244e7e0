"""Judges for the AWS side of a GPU cluster: EFA support of the instance type, the EFA security group, the instance
state, the node class's discovery-tag selectors and node role (pure: what EC2/IAM answered in, a Verdict out)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from pytest_gpucluster.checks.verdict import Verdict

if TYPE_CHECKING:   # the gathered data; aws/ imports boto3, so only its types are used here
    from pytest_gpucluster.aws.gather import NodeRef
    from pytest_gpucluster.aws.ec2 import InstanceInfo, InstanceTypeInfo, RoleInfo, Rule, SecurityGroupInfo, TermMatch

DISCOVERY_TAG = "karpenter.sh/discovery"
EFA_SG_DOC = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-start.html#efa-start-security"


# -- EFA support of the instance type --------------------------------------------------------------------------
def efa_support(node: NodeRef, info: InstanceTypeInfo | None) -> Verdict:
    """The profile expects `node.expected_efa` EFA devices: does EC2 say the type supports that many?
    An answer without `NetworkInfo.EfaSupported` shows nothing: NOT_SHOWN, never a pass on the profile's word."""
    subject = f"{node.name} ({node.instance_type})"
    expected = f"EFA support with {node.expected_efa} interface(s) (profile)"
    if info is None:
        return Verdict.failed(subject, expected,
                              f"EC2 DescribeInstanceTypes does not know instance type {node.instance_type!r}",
                              "check the node's instance-type label and the region")
    facts = {"efa_supported": info.efa_supported, "max_efa_interfaces": info.max_efa_interfaces}
    if info.efa_supported is None:
        return Verdict.not_shown(
            subject, f"DescribeInstanceTypes returned no NetworkInfo.EfaSupported for {node.instance_type}",
            f"run `aws ec2 describe-instance-types --instance-types {node.instance_type} --query "
            f"'InstanceTypes[].NetworkInfo.[EfaSupported,EfaInfo]'` against the real EC2 API of the cluster's region "
            f"(an old API version or a partial emulator leaves the field out)", facts=facts)
    if not info.efa_supported:
        return Verdict.failed(subject, expected,
                              f"EC2 says {node.instance_type} does not support EFA (NetworkInfo.EfaSupported=false)",
                              "run EFA workloads on an EFA-capable type (p4d/p5/g5.8xlarge+ ...) via the NodePool's "
                              "instance-type requirements, or set efa: 0 for this type in the profile", facts=facts)
    if info.max_efa_interfaces is not None and info.max_efa_interfaces < node.expected_efa:
        return Verdict.failed(subject, expected,
                              f"EC2 allows at most {info.max_efa_interfaces} EFA interface(s) on {node.instance_type}",
                              f"correct the profile's efa count for {node.instance_type}", facts=facts)
    return Verdict.passed(subject, expected, f"EfaSupported=true, MaximumEfaInterfaces={info.max_efa_interfaces}",
                          facts=facts)


# -- EFA security group ------------------------------------------------------------------------------------------
def _self_rule(rules: Iterable[Rule], own: str, allowed: set[str]) -> bool:
    return any(r.protocol == "-1" and (own in r.group_ids or allowed & set(r.group_ids)) for r in rules)


def efa_security_groups(node: NodeRef, instance: InstanceInfo | None,
                              groups: Mapping[str, SecurityGroupInfo]) -> Verdict:
    """Some security group of the instance allows all traffic (protocol -1) from and to itself."""
    subject = f"security groups of {node.name} ({node.instance_type})"
    expected = "a group with inbound AND outbound 'All traffic' rules whose source/destination is the group itself"
    if instance is None:
        return _missing_instance(node, subject, expected)
    attached = [groups[g] for g in instance.security_group_ids if g in groups]
    ids = {g.group_id for g in attached}
    for group in attached:
        if _self_rule(group.ingress, group.group_id, ids) and _self_rule(group.egress, group.group_id, ids):
            return Verdict.passed(subject, expected, f"{group.group_id} ({group.name}) has both rules",
                                  facts={"efa_security_group": group.group_id})
    found = []
    for group in attached:
        ins = "yes" if _self_rule(group.ingress, group.group_id, ids) else "no"
        outs = "yes" if _self_rule(group.egress, group.group_id, ids) else "no"
        found.append(f"{group.group_id} ({group.name}): self inbound {ins}, self outbound {outs}")
    fix = ("add to the EFA security group an inbound and an outbound rule 'All traffic' with the group itself as "
           f"source/destination (aws ec2 authorize-security-group-ingress/-egress --group-id <sg> "
           f"--ip-permissions IpProtocol=-1,UserIdGroupPairs=[{{GroupId=<sg>}}]); without it EFA traffic between "
           f"nodes is dropped and NCCL hangs or falls back to sockets; see {EFA_SG_DOC}")
    return Verdict.failed(subject, expected, "; ".join(found) or "no security groups attached", fix,
                          facts={"security_groups": sorted(ids)})


# -- instance state and launch time ------------------------------------------------------------------------------
def _missing_instance(node: NodeRef, subject: str, expected: str) -> Verdict:
    if not node.instance_id:
        observed = f"providerID {node.provider_id!r} is not an EC2 providerID (aws:///<az>/i-...)"
    else:
        observed = f"EC2 has no instance {node.instance_id} in this account/region"
    return Verdict.failed(subject, expected, observed,
                          "check --gpucluster-region / --gpucluster-aws-profile point at the cluster's account")


def instance_running(node: NodeRef, instance: InstanceInfo | None) -> Verdict:
    subject = f"EC2 instance of {node.name} ({node.instance_type})"
    expected = "state running, instance type as labelled"
    if instance is None:
        return _missing_instance(node, subject, expected)
    facts = {"instance_id": instance.instance_id, "state": instance.state, "zone": instance.zone,
             "launch_time": instance.launch_time.isoformat() if instance.launch_time else None}
    if instance.state != "running":
        reason = f" ({instance.state_reason})" if instance.state_reason else ""
        return Verdict.failed(subject, expected, f"{instance.instance_id} is {instance.state}{reason}",
                              "the node object outlived its instance: check Karpenter's NodeClaim / the node "
                              "group and the instance's state reason in the EC2 console", facts=facts)
    if node.instance_type not in ("unknown", instance.instance_type):
        return Verdict.failed(subject, expected, f"{instance.instance_id} is a {instance.instance_type}, the node "
                              f"label says {node.instance_type}", "the node.kubernetes.io/instance-type label is wrong",
                              facts=facts)
    return Verdict.passed(subject, expected, f"{instance.instance_id} running since {facts['launch_time']}",
                          facts=facts)


# -- EC2NodeClass: discovery tags and node role ------------------------------------------------------------------
@dataclass(frozen=True)
class NodeClassRefs:
    """What an EC2NodeClass (or an EKS Auto Mode NodeClass) points at in AWS."""

    name: str
    kind: str
    subnet_terms: tuple[Mapping[str, Any], ...]
    security_group_terms: tuple[Mapping[str, Any], ...]
    role: str | None
    instance_profile: str | None


def nodeclass_refs(obj: Mapping[str, Any]) -> NodeClassRefs:
    spec = obj.get("spec") or {}
    return NodeClassRefs(
        name=str((obj.get("metadata") or {}).get("name", "?")), kind=str(obj.get("kind", "EC2NodeClass")),
        subnet_terms=tuple(spec.get("subnetSelectorTerms") or ()),
        security_group_terms=tuple(spec.get("securityGroupSelectorTerms") or ()),
        role=spec.get("role"), instance_profile=spec.get("instanceProfile"))


def selector_terms(refs: NodeClassRefs, kind: str, matches: list[TermMatch]) -> Verdict:
    """Every tag-based selector term of the node class selects at least one subnet / security group."""
    label = "subnetSelectorTerms" if kind == "subnet" else "securityGroupSelectorTerms"
    plural = "subnets" if kind == "subnet" else "security groups"
    subject = f"{refs.kind} {refs.name} {label}"
    if not matches:
        return Verdict.failed(subject, f"at least one term selecting {plural}", f"no {label} in the spec",
                              f"add a {label} term with tags {{{DISCOVERY_TAG}: <cluster-name>}}")
    expected = f"each term selects at least one of the {plural} tagged for the cluster"
    empty = [m for m in matches if not m.resource_ids]
    facts = {m.describe(): list(m.resource_ids) for m in matches}
    observed = "; ".join(f"{m.describe()} -> {', '.join(m.resource_ids) or 'nothing'}" for m in matches)
    if not empty:
        return Verdict.passed(subject, expected, observed, facts=facts)
    tags = [f"{k}={v}" for m in empty for k, v in (m.term.get("tags") or {}).items()]
    fix = (f"tag the cluster's {plural} with {', '.join(tags)} (aws ec2 create-tags --resources <ids> "
           f"--tags Key=...,Value=...) or fix the term; Karpenter cannot launch nodes into "
           f"{plural} it cannot discover") if tags else f"fix the id/name in {label}"
    return Verdict.failed(subject, expected, observed, fix, facts=facts)


def node_role(refs: NodeClassRefs, role: RoleInfo | None) -> Verdict:
    subject = f"{refs.kind} {refs.name} node role"
    if refs.role:
        expected = f"IAM role {refs.role!r} exists"
        if role is None:
            return Verdict.failed(subject, expected, "IAM GetRole: NoSuchEntity",
                                  f"create the role (trust ec2.amazonaws.com; AmazonEKSWorkerNodePolicy, "
                                  f"AmazonEKS_CNI_Policy, AmazonEC2ContainerRegistryReadOnly, "
                                  f"AmazonSSMManagedInstanceCore) or fix spec.role of {refs.name}")
        return Verdict.passed(subject, expected, f"{role.arn}", facts={"node_role_arn": role.arn})
    if refs.instance_profile:
        expected = f"instance profile {refs.instance_profile!r} exists and holds a role"
        if role is None:
            return Verdict.failed(subject, expected, "IAM GetInstanceProfile: missing or without a role",
                                  "create the instance profile with the node role or fix spec.instanceProfile")
        return Verdict.passed(subject, expected, f"{role.arn}", facts={"node_role_arn": role.arn})
    return Verdict.failed(subject, "spec.role or spec.instanceProfile set", "neither is set",
                          "set spec.role to the Karpenter node role name")
