"""Your own checks next to ours: pytest-kubernetes' `k8s` fixture points at the same cluster as --kubeconfig/--sim.

Copy this file, rename it, and write checks with `k8s.kubectl([...])` (parsed JSON by default,
`as_dict=False` for text; `pytest_gpucluster.kube.objects` reads conditions, timestamps and container state).
The plugin gives `k8s` a copy of the run's kubeconfig and context, so these checks see exactly the cluster the
acceptance suites check.
"""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.kube.objects import is_true


def _not_ready(node: dict[str, Any]) -> bool:
    return not is_true(node, "Ready")


def test_every_node_is_ready(k8s: Any) -> None:
    nodes = k8s.kubectl(["get", "nodes"])["items"]
    assert nodes, "kubectl get nodes returned no nodes: is this the right cluster/context?"
    not_ready = sorted(n["metadata"]["name"] for n in nodes if _not_ready(n))
    assert not not_ready, f"nodes not Ready: {', '.join(not_ready)} - check `kubectl describe node <name>`"


def test_no_node_is_cordoned(k8s: Any) -> None:
    nodes = k8s.kubectl(["get", "nodes"])["items"]
    cordoned = sorted(n["metadata"]["name"] for n in nodes if n.get("spec", {}).get("unschedulable"))
    assert not cordoned, f"cordoned nodes (no new pods land there): {', '.join(cordoned)} - `kubectl uncordon`"
