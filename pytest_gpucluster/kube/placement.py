"""Where probe pods may go: the ONE toleration builder for pods pinned to nodes under test."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol, Sequence

# Taints that say the node is not usable yet or is going away: never tolerated by a probe (a probe pod there would
# judge a node in transition). Sources: well-known taints (kubernetes.io/docs/reference/labels-annotations-taints),
# Karpenter v1 `karpenter.sh/disrupted` and `karpenter.sh/unregistered`, cluster-autoscaler's deletion taints.
LIFECYCLE_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "karpenter.sh/",
                            "ToBeDeletedByClusterAutoscaler", "DeletionCandidateOfClusterAutoscaler")
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


class Tainted(Protocol):
    taints: list[dict[str, Any]]


def is_lifecycle_taint(taint: Mapping[str, Any]) -> bool:
    return str(taint.get("key", "")).startswith(LIFECYCLE_TAINT_PREFIXES)


def toleration_for(taint: Mapping[str, Any]) -> dict[str, str]:
    """`Exists` on the taint's key (and effect, when it has one): tolerates any value of that taint."""
    tol = {"key": str(taint["key"]), "operator": "Exists"}
    if taint.get("effect"):
        tol["effect"] = str(taint["effect"])
    return tol


def tolerations_for(nodes: Iterable[Tainted], extra: Sequence[Mapping[str, str]] = ()) -> list[dict[str, str]]:
    """Tolerations for a probe pinned to `nodes`: `extra` (e.g. the profile's GPU tolerations) plus one per
    blocking workload taint of those nodes (GPU, EFA, Auto Mode, site taints), never the lifecycle ones nor the
    node's NodePool startupTaints (a node still carrying one is not ready for work: Karpenter has not initialised it).
    Tolerating the node's own taints lets visibility/EFA/NCCL be judged even where the taints are wrong;
    whether they are right is the taints suite's question."""
    out: list[dict[str, str]] = [dict(t) for t in extra]
    for node in nodes:
        startup = {(t.get("key"), t.get("effect")) for t in getattr(node, "startup_taints", None) or []}
        for taint in node.taints:
            if (taint.get("effect") not in BLOCKING_EFFECTS or is_lifecycle_taint(taint)
                    or (taint.get("key"), taint.get("effect")) in startup):
                continue
            tol = toleration_for(taint)
            if tol not in out and {"key": tol["key"], "operator": "Exists"} not in out:
                out.append(tol)
    return out
