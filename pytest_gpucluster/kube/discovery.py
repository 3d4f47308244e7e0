"""Node discovery: the Inventory of GPU, EFA and CPU-only nodes, node selection and deterministic sampling."""
from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import errors
from .client import Cluster
from .objects import EFA_RESOURCE, HardwareProfile, transition_of
# NodeInfo is defined with the other I/O-free views in kube/objects.py; kube/mpijob.py and the NCCL suite import it here
from .objects import NodeInfo as NodeInfo
from .quantity import count

NODECLAIMS = "nodeclaims.karpenter.sh"
NODEPOOLS = "nodepools.karpenter.sh"


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
    return {str(c["status"]["nodeName"]): count(((c.get("status") or {}).get("capacity") or {}).get(EFA_RESOURCE))
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
                 clock: Callable[[], float] | None = None) -> None:
        # time.monotonic looked up at each call, not bound here: a replay (bundle/replay.py) installs its virtual
        # clock after import, and the node lists it answers must be asked as often as the recorded run asked them
        self.cluster, self.inventory, self.max_age_s = cluster, inventory, max_age_s
        self.clock: Callable[[], float] = clock or (lambda: time.monotonic())
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
