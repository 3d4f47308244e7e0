"""Kubernetes objects as plain data, without I/O: the resource names, well-known labels and taints, the condition
lookup, timestamps, container state, and NodeInfo (the typed view of a node that suites and judges read).

Imports neither `kubernetes` nor `pytest`, so the pure judges (checks/) may use it; reading objects from the API
server is kube/client.py's and kube/discovery.py's job.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from .quantity import count

# Extended resources the device plugins advertise: NVIDIA/k8s-device-plugin (`nvidia.com/gpu`, and under the `mixed`
# MIG strategy `nvidia.com/mig-<profile>`), aws-efa-k8s-device-plugin (`vpc.amazonaws.com/efa`); huge pages are
# the kubelet's own (`hugepages-<size>`).
GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
HUGEPAGES_2MI = "hugepages-2Mi"

# Well-known labels and taints (kubernetes.io/docs/reference/labels-annotations-taints; Karpenter v1
# pkg/apis/v1/labels.go and taints.go; EKS managed node groups and Auto Mode).
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
INSTANCE_TYPE_LABELS = (INSTANCE_TYPE_LABEL, "beta.kubernetes.io/instance-type")
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INITIALIZED_LABEL = "karpenter.sh/initialized"
DISRUPTED_TAINT = "karpenter.sh/disrupted"
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
AUTO_MODE_LABEL = ("eks.amazonaws.com/compute-type", "auto")   # every EKS Auto Mode node carries it
GFD_PRESENT = "nvidia.com/gpu.present"
GPU_COUNT_LABELS = ("karpenter.k8s.aws/instance-gpu-count", "eks.amazonaws.com/instance-gpu-count",
                    "nvidia.com/gpu.count")

Obj = Mapping[str, Any]


# -- conditions and time ----------------------------------------------------------------------------------
def condition(obj: Obj | None, ctype: str) -> dict[str, Any] | None:
    """The object's `.status.conditions` entry of that type (Node, Pod, NodePool, NodeClaim, MPIJob...), or None."""
    return next((dict(c) for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype),
                None)


def is_true(obj: Obj | None, ctype: str) -> bool:
    """The condition is present with status "True"."""
    return (condition(obj, ctype) or {}).get("status") == "True"


