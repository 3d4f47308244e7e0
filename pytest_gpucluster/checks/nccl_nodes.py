"""Which nodes the NCCL runs use: one node per type or every node for the single-node run, zone-aware groups of EFA
nodes for the multi-node runs, the waves they run in, and the groups that could never schedule (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from pytest_gpucluster.kube.objects import EFA_RESOURCE

if TYPE_CHECKING:
    from pytest_gpucluster.kube.discovery import NodeInfo


def gpus_of(node: NodeInfo) -> int:
    return node.gpus_allocatable or node.expected_gpus


def single_node_targets(nodes: Iterable[NodeInfo], every: bool) -> list[NodeInfo]:
    """Every GPU node, or the first (by name) of each instance type."""
    ordered = sorted(nodes, key=lambda n: n.name)
    if every:
        return ordered
    first: dict[str, NodeInfo] = {}
    for node in ordered:
        first.setdefault(node.instance_type, node)
    return [first[t] for t in sorted(first)]


ZONE_LABEL = "topology.kubernetes.io/zone"
# EC2 instance topology (DescribeInstanceTopology, labelled by the EKS node-labeller / Karpenter): nodes under the
# same network nodes are fewer hops apart. Layer 1 is the top of the tree, layer 3 the switch nearest the node.
NETWORK_LAYER_LABELS = tuple(f"topology.k8s.aws/network-node-layer-{i}" for i in (1, 2, 3))


@dataclass(frozen=True)
class NodeGroup:
    """The nodes of one multi-node job: `count` EFA GPU nodes of one instance type, one availability zone."""

    instance_type: str
    nodes: tuple[NodeInfo, ...]

    @property
    def id(self) -> str:
        return f"{'+'.join(n.name for n in self.nodes)}/{self.instance_type}"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes)


@dataclass
class Coverage:
    """Which EFA GPU nodes take part in a multi-node run, and why the others do not (evidence for the report)."""

    shown: dict[str, list[str]] = field(default_factory=dict)          # instance type -> node names
    not_shown: dict[str, dict[str, str]] = field(default_factory=dict)  # instance type -> node name -> why
    mode: dict[str, str] = field(default_factory=dict)                 # instance type -> all | sample

    def text(self, instance_type: str) -> str:
        shown = self.shown.get(instance_type, [])
        missing = [f"{n} ({why})" for n, why in sorted(self.not_shown.get(instance_type, {}).items())]
        out = (f"{instance_type}: {len(shown)} node(s) in a multi-node run (coverage "
               f"{self.mode.get(instance_type, 'all')}): {', '.join(shown) or '-'}")
        return out + (f"; not shown: {'; '.join(missing)}" if missing else "")


def _partition_key(node: NodeInfo) -> tuple[str, ...]:
    return (node.zone or node.labels.get(ZONE_LABEL) or "",)


def _chunks(nodes: list[NodeInfo], count: int) -> list[tuple[NodeInfo, ...]]:
    """Disjoint groups of `count` in order; a remainder joins the nodes before it (one group overlaps), so every
    node takes part in at least one run."""
    groups = [tuple(nodes[i:i + count]) for i in range(0, len(nodes) - len(nodes) % count, count)]
    rest = nodes[len(nodes) - len(nodes) % count:] if len(nodes) % count else []
    if rest and groups:
        groups.append(tuple(nodes[len(nodes) - count:]))
    return groups


def multi_node_groups(efa_nodes: Iterable[NodeInfo], count: int, coverage: dict[str, str] | None = None
                      ) -> tuple[list[NodeGroup], str, Coverage]:
    """The node groups of the multi-node runs, per instance type (ready, schedulable EFA GPU nodes).

    EFA traffic does not cross availability zones, so a group never does: nodes are partitioned by
    topology.kubernetes.io/zone, and inside a zone ordered by their topology.k8s.aws/network-node-layer-*
    labels (nodes under the same network nodes become neighbours), then by name. Coverage `all` (default): every
    node of a zone with >= count nodes is in a group (disjoint groups, plus one overlapping group for a
    remainder); `sample`: the first group of each type only. Returns (groups, why none, coverage)."""
    modes = coverage or {}
    by_type: dict[str, list[NodeInfo]] = {}
    for node in efa_nodes:
        if node.is_gpu and node.ready and not node.unschedulable:
            by_type.setdefault(node.instance_type, []).append(node)
    groups: list[NodeGroup] = []
    cov = Coverage()
    for itype, nodes in sorted(by_type.items()):
        mode = cov.mode[itype] = modes.get(itype, "all")
        zones: dict[tuple[str, ...], list[NodeInfo]] = {}
        for node in nodes:
            zones.setdefault(_partition_key(node), []).append(node)
        typed: list[NodeGroup] = []
        for zone, members in sorted(zones.items()):
            members.sort(key=lambda n: (tuple(n.labels.get(k, "~") for k in NETWORK_LAYER_LABELS), n.name))
            if len(members) < count:
                for n in members:
                    cov.not_shown.setdefault(itype, {})[n.name] = (f"only {len(members)} {itype} node(s) in zone "
                                                         f"{zone[0] or 'unknown'}; EFA does not cross zones")
                continue
            typed += [NodeGroup(itype, g) for g in _chunks(members, count)]
        if mode == "sample":
            for g in typed[1:]:
                for n in g.nodes:
                    if all(n not in kept.nodes for kept in typed[:1]):
                        cov.not_shown.setdefault(itype, {})[n.name] = "nccl.multi_node_coverage: sample (first group only)"
            typed = typed[:1]
        cov.shown[itype] = sorted({n.name for g in typed for n in g.nodes})
        groups += typed
    seen = ", ".join(f"{t} x{len(ns)}" for t, ns in sorted(by_type.items())) or "none"
    why = (f"multi-node NCCL needs {count} ready EFA GPU nodes of one instance type in one availability zone; "
           f"found {seen}")
    return groups, why, cov


def waves(groups: Sequence[NodeGroup]) -> list[list[NodeGroup]]:
    """Groups in rounds whose node sets are disjoint: each round's MPIJobs run at once."""
    out: list[list[NodeGroup]] = []
    for group in groups:
        for wave in out:
            if all(not (group.names & g.names) for g in wave):
                wave.append(group)
                break
        else:
            out.append([group])
    return out


