"""The DaemonSet controller: one pod per eligible node (as the real one decides eligibility) and DS status."""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Callable

from pytest_gpucluster.sim.controllers.base import (
    Controller,
    get_condition,
    is_deleting,
    owned_by,
    owner_reference,
    random_suffix,
)
from pytest_gpucluster.sim.controllers.fit import first_untolerated_taint, node_effective_taints, pod_matches_node_affinity

BEHAVIOUR_ANNOTATION = "sim.gpucluster.io/behaviour"

# The tolerations `daemon.AddOrUpdateDaemonPodTolerations` adds to every daemon pod.
AUTO_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}

# (daemonset, node) -> value for the kubelet's behaviour annotation ("crashloop", "never-ready") or None.
BehaviourFn = Callable[[dict[str, Any], dict[str, Any]], "str | None"]


def daemon_pod_tolerations(template_spec: dict[str, Any]) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in template_spec.get("tolerations") or []]
    extra = list(AUTO_TOLERATIONS)
    if template_spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    for toleration in extra:
        if toleration not in tolerations:
            tolerations.append(dict(toleration))
    return tolerations


def node_should_run_daemon(ds: dict[str, Any], node: dict[str, Any]) -> bool:
    """`nodeShouldRunDaemonPod`: node name, node affinity/selector and NoSchedule/NoExecute taints."""
    template = (ds.get("spec") or {}).get("template") or {}
    spec = template.get("spec") or {}
    wanted = spec.get("nodeName")
    if wanted and wanted != node["metadata"]["name"]:
        return False
    if not pod_matches_node_affinity({"spec": spec}, node):
        return False
    return first_untolerated_taint(node_effective_taints(node), daemon_pod_tolerations(spec)) is None


def node_should_keep_daemon(ds: dict[str, Any], node: dict[str, Any]) -> bool:
    """`shouldContinueRunning`: affinity still matches and no NoExecute taint is untolerated."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not pod_matches_node_affinity({"spec": spec}, node):
        return False
    return first_untolerated_taint(node_effective_taints(node), daemon_pod_tolerations(spec),
                                   effects=("NoExecute",)) is None


def daemon_pod_node(pod: dict[str, Any]) -> str | None:
    """The node a daemon pod belongs to: spec.nodeName once bound, else its matchFields affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and field.get("values"):
                return str(field["values"][0])
    return None


