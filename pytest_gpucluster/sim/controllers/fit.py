"""kube-scheduler's pure decisions: taints vs tolerations, node affinity, resource fit, FailedScheduling text.

Filters run in kube-scheduler's default plugin order (NodeUnschedulable, NodeName, TaintToleration,
NodeAffinity, NodeResourcesFit) and a node fails on the first plugin that rejects it; only
NodeResourcesFit reports several reasons (one per insufficient resource) for one node. Messages are
the plugins' own constants; the envelope is `FitError.Error()` of kube-scheduler 1.29-1.31.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

from pytest_gpucluster.sim.controllers.quantity import QuantityError, parse_quantity, pod_requests, resource_list

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"

# NodeResourcesFit checks these in this order, then extended resources sorted by name.
_BASIC_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")

TERMINAL_PHASES = ("Succeeded", "Failed")


def untolerated_taint_reason(taint: Mapping[str, Any]) -> str:
    """`node(s) had untolerated taint {nvidia.com/gpu: present}` (empty value prints as `{key: }`)."""
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '') or ''}}}"


UNNAMED_TAINT_REASON = "node(s) had untolerated taint(s)"


def taints_unnamed(kubernetes_version: str) -> bool:
    """Whether the scheduler keeps taint keys and values out of its unschedulable messages: kubernetes/kubernetes#134740
    ("Pod statuses no longer include specific taint keys or values when scheduling fails because of untolerated
    taints"), in release-1.34 through the cherry-pick #135023 and later releases."""
    major, _, minor = kubernetes_version.partition(".")
    return (int(major), int(minor.split(".")[0] or 0)) >= (1, 34) if major.isdigit() else False


def unname_taint(reason: str) -> str:
    """The reason as a scheduler that hides taints prints it."""
    return UNNAMED_TAINT_REASON if reason.startswith("node(s) had untolerated taint {") else reason


def toleration_tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1 `Toleration.ToleratesTaint`: effect and key must match unless empty; Exists ignores the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates(tolerations: Iterable[Mapping[str, Any]] | None, taint: Mapping[str, Any]) -> bool:
    return any(toleration_tolerates(t, taint) for t in tolerations or ())


def first_untolerated_taint(taints: Iterable[Mapping[str, Any]] | None,
                            tolerations: Iterable[Mapping[str, Any]] | None,
                            effects: Sequence[str] = _SCHEDULING_EFFECTS) -> Mapping[str, Any] | None:
    """The first taint with one of `effects` that no toleration tolerates (PreferNoSchedule never blocks)."""
    tolerations = list(tolerations or ())
    for taint in taints or ():
        if taint.get("effect") in effects and not tolerates(tolerations, taint):
            return taint
    return None


def _expression_matches(expr: Mapping[str, Any], values_by_key: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    operator = expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or []]
    present = key in values_by_key
    value = values_by_key.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        try:
            have, want = int(str(value)), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One nodeSelectorTerm: all matchExpressions (labels) and matchFields (metadata.name) hold.

    A term with neither matches nothing, as in `nodeaffinity.NewNodeSelector`.
    """
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    metadata = node.get("metadata") or {}
    labels = {k: str(v) for k, v in (metadata.get("labels") or {}).items()}
    field_values = {"metadata.name": metadata.get("name", "")}
    return (all(_expression_matches(e, labels) for e in expressions)
            and all(_expression_matches(f, field_values) for f in fields))


def node_selector_matches(selector: Mapping[str, Any] | None, node: Mapping[str, Any]) -> bool:
    """A v1 NodeSelector: its terms are ORed."""
    if selector is None:
        return True
    return any(node_selector_term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def pod_matches_node_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """spec.nodeSelector (every label equal) and required node affinity."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if key not in labels or str(labels[key]) != str(value):
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return node_selector_matches(required, node)


def node_is_ready(node: Mapping[str, Any]) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def node_effective_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """spec.taints plus the taints the node lifecycle controller would put on a not-ready node."""
    taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or []]
    if not node_is_ready(node) and not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    return taints


