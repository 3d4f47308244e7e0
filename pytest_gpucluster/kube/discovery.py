"""Node discovery: the Inventory of GPU, EFA and CPU-only nodes, node selection and deterministic sampling."""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from . import errors
from .client import Cluster
from .probes import EFA_RESOURCE, GPU_RESOURCE

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
GFD_PRESENT = "nvidia.com/gpu.present"
GPU_COUNT_LABELS = ("karpenter.k8s.aws/instance-gpu-count", "eks.amazonaws.com/instance-gpu-count",
                    "nvidia.com/gpu.count")
NODEPOOL_LABEL = "karpenter.sh/nodepool"
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
NODECLAIMS = "nodeclaims.karpenter.sh"
NODEPOOLS = "nodepools.karpenter.sh"
DISRUPTED_TAINT = "karpenter.sh/disrupted"
INITIALIZED_LABEL = "karpenter.sh/initialized"


class HardwareProfile(Protocol):
    """What discovery needs from the acceptance profile (duck-typed to keep kube/ free of profile.py)."""

    def for_instance(self, instance_type: str) -> Any: ...


def transition_of(node: dict[str, Any]) -> str | None:
    """Why a node is in transition, or None: NotReady, cordoned (spec.unschedulable), marked for disruption by
    Karpenter (taint karpenter.sh/disrupted, kubernetes-sigs/karpenter pkg/apis/v1/taints.go), or a Karpenter node
    not initialised yet (no karpenter.sh/initialized=true: Karpenter sets it once the node is Ready, its startup
    taints are gone and every requested resource is registered, pkg/controllers/nodeclaim/lifecycle/initialization.go).
    Its checks are not shown, never failed: it is not the node the cluster will keep, or not yet."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    reasons = []
    if ready is None or ready.get("status") != "True":
        reasons.append(f"NotReady ({(ready or {}).get('reason') or 'no Ready condition'})")
    if spec.get("unschedulable"):
        reasons.append("cordoned")
    if any(t.get("key") == DISRUPTED_TAINT for t in spec.get("taints") or []):
        reasons.append("being disrupted by Karpenter (karpenter.sh/disrupted)")
    if labels.get(NODEPOOL_LABEL) and labels.get(INITIALIZED_LABEL) != "true":
        reasons.append("not initialised by Karpenter yet (no karpenter.sh/initialized=true)")
    return ", ".join(reasons) or None


def _time(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


@dataclass
class NodeInfo:
    name: str
    instance_type: str
    labels: dict[str, str]
    taints: list[dict[str, Any]]
    allocatable: dict[str, str]
    capacity: dict[str, str]
    gpus_allocatable: int
    efa_allocatable: int
    nodepool: str | None
    provider_id: str | None
    conditions: dict[str, str]
    ready: bool
    unschedulable: bool = False
    zone: str | None = None
    nodegroup: str | None = None
    expected_gpus: int = 0            # from the profile (0 when the instance type is unknown to it)
    expected_efa: int = 0
    efa_required: bool = False        # the profile requires EFA attached on the type (profile `efa_required`)
    efa_launched: int = 0             # EFA interfaces its Karpenter NodeClaim says were attached (status.capacity)
    ready_since: float | None = None  # the Ready condition's lastTransitionTime (when the node booted, or recovered)
    os_image: str = ""                # status.nodeInfo.osImage (`Amazon Linux 2023...`, `Bottlerocket OS ...`)
    transition: str | None = None     # why the node is in transition (transition_of), None when it is settled
    startup_taints: list[dict[str, Any]] = field(default_factory=list)   # its NodePool's spec.template startupTaints

    @property
    def id(self) -> str:
        """Test id: `ip-10-0-3-17/p5.48xlarge`."""
        return f"{self.name}/{self.instance_type}"

    @classmethod
    def from_node(cls, node: dict[str, Any], profile: HardwareProfile | None = None) -> "NodeInfo":
        meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
        labels = dict(meta.get("labels") or {})
        itype = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), "unknown")
        conditions = {c.get("type", ""): c.get("status", "") for c in status.get("conditions") or []}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        inst = profile.for_instance(itype) if profile is not None else None
        return cls(
            name=meta.get("name", ""), instance_type=itype, labels=labels, taints=list(spec.get("taints") or []),
            allocatable=dict(status.get("allocatable") or {}), capacity=dict(status.get("capacity") or {}),
            gpus_allocatable=_quantity((status.get("allocatable") or {}).get(GPU_RESOURCE)),
            efa_allocatable=_quantity((status.get("allocatable") or {}).get(EFA_RESOURCE)),
            nodepool=labels.get(NODEPOOL_LABEL), provider_id=spec.get("providerID"), conditions=conditions,
            ready=conditions.get("Ready") == "True", unschedulable=bool(spec.get("unschedulable")),
            zone=labels.get("topology.kubernetes.io/zone"), nodegroup=labels.get(NODEGROUP_LABEL),
            expected_gpus=int(getattr(inst, "gpus", 0) or 0), expected_efa=int(getattr(inst, "efa", 0) or 0),
            efa_required=bool(getattr(inst, "efa_required", False)), ready_since=_time(ready.get("lastTransitionTime")),
            os_image=str((status.get("nodeInfo") or {}).get("osImage") or ""), transition=transition_of(node))

    @property
    def is_gpu(self) -> bool:
        if self.gpus_allocatable > 0 or _quantity(self.capacity.get(GPU_RESOURCE)) > 0:
            return True
        if self.labels.get(GFD_PRESENT) == "true" or self.expected_gpus > 0:
            return True
        return any(_quantity(self.labels.get(k)) > 0 for k in GPU_COUNT_LABELS)

    @property
    def efa_attached(self) -> bool:
        """The node has EFA interfaces: it advertises them, or its NodeClaim says the launch attached them (a plugin
        that never registered them does not make a node without EFA)."""
        return self.efa_allocatable > 0 or _quantity(self.capacity.get(EFA_RESOURCE)) > 0 or self.efa_launched > 0

    @property
    def is_efa(self) -> bool:
        """Judged as an EFA node: EFA attached, or required on its type by the profile. EFA is attached when asked
        for (Karpenter: a pod requesting vpc.amazonaws.com/efa or an EC2NodeClass with network interfaces; managed
        node groups: the launch template), not because the type could have it: an EFA-capable node without EFA whose
        type does not require it is not an EFA node."""
        return self.efa_attached or self.efa_required

    @property
    def efa_not_needed(self) -> bool:
        """EFA-capable type, none attached, and the profile does not require it: not an EFA node, and the report says so."""
        return self.expected_efa > 0 and not self.is_efa


def sample_nodes(nodes: list[NodeInfo], per_type: int | None) -> list[NodeInfo]:
    """Deterministic sample: per instance type, the first N nodes ordered by sha256(name)."""
    if not per_type:
        return sorted(nodes, key=lambda n: n.name)
    groups: dict[str, list[NodeInfo]] = defaultdict(list)
    for node in nodes:
        groups[node.instance_type].append(node)
    chosen: list[NodeInfo] = []
    for itype in sorted(groups):
        ranked = sorted(groups[itype], key=lambda n: hashlib.sha256(n.name.encode()).hexdigest())
        chosen.extend(ranked[:per_type])
    return sorted(chosen, key=lambda n: n.name)


@dataclass
class Inventory:
    """All nodes, classified; `gpu_nodes`/`efa_nodes`/`cpu_nodes` are after selection and sampling."""

    all_nodes: list[NodeInfo]
    gpu_nodes: list[NodeInfo]
    efa_nodes: list[NodeInfo]
    cpu_nodes: list[NodeInfo]
    selector: str | None = None
    sample: int | None = None
    unknown_instance_types: list[str] = field(default_factory=list)
    total_gpu_nodes: int = 0
    total_efa_nodes: int = 0

    @property
    def by_name(self) -> dict[str, NodeInfo]:
        return {n.name: n for n in self.all_nodes}

    @property
    def transition(self) -> dict[str, str]:
        """Node name -> why it is in transition (at discovery, or since: TransitionWatch updates the nodes)."""
        return {n.name: n.transition for n in self.all_nodes if n.transition}


    def summary_lines(self) -> list[str]:
        """Report-header lines: what was covered and what was not."""
        def types(nodes: list[NodeInfo]) -> str:
            counts = Counter(n.instance_type for n in nodes)
            return ", ".join(f"{t} x{c}" for t, c in sorted(counts.items())) or "none"

        lines = [f"nodes: {len(self.all_nodes)} total; GPU {self.total_gpu_nodes} ({types([n for n in self.all_nodes if n.is_gpu])}); "
                 f"EFA {self.total_efa_nodes}; CPU-only {len([n for n in self.all_nodes if not n.is_gpu])}"]
        if self.selector or self.sample:
            how = " and ".join(x for x in (f"selector {self.selector!r}" if self.selector else "",
                                           f"sample {self.sample} per instance type" if self.sample else "") if x)
            lines.append(f"covered {len(self.gpu_nodes)} of {self.total_gpu_nodes} GPU nodes ({how}): "
                         f"{', '.join(n.id for n in self.gpu_nodes[:20])}{' ...' if len(self.gpu_nodes) > 20 else ''}")
        moving = [f"{n.id} ({n.transition})" for n in self.all_nodes if n.transition]
        if moving:
            lines.append(f"in transition (their checks are not shown): {'; '.join(moving)}")
        bare = [n for n in self.all_nodes if n.is_gpu and n.efa_not_needed]
        if bare:
            lines.append(f"not EFA nodes (no EFA attached, not required on their type by the profile): {types(bare)}")
        if self.unknown_instance_types:
            lines.append("instance types not in the profile (checked without hardware expectations): "
                         + ", ".join(self.unknown_instance_types))
        return lines


def launched_efa(cluster: Cluster) -> dict[str, int]:
    """Node name -> EFA interfaces its NodeClaim advertises (karpenter-provider-aws puts vpc.amazonaws.com/efa in a
    NodeClaim's status.capacity only when the launch attached EFA: pkg/cloudprovider/cloudprovider.go resourceFilter);
    {} without Karpenter or the right to read NodeClaims."""
    try:
        claims = cluster.items(NODECLAIMS)
    except (errors.NotFound, errors.Forbidden):
        return {}
    return {str(c["status"]["nodeName"]): _quantity(((c.get("status") or {}).get("capacity") or {}).get(EFA_RESOURCE))
            for c in claims if (c.get("status") or {}).get("nodeName")}


def startup_taints(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """NodePool name -> its spec.template.spec.startupTaints: taints a node carries until an agent is ready on it,
    which a probe must not tolerate (a probe landing there would judge a node that is not ready for work)."""
    try:
        pools = cluster.items(NODEPOOLS)
    except (errors.NotFound, errors.Forbidden):
        return {}
    return {str(p["metadata"]["name"]): list((((p.get("spec") or {}).get("template") or {}).get("spec") or {})
                                             .get("startupTaints") or []) for p in pools}


def discover(cluster: Cluster, profile: HardwareProfile | None = None, *, selector: str | None = None,
             sample: int | None = None) -> Inventory:
    """One node list, one NodeClaim and one NodePool list (plus one selected list when a selector is given)."""
    everything = [NodeInfo.from_node(n, profile) for n in cluster.items("nodes")]
    efa, startup = launched_efa(cluster), startup_taints(cluster)
    for node in everything:
        node.efa_launched = efa.get(node.name, 0)
        node.startup_taints = list(startup.get(node.nodepool or "", []))
    if selector:
        wanted = {n["metadata"]["name"] for n in cluster.items("nodes", label_selector=selector)}
        selected = [n for n in everything if n.name in wanted]
    else:
        selected = everything
    gpu_all = [n for n in everything if n.is_gpu]
    efa_all = [n for n in everything if n.is_efa]
    unknown = sorted({n.instance_type for n in gpu_all
                      if profile is not None and profile.for_instance(n.instance_type) is None})
    return Inventory(
        all_nodes=sorted(everything, key=lambda n: n.name),
        gpu_nodes=sample_nodes([n for n in selected if n.is_gpu], sample),
        efa_nodes=sample_nodes([n for n in selected if n.is_efa], sample),
        cpu_nodes=sample_nodes([n for n in selected if not n.is_gpu], sample),
        selector=selector, sample=sample, unknown_instance_types=unknown,
        total_gpu_nodes=len(gpu_all), total_efa_nodes=len(efa_all))


class TransitionWatch:
    """Whether nodes are in transition now (they may enter it during the run): one node list, reused for
    `max_age_s`; what it sees is written onto the inventory's nodes, so the report lists them."""

    def __init__(self, cluster: Cluster, inventory: Inventory, max_age_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster, self.inventory, self.max_age_s, self.clock = cluster, inventory, max_age_s, clock
        self._read_at: float | None = None
        self._now: dict[str, str | None] = {}

    def of(self, names: Iterable[str]) -> dict[str, str]:
        """Node name -> why it is in transition now, for those of `names` that are (a vanished node: it left)."""
        if self._read_at is None or self.clock() - self._read_at > self.max_age_s:
            self._now = {n["metadata"]["name"]: transition_of(n) for n in self.cluster.items("nodes")}
            self._read_at = self.clock()
        out = {}
        for name in names:
            why = self._now.get(name, "left the cluster") if self._now else None
            if why:
                out[name] = why
                node = self.inventory.by_name.get(name)
                if node is not None:
                    node.transition = why
        return out