def template_hash(ds: dict[str, Any]) -> str:
    """Stand-in for the ControllerRevision hash: stable per template content."""
    text = json.dumps((ds.get("spec") or {}).get("template") or {}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def build_daemon_pod(ds: dict[str, Any], node_name: str, behaviour: str | None) -> dict[str, Any]:
    meta = ds["metadata"]
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    labels = dict(tmeta.get("labels") or {})
    labels["controller-revision-hash"] = template_hash(ds)
    labels["pod-template-generation"] = str(meta.get("generation", 1))
    annotations = dict(tmeta.get("annotations") or {})
    if behaviour:
        annotations[BEHAVIOUR_ANNOTATION] = behaviour
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    spec["tolerations"] = daemon_pod_tolerations(spec)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{meta['name']}-{random_suffix()}", "namespace": meta["namespace"],
                     "labels": labels, "annotations": annotations,
                     "ownerReferences": [owner_reference(ds)]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def pod_is_ready(pod: dict[str, Any]) -> bool:
    condition = get_condition(pod, "Ready")
    return bool(condition and condition.get("status") == "True") and not is_deleting(pod)


class DaemonSetController(Controller):
    """Creates and deletes daemon pods so each eligible node runs exactly one, and writes DS status."""

    name = "daemonsets"
    watches = ("daemonsets.apps", "nodes", "pods")

    def __init__(self, store: Any, scenario: Any, *, behaviour: BehaviourFn | None = None) -> None:
        super().__init__(store, scenario)
        self.behaviour = behaviour or (lambda ds, node: None)
        # (daemonset uid, node name) -> ((ds resourceVersion, node resourceVersion), should run)
        self._eligible: dict[tuple[str, str], tuple[tuple[Any, Any], bool]] = {}

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key != "pods":
            return True
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        return any(r.get("kind") == "DaemonSet" for r in refs)

    async def reconcile(self) -> None:
        nodes = self.items("nodes")
        daemonsets = self.items("daemonsets.apps")
        if len(self._eligible) > 2 * len(nodes) * len(daemonsets) + 64:   # forget deleted nodes and sets
            live = {(d["metadata"]["uid"], n["metadata"]["name"]) for d in daemonsets for n in nodes}
            self._eligible = {k: v for k, v in self._eligible.items() if k in live}
        for ds in daemonsets:
            if is_deleting(ds):
                continue
            self._sync(ds, nodes, [p for p in self.store.dependents(ds["metadata"]["uid"], "pods")
                                   if owned_by(p, ds)])

    def _should_run(self, ds: dict[str, Any], node: dict[str, Any]) -> bool:
        """node_should_run_daemon, remembered until the DaemonSet or the node changes."""
        key = (ds["metadata"]["uid"], node["metadata"]["name"])
        versions = (ds["metadata"].get("resourceVersion"), node["metadata"].get("resourceVersion"))
        cached = self._eligible.get(key)
        if cached is None or cached[0] != versions:
            cached = self._eligible[key] = (versions, node_should_run_daemon(ds, node))
        return cached[1]

    def _sync(self, ds: dict[str, Any], nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        meta = ds["metadata"]
        namespace = meta["namespace"]
        nodes_by_name = {n["metadata"]["name"]: n for n in nodes}
        eligible = {name: n for name, n in nodes_by_name.items() if self._should_run(ds, n)}
        by_node: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            node_name = daemon_pod_node(pod)
            if node_name is None or node_name not in nodes_by_name:
                self.try_delete("pods", namespace, pod["metadata"]["name"])
                continue
            by_node.setdefault(node_name, []).append(pod)
        for node_name, node_pods in by_node.items():
            live = [p for p in node_pods if not is_deleting(p)]
            failed = [p for p in live if (p.get("status") or {}).get("phase") == "Failed"]
            for pod in failed:  # the real controller deletes failed daemon pods and makes new ones
                self.try_delete("pods", namespace, pod["metadata"]["name"])
            live = [p for p in live if p not in failed]
            if node_name not in eligible:
                keep = node_should_keep_daemon(ds, nodes_by_name[node_name])
                for pod in live:
                    if keep and (pod.get("spec") or {}).get("nodeName"):
                        continue  # may keep running where it may not schedule: misscheduled
                    self.try_delete("pods", namespace, pod["metadata"]["name"])
            else:
                for extra in sorted(live, key=lambda p: p["metadata"]["name"])[1:]:
                    self.try_delete("pods", namespace, extra["metadata"]["name"])
        for node_name, node in sorted(eligible.items()):
            if not [p for p in by_node.get(node_name, []) if not is_deleting(p)
                    and (p.get("status") or {}).get("phase") != "Failed"]:
                pod = build_daemon_pod(ds, node_name, self.behaviour(ds, node))
                while self.store.exists("pods", namespace, pod["metadata"]["name"]):
                    # 27^5 suffixes: thousands of daemon pods collide (generateName retries the same way)
                    pod["metadata"]["name"] = f"{meta['name']}-{random_suffix()}"
                created = self.store.create("pods", pod)
                by_node.setdefault(node_name, []).append(created)
        self._write_status(ds, eligible, by_node)

    def _write_status(self, ds: dict[str, Any], eligible: dict[str, dict[str, Any]],
                      by_node: dict[str, list[dict[str, Any]]]) -> None:
        meta = ds["metadata"]
        current_hash = template_hash(ds)
        desired = len(eligible)
        current = ready = updated = misscheduled = 0
        for node_name, pods in by_node.items():
            live = [p for p in pods if not is_deleting(p)]
            if not live:
                continue
            if node_name not in eligible:
                misscheduled += 1
                continue
            current += 1
            if any(pod_is_ready(p) for p in live):
                ready += 1
            if any(p["metadata"].get("labels", {}).get("controller-revision-hash") == current_hash for p in live):
                updated += 1
        status = {
            "currentNumberScheduled": current, "desiredNumberScheduled": desired,
            "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": ready,
            "updatedNumberScheduled": updated, "observedGeneration": meta.get("generation", 1),
        }
        if desired - ready:
            status["numberUnavailable"] = desired - ready
        old = ds.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()) and ("numberUnavailable" in old) == (
                "numberUnavailable" in status):
            return

        def write(obj: dict[str, Any]) -> None:
            new_status = {k: v for k, v in (obj.get("status") or {}).items() if k != "numberUnavailable"}
            new_status.update(status)
            obj["status"] = new_status

        self.try_mutate("daemonsets.apps", meta["namespace"], meta["name"], write, subresource="status")
