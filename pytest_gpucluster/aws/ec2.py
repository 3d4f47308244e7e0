"""Read-only AWS data the checks judge: instances, instance types, security groups, selector terms, roles."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

from .errors import AwsCallFailed
from .session import AwsSession

_DESCRIBE_BATCH = 100   # ids / types per Describe* call (EC2 takes at most 100 instance types per call)
_UNKNOWN_TYPE_CODES = ("InvalidInstanceType", "InvalidParameterValue")


@dataclass(frozen=True)
class InstanceInfo:
    """One EC2 instance as DescribeInstances reports it."""

    instance_id: str
    instance_type: str
    state: str
    state_reason: str | None
    launch_time: datetime | None
    zone: str | None
    subnet_id: str | None
    security_group_ids: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceTypeInfo:
    """What DescribeInstanceTypes says about EFA (None: the field was absent from the answer)."""

    instance_type: str
    efa_supported: bool | None
    max_efa_interfaces: int | None
    gpus: int = 0


@dataclass(frozen=True)
class Rule:
    """One security group rule: protocol and the groups / CIDRs it names."""

    protocol: str
    group_ids: tuple[str, ...]
    cidrs: tuple[str, ...]
    from_port: int | None = None
    to_port: int | None = None


@dataclass(frozen=True)
class SecurityGroupInfo:
    group_id: str
    name: str
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TermMatch:
    """What one EC2NodeClass selector term selects."""

    term: Mapping[str, Any]
    resource_ids: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted((self.term.get("tags") or {}).items())]
        parts += [f"{k} {self.term[k]}" for k in ("id", "name") if self.term.get(k)]
        return "{" + ", ".join(parts) + "}" if parts else "{}"


@dataclass(frozen=True)
class RoleInfo:
    name: str
    arn: str
    created: datetime | None


def _tags(items: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), _DESCRIBE_BATCH):
        yield values[i:i + _DESCRIBE_BATCH]


def describe_instances(session: AwsSession, instance_ids: Iterable[str]) -> dict[str, InstanceInfo]:
    """Instances by id; ids EC2 does not know are simply absent from the result."""
    found: dict[str, InstanceInfo] = {}
    for reservation in _by_filter(session, "describe_instances", "Reservations", "instance-id", instance_ids):
        for inst in reservation.get("Instances", []):
            info = _instance(inst)
            found[info.instance_id] = info
    return found


def _by_filter(session: AwsSession, operation: str, result_key: str, filter_name: str,
               values: Iterable[str]) -> Iterator[Mapping[str, Any]]:
    """An EC2 describe call in batches, selecting by a Filter (not by ids), so that one unknown id does not
    fail the whole batch: unknown ids are simply absent."""
    for chunk in _chunks(sorted(set(values))):
        yield from session.collect("ec2", operation, result_key, Filters=[{"Name": filter_name, "Values": chunk}])


def _instance(inst: Mapping[str, Any]) -> InstanceInfo:
    groups = [g["GroupId"] for g in inst.get("SecurityGroups", [])]
    for eni in inst.get("NetworkInterfaces", []):
        groups += [g["GroupId"] for g in eni.get("Groups", [])]
    launched = inst.get("LaunchTime")
    if isinstance(launched, datetime):
        launched = launched.astimezone(timezone.utc) if launched.tzinfo else launched.replace(tzinfo=timezone.utc)
    reason = (inst.get("StateReason") or {}).get("Message") or inst.get("StateTransitionReason") or None
    return InstanceInfo(
        instance_id=inst["InstanceId"], instance_type=inst.get("InstanceType", "?"),
        state=(inst.get("State") or {}).get("Name", "unknown"), state_reason=reason,
        launch_time=launched if isinstance(launched, datetime) else None,
        zone=(inst.get("Placement") or {}).get("AvailabilityZone"), subnet_id=inst.get("SubnetId"),
        security_group_ids=tuple(dict.fromkeys(groups)), tags=_tags(inst.get("Tags")))


def describe_instance_types(session: AwsSession, instance_types: Iterable[str]) -> dict[str, InstanceTypeInfo]:
    """EFA facts per instance type; types EC2 does not know are absent from the result."""
    wanted = sorted(set(instance_types))
    found: dict[str, InstanceTypeInfo] = {}
    for chunk in _chunks(wanted):
        try:
            items = session.collect("ec2", "describe_instance_types", "InstanceTypes", InstanceTypes=chunk)
        except AwsCallFailed as exc:
            if exc.code not in _UNKNOWN_TYPE_CODES:
                raise
            if len(chunk) > 1:   # one unknown type fails the whole call: ask one by one to keep the others
                for single in chunk:
                    found.update(describe_instance_types(session, [single]))
            continue
        for item in items:
            network = item.get("NetworkInfo") or {}
            efa_info = network.get("EfaInfo") or {}
            gpus = sum(int(g.get("Count", 0)) for g in (item.get("GpuInfo") or {}).get("Gpus", []))
            found[item["InstanceType"]] = InstanceTypeInfo(
                item["InstanceType"], network.get("EfaSupported"),
                efa_info.get("MaximumEfaInterfaces"), gpus)
    return found


def describe_security_groups(session: AwsSession, group_ids: Iterable[str]) -> dict[str, SecurityGroupInfo]:
    found: dict[str, SecurityGroupInfo] = {}
    for group in _by_filter(session, "describe_security_groups", "SecurityGroups", "group-id", group_ids):
        found[group["GroupId"]] = SecurityGroupInfo(
            group["GroupId"], group.get("GroupName", ""),
            tuple(_rules(group.get("IpPermissions"))), tuple(_rules(group.get("IpPermissionsEgress"))),
            _tags(group.get("Tags")))
    return found


def _rules(permissions: Iterable[Mapping[str, Any]] | None) -> Iterable[Rule]:
    for perm in permissions or []:
        yield Rule(str(perm.get("IpProtocol", "")),
                   tuple(p["GroupId"] for p in perm.get("UserIdGroupPairs", []) if p.get("GroupId")),
                   tuple(r["CidrIp"] for r in perm.get("IpRanges", []) if r.get("CidrIp")),
                   perm.get("FromPort"), perm.get("ToPort"))


def resolve_selector_terms(session: AwsSession, kind: str, terms: Iterable[Mapping[str, Any]]) -> list[TermMatch]:
    """Resolve Karpenter subnetSelectorTerms / securityGroupSelectorTerms like Karpenter does.

    Each term is `tags` (AND of key=value, value `*` = any value), `id`, or (security groups) `name`.
    """
    if kind not in ("subnet", "security-group"):
        raise ValueError(f"kind must be 'subnet' or 'security-group', given {kind!r}")
    operation, key, id_key = (("describe_subnets", "Subnets", "SubnetId") if kind == "subnet"
                              else ("describe_security_groups", "SecurityGroups", "GroupId"))
    matches = []
    for term in terms:
        filters: list[dict[str, Any]] = []
        for tag, value in sorted((term.get("tags") or {}).items()):
            filters.append({"Name": "tag-key", "Values": [tag]} if value in ("*", "", None)
                           else {"Name": f"tag:{tag}", "Values": [str(value)]})
        if term.get("id"):
            filters.append({"Name": "subnet-id" if kind == "subnet" else "group-id", "Values": [str(term["id"])]})
        if term.get("name") and kind == "security-group":
            filters.append({"Name": "group-name", "Values": [term["name"]]})
        found = session.collect("ec2", operation, key, Filters=filters) if filters else []
        matches.append(TermMatch(dict(term), tuple(sorted(item[id_key] for item in found))))
    return matches


def get_role(session: AwsSession, role: str) -> RoleInfo | None:
    """The IAM role (name, `path/name` or ARN), None when IAM says NoSuchEntity."""
    name = role.rsplit("/", 1)[-1]
    try:
        found = session.call("iam", "get_role", RoleName=name)["Role"]
    except AwsCallFailed as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    return RoleInfo(found["RoleName"], found["Arn"], found.get("CreateDate"))


def get_instance_profile_role(session: AwsSession, instance_profile: str) -> RoleInfo | None:
    """The role inside an instance profile (EC2NodeClass `instanceProfile:`), None when absent."""
    try:
        profile = session.call("iam", "get_instance_profile", InstanceProfileName=instance_profile)
    except AwsCallFailed as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    roles = profile["InstanceProfile"].get("Roles") or []
    return RoleInfo(roles[0]["RoleName"], roles[0]["Arn"], roles[0].get("CreateDate")) if roles else None