def efa_missing(group: NodeGroup) -> str | None:
    """Why the group cannot run over EFA right now (a node advertises no EFA device), else None."""
    bare = [n for n in group.nodes if n.efa_allocatable <= 0]
    if not bare:
        return None
    names = ", ".join(f"{n.name} (0 {EFA_RESOURCE} allocatable, profile expects {n.expected_efa})" for n in bare)
    return (f"not run: {names}; an MPIJob requesting EFA would never schedule there. Check the EFA device plugin on "
            f"the node (it must tolerate the GPU taint) - see test_efa")


def cannot_run(group: NodeGroup, gpus_now: Mapping[str, int]) -> str | None:
    """Why the group's MPIJob could never schedule right now (a node advertises no EFA device, or fewer GPUs than
    a worker asks for: its device plugin is down or unhealthy), else None: such a job is not submitted, so the
    check fails at once instead of waiting out the MPIJob's deadline."""
    if (why := efa_missing(group)) is not None:
        return why
    wanted = min(gpus_of(n) for n in group.nodes)
    short = [n for n in group.nodes if gpus_now.get(n.name, wanted) < wanted]
    if not short:
        return None
    names = ", ".join(f"{n.name} ({gpus_now.get(n.name, 0)} nvidia.com/gpu from a healthy device plugin, a worker "
                      f"asks for {wanted})" for n in short)
    return (f"not run: {names}; an MPIJob worker would never schedule there. Check the NVIDIA device plugin on the "
            f"node - see test_nvidia_device_plugin_runs_on")


def full_groups(efa_nodes: Iterable[NodeInfo]) -> list[NodeGroup]:
    """One group per instance type and zone holding every ready, schedulable EFA GPU node there (>= 2 nodes): the
    training shape, one ring over many nodes (--gpucluster-nccl-full)."""
    by_key: dict[tuple[str, str], list[NodeInfo]] = {}
    for node in efa_nodes:
        if node.is_gpu and node.ready and not node.unschedulable:
            by_key.setdefault((node.instance_type, _partition_key(node)[0]), []).append(node)
    return [NodeGroup(itype, tuple(sorted(nodes, key=lambda n: n.name)))
            for (itype, _), nodes in sorted(by_key.items()) if len(nodes) >= 2]
