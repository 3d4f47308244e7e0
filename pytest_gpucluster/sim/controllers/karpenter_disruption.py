"""The `node-disrupted` fault: a GPU node is cordoned and Karpenter marks it for disruption while the suite runs."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.controllers.base import Controller
from pytest_gpucluster.sim.tools.fake.fault import FIRST_GPU_NODE, FaultKind

FAULTS = (
    FaultKind("node-disrupted", {"after_probes": "0"}, FIRST_GPU_NODE,
              "the node is cordoned and tainted node.kubernetes.io/unschedulable and karpenter.sh/disrupted once that "
              "many of the run's probe pods finished on it (the drain held)"),
)

RUN_LABEL = "gpucluster.io/run"
# What a cordoned node carries: spec.unschedulable and the taint the node lifecycle controller adds for it
# (kubernetes.io/docs/reference/labels-annotations-taints: node.kubernetes.io/unschedulable, TaintNodesByCondition);
# what Karpenter v1 puts on a node it disrupts before draining it (kubernetes-sigs/karpenter pkg/apis/v1/taints.go
# DisruptedNoScheduleTaint).
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}


class Disruption(Controller):
    """Cordons and taints each `node-disrupted` node once `after_probes` of the suite's probe pods (labelled
    gpucluster.io/run) finished on it (0: at once), so the node goes into transition in the middle of a run. The
    drain is held (as a PodDisruptionBudget allowing no disruption holds Karpenter's evictions until the NodeClaim's
    terminationGracePeriod): running pods stay, the node stays cordoned and tainted for the rest of the run."""

    name = "disruption"
    watches = ("pods", "nodes")

    def __init__(self, store: Any, scenario: Any) -> None:
        super().__init__(store, scenario)
        faults = scenario.faults_for("node-disrupted") if scenario is not None else []
        self.after: dict[str, int] = {n: int(f.params.get("after_probes", 0)) for f in faults
                                      for n in scenario.fault_nodes(f)}
        self.done: set[str] = set()

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        return bool(set(self.after) - self.done)

    async def reconcile(self) -> None:
        for node, after in self.after.items():
            if node in self.done:
                continue
            finished = [p for p in self.store.pods_on_node(node) if RUN_LABEL in (p["metadata"].get("labels") or {})
                        and (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
            if len(finished) >= after and self.try_mutate("nodes", None, node, self._disrupt) is not None:
                self.done.add(node)

    @staticmethod
    def _disrupt(node: dict[str, Any]) -> None:
        spec = node.setdefault("spec", {})
        spec["unschedulable"] = True
        taints = spec.setdefault("taints", [])
        for taint in (UNSCHEDULABLE_TAINT, DISRUPTED_TAINT):
            if not any(t.get("key") == taint["key"] for t in taints):
                taints.append(dict(taint))
