"""The pod garbage collector: force-deletes pods bound to nodes that no longer exist, as kube-controller-manager's podgc does."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.controllers.base import Controller


class PodGarbageCollector(Controller):
    """Orphaned pods (their node is gone) are deleted with grace 0: no kubelet is left to finish them.

    The first pass checks every pod; later passes check only the nodes named by the events since
    (a pod created bound to a node, a node deleted), so a pod creation costs O(1), not a scan.
    """

    name = "podgc"
    watches = ("nodes", "pods")

    def __init__(self, store: Any, scenario: Any) -> None:
        super().__init__(store, scenario)
        self._everything = True          # until the first pass has looked at every pod
        self._suspects: set[str] = set()  # node names whose pods to check on the next pass

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key == "nodes" and event_type == "DELETED":
            self._suspects.add(obj["metadata"]["name"])
            return True
        if key == "pods" and event_type == "ADDED":
            node_name = (obj.get("spec") or {}).get("nodeName")
            if node_name:
                self._suspects.add(node_name)
            return bool(node_name)
        return False

    async def reconcile(self) -> None:
        if self._everything:
            self._everything = False
            self._suspects = {n for p in self.items("pods") if (n := (p.get("spec") or {}).get("nodeName"))}
        suspects, self._suspects = self._suspects, set()
        for node_name in sorted(suspects):
            if self.store.exists("nodes", None, node_name):
                continue
            for pod in list(self.store.pods_on_node(node_name)):
                meta = pod["metadata"]
                self.try_delete("pods", meta["namespace"], meta["name"], grace_seconds=0)
