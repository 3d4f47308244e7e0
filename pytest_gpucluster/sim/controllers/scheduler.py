"""The simulated default-scheduler: binds pending pods, or records why not as kube-scheduler words it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from pytest_gpucluster.sim.controllers.base import Controller, get_condition, is_deleting, set_condition
from pytest_gpucluster.sim.controllers.fit import (
    TERMINAL_PHASES,
    NodeUsage,
    filter_node,
    fit_error_message,
    node_score,
    taints_unnamed,
    unname_taint,
)
from pytest_gpucluster.sim.controllers.nodeindex import NodeIndex
from pytest_gpucluster.sim.controllers.quantity import QuantityError, pod_requests

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
DEFAULT_SCHEDULER = "default-scheduler"
# kube-scheduler's podInitialBackoffSeconds / podMaxBackoffSeconds: how often a still-unschedulable
# pod is retried, and so how often its FailedScheduling event count grows.
INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0


@dataclass
class _Attempt:
    message: str
    at: float
    backoff: float
    state: tuple[Any, ...] = ()   # what the message was computed from (see Scheduler._state)


def needs_gpu_toleration(pod: dict[str, Any]) -> bool:
    """ExtendedResourceToleration: the pod requests nvidia.com/gpu and lacks the toleration for it."""
    try:
        if pod_requests(pod).get(GPU_RESOURCE, 0) <= 0:
            return False
    except QuantityError:
        return False  # apiserver validation rejects it; admission leaves it alone
    return GPU_TOLERATION not in ((pod.get("spec") or {}).get("tolerations") or [])


def add_gpu_toleration(pod: dict[str, Any]) -> None:
    tolerations = pod.setdefault("spec", {}).setdefault("tolerations", [])
    if GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))


class Scheduler(Controller):
    """Binds pods with no nodeName to the emptiest feasible node, FIFO by creation time."""

    name = "scheduler"
    watches = ("pods", "nodes")

    def __init__(self, store: Any, scenario: Any, *, extended_resource_toleration: bool = False) -> None:
        super().__init__(store, scenario)
        self.extended_resource_toleration = extended_resource_toleration
        cluster = getattr(scenario, "cluster", None)
        self.taints_unnamed = taints_unnamed(str(getattr(cluster, "kubernetes_version", "1.32")))
        self._attempts: dict[str, _Attempt] = {}
        self._nodes = NodeIndex()
        self._pinned: dict[str, tuple[int, list[dict[str, Any]] | None]] = {}   # uid -> (node generation, candidates)
        # tolerations -> reasons every node gives a pod pinned elsewhere (valid for one node generation)
        self._by_tolerations: dict[str, Counter[str]] = {}
        self._by_tolerations_generation = -1
        self._remove_admission: Callable[[], None] | None = None

    async def setup(self) -> None:
        if self.extended_resource_toleration:
            self._remove_admission = self.store.add_admission(self._admit)

    def teardown(self) -> None:
        if self._remove_admission is not None:
            self._remove_admission()
            self._remove_admission = None

    @staticmethod
    def _admit(key: str, obj: dict[str, Any]) -> None:
        """EKS's ExtendedResourceToleration admission plugin, run by the store on every create."""
        if key == "pods" and needs_gpu_toleration(obj):
            add_gpu_toleration(obj)

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key == "nodes":
            return True
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        # New/unbound pods need scheduling; bound pods that finish or go away free resources.
        return (not spec.get("nodeName") or event_type == "DELETED" or phase in TERMINAL_PHASES)

    async def reconcile(self) -> None:
        self._nodes.refresh(self.store)
        pending = [p for p in self.store.pods_on_node("") if self._should_schedule(p)]
        live = {p["metadata"]["uid"] for p in pending}
        self._attempts = {uid: a for uid, a in self._attempts.items() if uid in live}
        if len(self._pinned) > 2 * len(live) + 64:
            self._pinned = {uid: c for uid, c in self._pinned.items() if uid in live}
        if not pending:
            return
        usage: dict[str, NodeUsage] = {}      # per pass, filled on first use of a node
        pending.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        now = self.clock()
        for pod in pending:
            attempt = self._attempts.get(pod["metadata"]["uid"])
            if attempt is not None and now - attempt.at < attempt.backoff and attempt.state == self._state(pod):
                continue   # in backoff and nothing it depends on changed: it stays in the unschedulable queue
            # Pods created before the admission hook was registered get the toleration here.
            if self.extended_resource_toleration and needs_gpu_toleration(pod):
                updated = self.try_mutate("pods", pod["metadata"]["namespace"], pod["metadata"]["name"],
                                          add_gpu_toleration)
                if updated is None:
                    continue
                pod = updated
            try:
                self._schedule_one(pod, usage)
            except QuantityError as exc:
                self._mark_unschedulable(pod, f"invalid resource quantity in pod spec: {exc}")

    def _should_schedule(self, pod: dict[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER or is_deleting(pod):
            return False
        return (pod.get("status") or {}).get("phase", "Pending") == "Pending"

    def _state(self, pod: dict[str, Any]) -> tuple[Any, ...]:
        """Everything a pod's scheduling outcome depends on: the nodes, its tolerations, and the pods on
        the nodes it is pinned to (all pods when it is not pinned)."""
        candidates = self._candidates(pod)
        if candidates is None:
            placed: Any = self.store.generation("pods")
        else:
            placed = tuple(p["metadata"]["resourceVersion"] for node in candidates
                           for p in self.store.pods_on_node(node["metadata"]["name"]))
        return (self._nodes.generation, repr((pod.get("spec") or {}).get("tolerations")), placed)

    def _candidates(self, pod: dict[str, Any]) -> list[dict[str, Any]] | None:
        """NodeIndex.candidates, remembered per pod until a node changes (affinity and nodeSelector are immutable)."""
        uid = pod["metadata"]["uid"]
        cached = self._pinned.get(uid)
        if cached is None or cached[0] != self._nodes.generation:
            cached = self._pinned[uid] = (self._nodes.generation, self._nodes.candidates(pod))
        return cached[1]

    def _usage(self, usage: dict[str, NodeUsage], node_name: str) -> NodeUsage:
        found = usage.get(node_name)
        if found is None:
            found = usage[node_name] = NodeUsage.of(self.store.pods_on_node(node_name))
        return found

    def _filter(self, pod: dict[str, Any], nodes: list[dict[str, Any]], usage: dict[str, NodeUsage]
                ) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
        reasons: dict[str, list[str]] = {}
        feasible: list[dict[str, Any]] = []
        for node in nodes:
            name = node["metadata"]["name"]
            why = filter_node(pod, node, self._usage(usage, name))
            if why:
                reasons[name] = why
            else:
                feasible.append(node)
        return reasons, feasible

    def _schedule_one(self, pod: dict[str, Any], usage: dict[str, NodeUsage]) -> None:
        nodes = self._nodes.nodes
        candidates = self._candidates(pod)
        reasons, feasible = self._filter(pod, nodes if candidates is None else candidates, usage)
        if feasible:
            best = max(feasible, key=lambda n: (node_score(pod, n, self._usage(usage, n["metadata"]["name"])),
                                                 [-ord(c) for c in n["metadata"]["name"]]))
            if self._bind(pod, best["metadata"]["name"]):
                usage.pop(best["metadata"]["name"], None)   # re-read with the pod bound on next use
            return
        histogram: Counter[str] = Counter(r for why in reasons.values() for r in why)
        if candidates is not None:
            histogram.update(self._rejections_elsewhere(pod, candidates))
        if self.taints_unnamed:
            histogram = Counter(unname_taint(r) for r in histogram.elements())
        self._mark_unschedulable(pod, fit_error_message(len(nodes), histogram))

    def _rejections_elsewhere(self, pod: dict[str, Any], candidates: list[dict[str, Any]]) -> Counter[str]:
        """Why the nodes a pinned pod is not pinned to reject it, without visiting them.

        Each of those nodes fails NodeAffinity at the latest, so its reason is the first of
        NodeUnschedulable, TaintToleration, NodeAffinity: a function of the node and the pod's
        tolerations only. The histogram of that over all nodes is cached per tolerations until a
        node changes (a fleet's pods share it); the candidates' own entries are taken out again.
        """
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        key = repr(tolerations)
        if self._by_tolerations_generation != self._nodes.generation:
            self._by_tolerations = {}
            self._by_tolerations_generation = self._nodes.generation
        probe: dict[str, Any] = {"spec": {"tolerations": tolerations, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}
        empty = NodeUsage({}, 0)
        everywhere = self._by_tolerations.get(key)
        if everywhere is None:
            everywhere = Counter(r for node in self._nodes.nodes for r in filter_node(probe, node, empty))
            self._by_tolerations[key] = everywhere
        histogram = Counter(everywhere)
        histogram.subtract(r for node in candidates for r in filter_node(probe, node, empty))
        return +histogram    # drop the reasons no node is left with

    def _bind(self, pod: dict[str, Any], node_name: str) -> bool:
        meta = pod["metadata"]
        now = self.clock()

        def bind(obj: dict[str, Any]) -> None:
            if (obj.get("spec") or {}).get("nodeName"):
                return
            obj["spec"]["nodeName"] = node_name
            conditions = obj.setdefault("status", {}).setdefault("conditions", [])
            set_condition(conditions, "PodScheduled", "True", "", now=now)
            for condition in conditions:
                if condition.get("type") == "PodScheduled":
                    condition.pop("reason", None)
                    condition.pop("message", None)
                    condition["lastProbeTime"] = None
            obj["status"].setdefault("phase", "Pending")

        bound = self.try_mutate("pods", meta["namespace"], meta["name"], bind)
        if bound is None or bound["spec"].get("nodeName") != node_name:
            return False
        self.store.record_event(bound, "Scheduled",
                                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}",
                                component=DEFAULT_SCHEDULER)
        self._attempts.pop(meta["uid"], None)
        return True

    def _mark_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        now = self.clock()
        attempt = self._attempts.get(meta["uid"])
        if attempt is not None and attempt.message == message and now - attempt.at < attempt.backoff:
            attempt.state = self._state(pod)
            self.wake_in(attempt.at + attempt.backoff - now)
            return
        current = get_condition(pod, "PodScheduled")
        if not (current and current.get("status") == "False" and current.get("message") == message):
            def unschedulable(obj: dict[str, Any]) -> None:
                conditions = obj.setdefault("status", {}).setdefault("conditions", [])
                set_condition(conditions, "PodScheduled", "False", "Unschedulable", message, now=now,
                              extra={"lastProbeTime": None})
                obj["status"].setdefault("phase", "Pending")

            if self.try_mutate("pods", meta["namespace"], meta["name"], unschedulable) is None:
                return
        self.store.record_event(pod, "FailedScheduling", message, type="Warning", component=DEFAULT_SCHEDULER)
        backoff = INITIAL_BACKOFF_S if attempt is None or attempt.message != message else min(
            attempt.backoff * 2, MAX_BACKOFF_S)
        self._attempts[meta["uid"]] = _Attempt(message, now, backoff, self._state(pod))
        self.wake_in(backoff)