@dataclass
class NodeUsage:
    """What is already requested on a node by its non-terminated pods."""

    requested: dict[str, Fraction]
    pods: int

    @classmethod
    def of(cls, pods: Iterable[Mapping[str, Any]]) -> "NodeUsage":
        requested: dict[str, Fraction] = {}
        count = 0
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                continue
            count += 1
            try:
                requests = pod_requests(pod)
            except QuantityError:
                continue  # the apiserver would have refused it; it occupies a pod slot only
            for name, amount in requests.items():
                requested[name] = requested.get(name, Fraction(0)) + amount
        return cls(requested, count)

    def add(self, pod: Mapping[str, Any]) -> None:
        self.pods += 1
        for name, amount in pod_requests(pod).items():
            self.requested[name] = self.requested.get(name, Fraction(0)) + amount


def insufficient_resources(pod: Mapping[str, Any], node: Mapping[str, Any], usage: NodeUsage) -> list[str]:
    """NodeResourcesFit reasons: `Too many pods`, `Insufficient cpu`, `Insufficient nvidia.com/gpu` ..."""
    allocatable = resource_list((node.get("status") or {}).get("allocatable"))
    reasons: list[str] = []
    if "pods" in allocatable and usage.pods + 1 > allocatable["pods"]:
        reasons.append(REASON_TOO_MANY_PODS)
    requests = {k: v for k, v in pod_requests(pod).items() if v > 0 and k != "pods"}
    ordered = [r for r in _BASIC_RESOURCES if r in requests] + sorted(
        r for r in requests if r not in _BASIC_RESOURCES)
    for name in ordered:
        free = allocatable.get(name, Fraction(0)) - usage.requested.get(name, Fraction(0))
        if requests[name] > free:
            reasons.append(f"Insufficient {name}")
    return reasons


def filter_node(pod: Mapping[str, Any], node: Mapping[str, Any], usage: NodeUsage) -> list[str]:
    """Why `pod` cannot go to `node` (empty list: it fits), in the scheduler's own words."""
    spec = pod.get("spec") or {}
    node_spec = node.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if node_spec.get("unschedulable") and not tolerates(
            tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
        return [REASON_UNSCHEDULABLE]
    wanted_name = spec.get("nodeName")
    if wanted_name and wanted_name != (node.get("metadata") or {}).get("name"):
        return [REASON_NODE_NAME]
    taint = first_untolerated_taint(node_effective_taints(node), tolerations)
    if taint is not None:
        return [untolerated_taint_reason(taint)]
    if not pod_matches_node_affinity(pod, node):
        return [REASON_AFFINITY]
    return insufficient_resources(pod, node, usage)


def failed_scheduling_message(num_nodes: int, reasons_by_node: Mapping[str, Sequence[str]]) -> str:
    """kube-scheduler's FitError text, e.g.

    `0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint
    {nvidia.com/gpu: present}. preemption: 0/4 nodes are available: 4 Preemption is not helpful
    for scheduling.`  The histogram is sorted as strings, as `sortReasonsHistogram` does.
    """
    histogram: Counter[str] = Counter()
    for reasons in reasons_by_node.values():
        for reason in reasons:
            histogram[reason] += 1
    return fit_error_message(num_nodes, histogram)


def fit_error_message(num_nodes: int, histogram: Mapping[str, int]) -> str:
    """`failed_scheduling_message` from a ready histogram (reason -> number of nodes it rejected)."""
    head = f"0/{num_nodes} nodes are available:"
    if num_nodes == 0:
        return "no nodes available to schedule pods"  # ErrNoNodesAvailable
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    message = f"{head} {', '.join(parts)}." if parts else head
    return (f"{message} preemption: 0/{num_nodes} nodes are available: "
            f"{num_nodes} {PREEMPTION_NOT_HELPFUL}.")


def node_score(pod: Mapping[str, Any], node: Mapping[str, Any], usage: NodeUsage) -> float:
    """LeastAllocated-style score on cpu and memory: emptier nodes first (higher is better)."""
    allocatable = resource_list((node.get("status") or {}).get("allocatable"))
    requests = pod_requests(pod)
    score = 0.0
    for name in ("cpu", "memory"):
        capacity = allocatable.get(name, Fraction(0))
        if capacity <= 0:
            continue
        used = usage.requested.get(name, Fraction(0)) + requests.get(name, Fraction(0))
        score += float((capacity - used) / capacity)
    return score


def parse_gpu_count(node: Mapping[str, Any], resource: str = "nvidia.com/gpu") -> int:
    """Allocatable count of an extended resource on a node, 0 when absent."""
    value = ((node.get("status") or {}).get("allocatable") or {}).get(resource)
    return int(parse_quantity(value)) if value is not None else 0
