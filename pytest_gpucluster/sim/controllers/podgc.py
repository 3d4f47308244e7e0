"""The pod garbage collector: force-deletes pods bound to nodes that no longer exist, as kube-controller-manager's podgc does."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.controllers.base import Controller


class PodGarbageCollector(Controller):
    """Orphaned pods (their node is gone) are deleted with grace 0: no kubelet is left to finish them."""

    name = "podgc"
    watches = ("nodes", "pods")

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        return key == "nodes" and event_type == "DELETED" or key == "pods" and event_type == "ADDED"

    async def reconcile(self) -> None:
        nodes = {n["metadata"]["name"] for n in self.items("nodes")}
        for pod in self.items("pods"):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and node_name not in nodes:
                meta = pod["metadata"]
                self.try_delete("pods", meta["namespace"], meta["name"], grace_seconds=0)
