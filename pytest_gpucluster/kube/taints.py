"""What the scheduler matches a pod against a node by, as Kubernetes does it: taints and tolerations, node selectors
and required node affinity, and the words it refuses a pod with for a taint. Pure (no I/O): shared by the judges, the
fail-fast (kube/schedulability.py) and the checks that ask whether a DaemonSet can run on a node."""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

# kube-scheduler's TaintToleration filter (pkg/scheduler/framework/plugins/tainttoleration/taint_toleration.go) names
# the untolerated taint with its key inside braces:
#   v1.25+:  `node(s) had untolerated taint {<key>: <value>}`
#   <= 1.24: `node(s) had taint {<key>: <value>}, that the pod didn't tolerate`
# Since kubernetes/kubernetes#134740 (cherry-picked to release-1.34 as #135023) pod statuses no longer carry the taint:
# `node(s) had untolerated taint(s)`; the oldest wording had none either: `node(s) had taints that the pod didn't
# tolerate`. Every form is a refusal by a taint; only the first two name it.
UNTOLERATED_NAMED = (re.compile(r"had untolerated taint \{(?P<key>[^:}]*):"),
                     re.compile(r"had taint \{(?P<key>[^:}]*):[^}]*\},? that the pod didn't tolerate"))
UNTOLERATED_UNNAMED = ("had untolerated taint(s)", "had taints that the pod didn't tolerate")


def untolerated_taint_keys(message: str) -> set[str]:
    """The taint keys a scheduler message names as untolerated (empty for the key-less wordings)."""
    return {m["key"] for pattern in UNTOLERATED_NAMED for m in pattern.finditer(message)}


def refused_for_a_taint(message: str) -> bool:
    """The scheduler refused the pod for a taint it does not tolerate, in any wording (named or not)."""
    return bool(untolerated_taint_keys(message)) or any(text in message for text in UNTOLERATED_UNNAMED)


def tolerates(tolerations: Iterable[Mapping[str, Any]] | None, taint: Mapping[str, Any]) -> bool:
    """Kubernetes toleration matching: empty key + Exists matches every taint; empty effect matches every effect."""
    for tol in tolerations or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        operator = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if operator == "Exists":
                return True
            continue
        if tol["key"] == taint.get("key") and (operator == "Exists"
                                               or (tol.get("value") or "") == (taint.get("value") or "")):
            return True
    return False


def taint_text(taint: Mapping[str, Any]) -> str:
    """`key=value:Effect` as kubectl prints it (`key:Effect` without a value)."""
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


def _requirement_holds(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One node selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against a node's labels."""
    key, op = str(req.get("key", "")), str(req.get("operator", "In"))
    values = [str(v) for v in req.get("values") or []]
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "In":
        return key in labels and labels[key] in values
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def selects(pod_spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A pod spec's nodeSelector and required node affinity admit a node with these labels (the terms are ORed,
    the expressions of a term ANDed; a term with matchFields only is not judged here and does not admit)."""
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(term.get("matchExpressions") and all(_requirement_holds(r, labels) for r in term["matchExpressions"])
               for term in terms)