def condition_states(obj: Obj | None) -> dict[str, str]:
    """`{type: status}` of every condition."""
    return {str(c.get("type", "")): str(c.get("status", ""))
            for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def condition_texts(obj: Obj | None) -> dict[str, str]:
    """`{type: "status reason"}` of every condition, as the evidence shows them."""
    return {str(c.get("type")): f"{c.get('status')} {c.get('reason', '')}".strip()
            for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def timestamp(value: Any) -> float | None:
    """An RFC 3339 time as the API server writes it (`2025-01-02T03:04:05Z`) in epoch seconds; None when absent or
    not a time."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- pods -------------------------------------------------------------------------------------------------
def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_ready(pod: Obj) -> bool:
    return is_true(pod, "Ready")


def container_statuses(pod: Obj) -> list[dict[str, Any]]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def container_state(pod: Obj) -> dict[str, Any]:
    """The first container's `state` ({} before the kubelet reported one): probes run one container."""
    statuses = container_statuses(pod)
    return dict(statuses[0].get("state") or {}) if statuses else {}


def started(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The running or terminated state of a container that did start (a StartError never ran: the runtime refused
    it)."""
    if state.get("running"):
        return dict(state["running"])
    term = state.get("terminated") or {}
    return dict(term) if term and term.get("reason") != "StartError" else None


def waiting_reasons(pod: Obj) -> list[str | None]:
    """Each container's `state.waiting.reason` (None where it is not waiting)."""
    return [((cs.get("state") or {}).get("waiting") or {}).get("reason") for cs in container_statuses(pod)]


def restarts(pod: Obj) -> int:
    return sum(int(cs.get("restartCount") or 0) for cs in container_statuses(pod))


def pending_reason(pod: Obj) -> str | None:
    """The scheduler's reason (PodScheduled=False message) if it refused the pod, else None."""
    cond = condition(pod, "PodScheduled")
    if cond is not None and cond.get("status") == "False":
        return str(cond.get("message") or cond.get("reason") or "Unschedulable")
    return None


# -- nodes ------------------------------------------------------------------------------------------------
def karpenter_uninitialised(labels: Mapping[str, str]) -> bool:
    """A Karpenter node without karpenter.sh/initialized=true: Karpenter sets it once the node is Ready, its startup
    taints are gone and every requested resource is registered
    (kubernetes-sigs/karpenter pkg/controllers/nodeclaim/lifecycle/initialization.go)."""
    return bool(labels.get(NODEPOOL_LABEL)) and labels.get(INITIALIZED_LABEL) != "true"


def transition_of(node: Obj) -> str | None:
    """Why a node is in transition, or None: NotReady, cordoned (spec.unschedulable), marked for disruption by
    Karpenter (taint karpenter.sh/disrupted, kubernetes-sigs/karpenter pkg/apis/v1/taints.go), or a Karpenter node
    not initialised yet. Its checks are not shown, never failed: it is not the node the cluster will keep, or not
    yet."""
    spec = node.get("spec") or {}
    ready = condition(node, "Ready")
    reasons = []
    if ready is None or ready.get("status") != "True":
        reasons.append(f"NotReady ({(ready or {}).get('reason') or 'no Ready condition'})")
    if spec.get("unschedulable"):
        reasons.append("cordoned")
    if any(t.get("key") == DISRUPTED_TAINT for t in spec.get("taints") or []):
        reasons.append("being disrupted by Karpenter (karpenter.sh/disrupted)")
    if karpenter_uninitialised((node.get("metadata") or {}).get("labels") or {}):
        reasons.append("not initialised by Karpenter yet (no karpenter.sh/initialized=true)")
    return ", ".join(reasons) or None


class HardwareProfile(Protocol):
    """What a node view needs from the acceptance profile (duck-typed to keep kube/ free of profile.py)."""

    def for_instance(self, instance_type: str) -> Any: ...


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
    def from_node(cls, node: Obj, profile: HardwareProfile | None = None) -> "NodeInfo":
        meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
        labels = dict(meta.get("labels") or {})
        itype = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), "unknown")
        conditions = condition_states(node)
        inst = profile.for_instance(itype) if profile is not None else None
        allocatable = dict(status.get("allocatable") or {})
        return cls(
            name=meta.get("name", ""), instance_type=itype, labels=labels, taints=list(spec.get("taints") or []),
            allocatable=allocatable, capacity=dict(status.get("capacity") or {}),
            gpus_allocatable=count(allocatable.get(GPU_RESOURCE)), efa_allocatable=count(allocatable.get(EFA_RESOURCE)),
            nodepool=labels.get(NODEPOOL_LABEL), provider_id=spec.get("providerID"), conditions=conditions,
            ready=conditions.get("Ready") == "True", unschedulable=bool(spec.get("unschedulable")),
            zone=labels.get(ZONE_LABEL), nodegroup=labels.get(NODEGROUP_LABEL),
            expected_gpus=int(getattr(inst, "gpus", 0) or 0), expected_efa=int(getattr(inst, "efa", 0) or 0),
            efa_required=bool(getattr(inst, "efa_required", False)),
            ready_since=timestamp((condition(node, "Ready") or {}).get("lastTransitionTime")),
            os_image=str((status.get("nodeInfo") or {}).get("osImage") or ""), transition=transition_of(node))

    @property
    def is_gpu(self) -> bool:
        if self.gpus_allocatable > 0 or count(self.capacity.get(GPU_RESOURCE)) > 0:
            return True
        if self.labels.get(GFD_PRESENT) == "true" or self.expected_gpus > 0:
            return True
        return any(count(self.labels.get(k)) > 0 for k in GPU_COUNT_LABELS)

    @property
    def efa_attached(self) -> bool:
        """The node has EFA interfaces: it advertises them, or its NodeClaim says the launch attached them (a plugin
        that never registered them does not make a node without EFA)."""
        return self.efa_allocatable > 0 or count(self.capacity.get(EFA_RESOURCE)) > 0 or self.efa_launched > 0

    @property
    def is_efa(self) -> bool:
        """Judged as an EFA node: EFA attached, or required on its type by the profile. EFA is attached when asked
        for (Karpenter: a pod requesting vpc.amazonaws.com/efa or an EC2NodeClass with network interfaces; managed
        node groups: the launch template), not because the type could have it: an EFA-capable node without EFA whose
        type does not require it is not an EFA node."""
        return self.efa_attached or self.efa_required

    @property
    def efa_not_needed(self) -> bool:
        """EFA-capable type, none attached, and the profile does not require it: not an EFA node, and the report says
        so."""
        return self.expected_efa > 0 and not self.is_efa

    @property
    def mig_devices(self) -> dict[str, int]:
        """MIG devices the node advertises (`nvidia.com/mig-<profile>`: the device plugin's mixed strategy)."""
        return {k: count(v) for k, v in self.allocatable.items() if k.startswith(MIG_RESOURCE_PREFIX) and count(v)}
