"""Scenario files of the simulated cluster: the schema (dataclasses), loading, validation and node expansion."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .faults import first_gpu_node_kinds
from .hardware import InstanceType, NodeHardware, instance_type, node_hardware
from .scenario_schema import (
    SAMPLES_DIR, ApiSpec, AwsSpec, ClusterSpec, FaultSpec, KarpenterSpec,
    KubeletSpec, NcclSpec, NodeClassSpec, NodeGroup, NodePoolSpec, OperatorsSpec, RbacSpec, TaintSpec,
    resolve_sample,
)
from .scenario_yaml import MarkedDict, ScenarioError, build, read_yaml

__all__ = [
    "ScenarioError", "Scenario", "NodeSpec", "NodeGroup", "FaultSpec", "TaintSpec", "load_scenario",
    "list_scenarios", "resolve_sample", "SCENARIO_DIR", "SAMPLES_DIR",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"

@dataclass
class NodeSpec:
    """One concrete node of the scenario, expanded from a node group."""

    name: str
    index: int
    group_index: int
    group: NodeGroup
    instance: InstanceType
    zone: str
    region: str
    private_ip: str
    instance_id: str
    hardware: NodeHardware
    taints: list[TaintSpec]
    labels: dict[str, str]

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.zone}/{self.instance_id}"

    @property
    def nodepool(self) -> str | None:
        return self.group.nodepool


@dataclass
class Scenario:
    description: str
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    nodes: list[NodeGroup] = field(default_factory=list)
    nodepools: list[NodePoolSpec] = field(default_factory=list)
    nodeclasses: list[NodeClassSpec] = field(default_factory=list)
    operators: OperatorsSpec = field(default_factory=OperatorsSpec)
    karpenter: KarpenterSpec = field(default_factory=KarpenterSpec)
    kubelet: KubeletSpec = field(default_factory=KubeletSpec)
    nccl: NcclSpec = field(default_factory=NcclSpec)
    api: ApiSpec = field(default_factory=ApiSpec)
    aws: AwsSpec = field(default_factory=AwsSpec)
    rbac: RbacSpec = field(default_factory=RbacSpec)
    faults: list[FaultSpec] = field(default_factory=list)
    # Acceptance-profile overrides for runs against this scenario (same shape as profiles/default.yaml),
    # e.g. Auto Mode's gpu-workload taint; the --sim plugin side merges them over the chosen profile.
    profile: dict[str, Any] = field(default_factory=dict)
    extends: str | None = None
    name: str = ""
    path: str = ""

    # ---- nodes ---------------------------------------------------------------------------
    @cached_property
    def _launched(self) -> dict[str, NodeSpec]:
        return {}

    @cached_property
    def _expanded(self) -> list[NodeSpec]:
        out: list[NodeSpec] = []
        for gi, group in enumerate(self.nodes):
            base = instance_type(group.instance_type).with_overrides(gpus=group.gpus, efa=group.efa)
            zone = group.zone or self.cluster.zones[0]
            for k in range(group.count):
                out.append(self._make_node(len(out), gi, group, base, zone, group.names[k] if group.names else None))
        return out

    def _make_node(self, index: int, gi: int, group: NodeGroup, it: InstanceType, zone: str,
                   given: str | None = None) -> NodeSpec:
        zone_index = self.cluster.zones.index(zone) if zone in self.cluster.zones else 0
        salt = int(hashlib.sha256(f"{self.cluster.name}/{self.name}".encode()).hexdigest()[:6], 16)
        offset = (salt + index * 37) % 16000           # 37 is coprime to 16000: unique per zone
        ip = f"10.0.{zone_index * 64 + offset // 250}.{offset % 250 + 4}"
        domain = "ec2.internal" if self.cluster.region == "us-east-1" else f"{self.cluster.region}.compute.internal"
        name = given or (f"{group.name_prefix}-{index}" if group.name_prefix
                         else f"ip-{ip.replace('.', '-')}.{domain}")
        instance_id = "i-" + hashlib.sha256(f"{self.cluster.name}/{name}".encode()).hexdigest()[:17]
        hw = node_hardware(it, name, driver_version=group.driver_version, cuda_version=group.cuda_version,
                           mig_profile=group.mig.profile if group.mig else None)
        return NodeSpec(name=name, index=index, group_index=gi, group=group, instance=it, zone=zone,
                        region=self.cluster.region, private_ip=ip, instance_id=instance_id, hardware=hw,
                        taints=list(group.taints), labels=dict(group.labels))

    def expand_nodes(self) -> list[NodeSpec]:
        """Every concrete node, in group order (node index = position in this list)."""
        return self._expanded

    def node(self, name_or_index: str | int) -> NodeSpec:
        nodes = self._expanded
        if isinstance(name_or_index, int):
            return nodes[name_or_index]
        for n in nodes:
            if n.name == name_or_index:
                return n
        raise KeyError(f"scenario {self.name!r} has no node {name_or_index!r}")

    def gpu_nodes(self) -> list[NodeSpec]:
        return [n for n in self._expanded if n.instance.is_gpu]

    # ---- faults --------------------------------------------------------------------------
    def fault_nodes(self, fault: FaultSpec) -> list[str]:
        """Node names a fault applies to; [] means cluster-wide."""
        if fault.nodes:
            return [self.node(n).name for n in fault.nodes]
        if fault.kind in first_gpu_node_kinds():
            gpu = self.gpu_nodes()
            return [gpu[0].name] if gpu else []
        return []

    def has_fault(self, kind: str) -> bool:
        return any(f.kind == kind for f in self.faults)

    def faults_for(self, kind: str) -> list[FaultSpec]:
        return [f for f in self.faults if f.kind == kind]

    def faults_on_node(self, node: str) -> list[FaultSpec]:
        """Faults that apply to `node`: named on it, or cluster-wide."""
        out = []
        for f in self.faults:
            names = self.fault_nodes(f)
            if not names or node in names:
                out.append(f)
        return out

    def new_node(self, instance: str, zone: str, index: int, *, nodepool: str | None = None,
                 capacity_type: str = "on-demand", efa: int | None = None, nodeclass: str | None = None) -> NodeSpec:
        """A node Karpenter launches later: deterministic like the seeded ones, indexes after them. `efa`: the EFA
        interfaces attached (None: every one the type supports; 0: launched without EFA)."""
        # A new node boots the AMI its NodeClass resolves, the one the seeded nodes of that NodeClass run: same driver.
        classes = {p.name: p.nodeclass for p in self.nodepools}
        want = nodeclass or classes.get(nodepool or "")
        same = next((g for g in self.nodes if g.nodepool and want and classes.get(g.nodepool) == want), None)
        group = NodeGroup(instance_type=instance, count=1, zone=zone, nodepool=nodepool, efa=efa,
                          capacity_type=capacity_type,  # type: ignore[arg-type]
                          driver_version=same.driver_version if same else None,
                          cuda_version=same.cuda_version if same else None)
        return self._make_node(len(self._expanded) + index, -1, group,
                               instance_type(instance).with_overrides(efa=efa), zone)

    def launched_node(self, name: str) -> NodeSpec | None:
        """The NodeSpec of a node Karpenter launched while the cluster ran (registered by its name), if any."""
        return self._launched.get(name)

    def register_launched(self, name: str, spec: NodeSpec) -> None:
        self._launched[name] = dataclasses.replace(spec, name=name)

    def adopt_node(self, name: str, instance: str, zone: str, *, private_ip: str | None = None,
                   instance_id: str | None = None, nodepool: str | None = None) -> NodeSpec:
        """A NodeSpec for a node that exists under its own name (e.g. created by Karpenter)."""
        spec = self.new_node(instance, zone, 0, nodepool=nodepool)
        hw = node_hardware(spec.instance, name, driver_version=spec.hardware.driver_version,
                           cuda_version=spec.hardware.cuda_version)
        return dataclasses.replace(spec, name=name, hardware=hw, private_ip=private_ip or spec.private_ip,
                                   instance_id=instance_id or spec.instance_id)

    def _check(self, ctx: Any) -> None:
        names = [n.name for n in self.expand_nodes()]
        if len(set(names)) != len(names):
            ctx.error("nodes", "node names are not unique (check name_prefix of the node groups)")
        for i, f in enumerate(self.faults):
            for ref in f.nodes:
                try:
                    self.node(ref)
                except (KeyError, IndexError):
                    ctx.error("faults", f"faults[{i}] ({f.kind}) names node {ref!r}, which the scenario "
                                        f"does not have ({len(names)} nodes, indexes 0-{len(names) - 1})")


_SCALE = re.compile(r"^scale-(\d+)$")


def _scenario_file(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ScenarioError(text, None, "", f"scenario file not found: {text}")
        return path
    path = SCENARIO_DIR / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(n for n, _ in list_scenarios())
        raise ScenarioError(text, None, "", f"no scenario named {text!r}; shipped scenarios: {known}")
    return path


def _raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The scenario mapping with `extends` resolved (child keys override; nested mappings merge)."""
    data = read_yaml(path)
    parent = data.get("extends")
    if parent is None:
        return data
    ref = str(parent)
    parent_path = path.parent / ref if ref.endswith((".yaml", ".yml")) else _scenario_file(ref)
    if parent_path.resolve() in seen:
        raise ScenarioError(str(path), data.line_of("extends"), "extends", f"extends cycle through {parent_path}")
    base = _raw(parent_path, seen + (path.resolve(),))
    return _merge(base, data)


