"""What the simulated Karpenter can launch: instance offerings with their well-known labels, prices and NodePool matching."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Mapping

from pytest_gpucluster.sim.controllers.fit import first_untolerated_taint, pod_matches_node_affinity
from pytest_gpucluster.sim.controllers.quantity import parse_quantity, pod_requests
from pytest_gpucluster.sim.hardware import INSTANCE_TYPES, InstanceType

AWS_PREFIX = "karpenter.k8s.aws/"
AUTO_PREFIX = "eks.amazonaws.com/"
GPU = "nvidia.com/gpu"
EFA = "vpc.amazonaws.com/efa"

# Relative on-demand $/h used only to order candidates ("cheapest that fits"): per-GPU price by
# model plus vCPU and memory. Roughly AWS us-east-1 list prices; spot is 40% of on-demand.
_GPU_HOURLY = {"Tesla T4": 0.35, "NVIDIA A10G": 0.9, "NVIDIA L4": 0.6, "NVIDIA L40S": 1.6,
               "NVIDIA A100-SXM4-40GB": 3.4, "NVIDIA A100-SXM4-80GB": 4.3, "NVIDIA H100 80GB HBM3": 6.9,
               "NVIDIA H200": 7.9, "NVIDIA B200": 14.2, "NVIDIA B300 SXM6 AC": 17.0}
# B200: p6-b200.48xlarge on-demand 113.93 $/h / 8. B300: no list price found; placed above B200 so that adding it
# never makes it the "cheapest that fits" for a pod that fits a smaller GPU.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Go durations as NodePools use them (`30s`, `1m`, `720h`, `1h30m`); None for `Never` or empty."""
    if not text or str(text) == "Never":
        return None
    total, pos = 0.0, 0
    for match in _DURATION.finditer(str(text)):
        if match.start() != pos:
            break
        total += float(match.group(1)) * {"h": 3600, "m": 60, "s": 1}[match.group(2)]
        pos = match.end()
    if pos != len(str(text)):
        raise ValueError(f"invalid duration {text!r}: expected Go duration like 30s, 5m, 720h or Never")
    return total


def relative_price(instance: InstanceType, capacity_type: str = "on-demand") -> float:
    price = instance.vcpu * 0.03 + instance.memory_gib * 0.004
    if instance.gpu_model is not None:
        price += instance.gpus * _GPU_HOURLY.get(instance.gpu_model.name, 2.0)
    return price * (0.4 if capacity_type == "spot" else 1.0)


def gpu_short_name(instance: InstanceType) -> str:
    """`karpenter.k8s.aws/instance-gpu-name` values: h100, a100, a10g, l4, l40s, t4, h200."""
    if instance.gpu_model is None:
        return ""
    name = instance.gpu_model.name.replace("NVIDIA ", "").replace("Tesla ", "")
    return name.split("-")[0].split(" ")[0].lower()


def instance_labels(instance: InstanceType, prefix: str = AWS_PREFIX) -> dict[str, str]:
    """The labels Karpenter derives from an instance type (`karpenter.k8s.aws/instance-*`)."""
    labels = {
        "node.kubernetes.io/instance-type": instance.name,
        "kubernetes.io/arch": instance.arch, "kubernetes.io/os": "linux",
        f"{prefix}instance-category": instance.category, f"{prefix}instance-family": instance.family,
        f"{prefix}instance-generation": instance.generation, f"{prefix}instance-size": instance.size,
        f"{prefix}instance-cpu": str(instance.vcpu), f"{prefix}instance-memory": str(instance.memory_gib * 1024),
        f"{prefix}instance-network-bandwidth": str(int(instance.network_gbps * 1000)),
        f"{prefix}instance-hypervisor": "nitro", f"{prefix}instance-encryption-in-transit-supported": "true",
    }
    if instance.gpu_model is not None and instance.gpus:
        labels.update({f"{prefix}instance-gpu-count": str(instance.gpus),
                       f"{prefix}instance-gpu-name": gpu_short_name(instance),
                       f"{prefix}instance-gpu-manufacturer": "nvidia",
                       f"{prefix}instance-gpu-memory": str(instance.gpu_model.memory_mib)})
    return labels


