"""What the AWS checks gather: the Kubernetes side of a node (NodeRef) and one batched snapshot of its EC2
instances, instance types and security groups. The judging is in pytest_gpucluster/checks/aws.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from . import ec2
from .ec2 import InstanceInfo, InstanceTypeInfo, SecurityGroupInfo
from .session import AwsSession, parse_provider_id


@dataclass(frozen=True)
class NodeRef:
    """The Kubernetes side of a node the AWS checks look at."""

    name: str
    instance_type: str
    provider_id: str | None
    expected_efa: int = 0

    @property
    def instance_id(self) -> str | None:
        parsed = parse_provider_id(self.provider_id or "")
        return parsed[1] if parsed else None


@dataclass
class Snapshot:
    """Everything the per-node checks need, read in a few batched calls."""

    instances: dict[str, InstanceInfo]
    instance_types: dict[str, InstanceTypeInfo]
    security_groups: dict[str, SecurityGroupInfo]


def take_snapshot(session: AwsSession, nodes: Iterable[NodeRef]) -> Snapshot:
    nodes = list(nodes)
    instances = ec2.describe_instances(session, [n.instance_id for n in nodes if n.instance_id])
    types = ec2.describe_instance_types(session, {n.instance_type for n in nodes if n.instance_type != "unknown"})
    groups = ec2.describe_security_groups(session, {g for i in instances.values() for g in i.security_group_ids})
    return Snapshot(instances, types, groups)
