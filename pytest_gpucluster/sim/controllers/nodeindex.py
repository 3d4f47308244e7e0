"""The scheduler's cached view of the nodes: sorted list, lookups by name and hostname, and pod pinning."""
from __future__ import annotations

from typing import Any, Mapping

HOSTNAME_LABEL = "kubernetes.io/hostname"


def _pins(expr: Mapping[str, Any], key: str) -> list[str] | None:
    """The values of an `In` requirement on `key` (the only operator that names nodes), else None."""
    if expr.get("key") == key and expr.get("operator") == "In":
        return [str(v) for v in expr.get("values") or []]
    return None


def _term_pins(term: Mapping[str, Any]) -> tuple[set[str] | None, set[str] | None]:
    """(names, hostnames) one nodeSelectorTerm restricts nodes to; None where it does not restrict."""
    names: set[str] | None = None
    hosts: set[str] | None = None
    for field in term.get("matchFields") or []:
        values = _pins(field, "metadata.name")
        if values is not None:
            names = set(values) if names is None else names & set(values)
    for expr in term.get("matchExpressions") or []:
        values = _pins(expr, HOSTNAME_LABEL)
        if values is not None:
            hosts = set(values) if hosts is None else hosts & set(values)
    return names, hosts


class NodeIndex:
    """Nodes sorted by name with name and hostname lookups, rebuilt only when a node changes.

    `candidates(pod)` narrows the nodes a pod can possibly be placed on when its required node
    affinity or nodeSelector pins it (probe pods: hostname affinity; DaemonSet pods: matchFields
    metadata.name). Every node left out would fail the NodeAffinity filter anyway, so the scheduler
    may run the full filter chain on the candidates only and still choose as kube-scheduler does.
    """

    def __init__(self) -> None:
        self.generation = -1
        self.nodes: list[dict[str, Any]] = []
        self.by_name: dict[str, dict[str, Any]] = {}
        self.by_hostname: dict[str, list[dict[str, Any]]] = {}
        self.position: dict[str, int] = {}

    def refresh(self, store: Any) -> bool:
        """Re-read the nodes if any changed since the last call; True if it did."""
        generation = store.generation("nodes")
        if generation == self.generation:
            return False
        self.generation = generation
        self.nodes = sorted(store.iter_objects("nodes"), key=lambda n: n["metadata"]["name"])
        self.by_name = {n["metadata"]["name"]: n for n in self.nodes}
        self.position = {name: i for i, name in enumerate(self.by_name)}
        self.by_hostname = {}
        for node in self.nodes:
            host = (node["metadata"].get("labels") or {}).get(HOSTNAME_LABEL)
            if host is not None:
                self.by_hostname.setdefault(str(host), []).append(node)
        return True

    def candidates(self, pod: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The nodes in name order that the pod's pinning allows, or None when the pod is not pinned."""
        spec = pod.get("spec") or {}
        allowed: dict[str, dict[str, Any]] | None = None
        selector_host = (spec.get("nodeSelector") or {}).get(HOSTNAME_LABEL)
        if selector_host is not None:
            allowed = {n["metadata"]["name"]: n for n in self.by_hostname.get(str(selector_host), [])}
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        if required is not None:
            union: dict[str, dict[str, Any]] = {}
            for term in required.get("nodeSelectorTerms") or []:
                names, hosts = _term_pins(term)
                if names is None and hosts is None:
                    union = {}
                    break   # this term admits unnamed nodes: the affinity does not pin
                found = self._lookup(names, hosts)
                union.update(found)
            else:
                allowed = union if allowed is None else {k: v for k, v in allowed.items() if k in union}
        if allowed is None:
            return None
        return sorted(allowed.values(), key=lambda n: self.position.get(n["metadata"]["name"], 0))

    def _lookup(self, names: set[str] | None, hosts: set[str] | None) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        if names is not None:
            found = {name: self.by_name[name] for name in names if name in self.by_name}
        if hosts is not None:
            by_host = {n["metadata"]["name"]: n for h in hosts for n in self.by_hostname.get(h, [])}
            found = by_host if names is None else {k: v for k, v in found.items() if k in by_host}
        return found