def _with_devices(resources: dict[str, str], instance: InstanceType) -> dict[str, str]:
    """The resources plus the extended resources (GPUs, EFA interfaces) the instance has."""
    out = dict(resources)
    if instance.gpus:
        out[GPU] = str(instance.gpus)
    if instance.efa:
        out[EFA] = str(instance.efa)
    return out


def instance_capacity(instance: InstanceType) -> dict[str, str]:
    """NodeClaim status.capacity: the node's capacity plus the extended resources the instance has."""
    return _with_devices(instance.capacity(), instance)


def instance_allocatable(instance: InstanceType) -> dict[str, str]:
    """NodeClaim status.allocatable: the node's allocatable plus the instance's extended resources."""
    return _with_devices(instance.allocatable(), instance)


@dataclass
class Offering:
    """One (instance type, zone, capacity type) a NodePool may launch, with the node labels it would carry."""

    instance: InstanceType
    zone: str
    capacity_type: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def price(self) -> float:
        return relative_price(self.instance, self.capacity_type)


def _requirement_holds(req: dict[str, Any], labels: dict[str, str]) -> bool:
    return pod_matches_node_affinity({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [req]}]}}}}}, {"metadata": {"labels": labels}})


def nodepool_offerings(nodepool: dict[str, Any], zones: Iterable[str], region: str,
                       auto_mode: bool = False) -> list[Offering]:
    """Every offering that satisfies the NodePool's requirements, labels included."""
    prefix = AUTO_PREFIX if auto_mode else AWS_PREFIX
    template = (nodepool.get("spec") or {}).get("template") or {}
    requirements = (template.get("spec") or {}).get("requirements") or []
    template_labels = dict((template.get("metadata") or {}).get("labels") or {})
    name = nodepool["metadata"]["name"]
    custom: dict[str, str] = {}
    for req in requirements:  # single-valued custom requirements become node labels
        key = req.get("key", "")
        if req.get("operator") == "In" and req.get("values") and not key.startswith(
                (AWS_PREFIX, AUTO_PREFIX, "node.kubernetes.io/", "kubernetes.io/", "karpenter.sh/",
                 "topology.kubernetes.io/")):
            custom[key] = str(req["values"][0])
    out: list[Offering] = []
    for instance in INSTANCE_TYPES.values():
        base = instance_labels(instance, prefix)
        for zone in zones:
            for capacity_type in ("on-demand", "spot"):
                labels = {**custom, **template_labels, **base, "karpenter.sh/nodepool": name,
                          "karpenter.sh/capacity-type": capacity_type,
                          "topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": region}
                if all(_requirement_holds(r, labels) for r in requirements):
                    out.append(Offering(instance, zone, capacity_type, labels))
    return out


def pod_tolerates_nodepool(pod: dict[str, Any], nodepool: dict[str, Any]) -> Mapping[str, Any] | None:
    """The first NodePool taint the pod does not tolerate (startup taints need no toleration)."""
    template_spec = ((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}
    return first_untolerated_taint(template_spec.get("taints") or [],
                                   (pod.get("spec") or {}).get("tolerations") or [])


def pod_fits_offering(pod: dict[str, Any], offering: Offering, already: dict[str, Fraction] | None = None,
                      already_pods: int = 0) -> bool:
    """Node affinity/selector against the offering's labels, and requests within its allocatable."""
    if not pod_matches_node_affinity(pod, {"metadata": {"labels": offering.labels}}):
        return False
    allocatable = {k: parse_quantity(v) for k, v in instance_allocatable(offering.instance).items()}
    requests = pod_requests(pod)
    for name, amount in requests.items():
        if amount <= 0:
            continue
        total = amount + (already or {}).get(name, Fraction(0))
        if total > allocatable.get(name, Fraction(0)):
            return False
    return already_pods + 1 <= allocatable.get("pods", Fraction(110))
