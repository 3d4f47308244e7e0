"""What the taints suite runs on the cluster: pods running `true`, pinned by hostname affinity to each node through
the scheduler (so taints apply), whose scheduling decision is the evidence (kube/decisions.place creates them, reads
the decision and deletes them; they never need to run)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..kube.decisions import DECISION_TIMEOUT_S
from ..kube.objects import NodeInfo
from ..kube.placement import toleration_for
from ..kube.probes import ProbeSpec


def pinned(node: str, name: str, **kwargs: Any) -> ProbeSpec:
    """A pod running `true`, pinned to `node` through the scheduler."""
    return ProbeSpec(name=name, command=["true"], node=node, timeout_s=DECISION_TIMEOUT_S, **kwargs)


def untolerated(node: NodeInfo) -> ProbeSpec:
    """No toleration at all, not even the profile's GPU tolerations: a GPU taint must keep it off the node."""
    return pinned(node.name, "no-toleration", tolerate_gpu=False)


def tolerated(node: NodeInfo, accepted: Iterable[Mapping[str, Any]]) -> ProbeSpec:
    """Tolerating the GPU taints accepted for the node, requesting no GPU: it must be placed there."""
    return pinned(node.name, "tolerated", tolerations=[toleration_for(t) for t in accepted])


def gpu_without_toleration(node: NodeInfo) -> ProbeSpec:
    """1 GPU and no toleration of its own: EKS's ExtendedResourceToleration admission may add one."""
    return pinned(node.name, "gpu-no-toleration", gpus=1, tolerate_gpu=False)


def gpu_on_cpu(node: NodeInfo) -> ProbeSpec:
    """1 GPU on a CPU-only node, tolerating the GPU taints: the scheduler must refuse it (no nvidia.com/gpu)."""
    return pinned(node.name, "gpu-on-cpu", gpus=1)