def _merge(base: Any, child: Any) -> Any:
    if isinstance(base, MarkedDict) and isinstance(child, MarkedDict):
        merged = MarkedDict(base)
        for key, value in child.items():
            merged[key] = _merge(base[key], value) if key in base else value
        merged.marks = {**base.marks, **child.marks}
        merged.source, merged.line = child.source, child.line
        return merged
    return child


def load_scenario(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load, merge (`extends`) and validate a scenario by shipped name, `scale-N`, or YAML path.

    overrides: `gpu_nodes` / `cpu_nodes` set the count of the first GPU / CPU node group;
    `name` renames the scenario. `scale-N` is `healthy` with N GPU nodes.
    """
    overrides = dict(overrides or {})
    match = _SCALE.match(str(name_or_path))
    if match:
        overrides.setdefault("gpu_nodes", int(match.group(1)))
        overrides.setdefault("name", str(name_or_path))
        name_or_path = "healthy"
    path = _scenario_file(name_or_path)
    data = _raw(path)
    data.pop("extends", None)
    for key, want_gpu in (("gpu_nodes", True), ("cpu_nodes", False)):
        if key in overrides:
            for group in data.get("nodes", []):
                if instance_type(group["instance_type"]).is_gpu == want_gpu:
                    group["count"] = int(overrides[key])
                    break
            else:
                raise ScenarioError(str(path), None, key, f"override {key}: the scenario has no such node group")
    if "gpu_nodes" in overrides:
        _make_room(data, int(overrides["gpu_nodes"]))
    scenario = build(Scenario, data, str(path), path.parent,
                     preset={"name": overrides.get("name", path.stem), "path": str(path)})
    return scenario


def _make_room(data: dict[str, Any], gpu_nodes: int) -> None:
    """A scaled cluster's NodePools keep their headroom: a GPU limit below what N nodes already hold would make a
    real Karpenter refuse every new GPU node (and the limits check fail), which is not what `scale-N` models."""
    per_node = max((instance_type(g["instance_type"]).gpus for g in data.get("nodes", [])
                    if instance_type(g["instance_type"]).is_gpu), default=0)
    for pool in data.get("nodepools", []):
        limits = pool.get("limits") or {}
        if "nvidia.com/gpu" in limits:
            limits["nvidia.com/gpu"] = str(max(int(str(limits["nvidia.com/gpu"])), (gpu_nodes + 8) * per_node))


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of every shipped scenario, sorted by name."""
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        data = read_yaml(path)
        desc = str(data.get("description", "")).strip().splitlines()
        out.append((path.stem, desc[0] if desc else ""))
    return out
