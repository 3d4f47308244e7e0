"""Nodes in transition (kube/objects.transition_of, TransitionWatch) and what probes tolerate (kube/placement)."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_gpucluster.kube.discovery import Inventory, TransitionWatch
from pytest_gpucluster.kube.objects import NodeInfo, transition_of
from pytest_gpucluster.kube.placement import tolerations_for

GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
CILIUM = {"key": "node.cilium.io/agent-not-ready", "effect": "NoExecute"}


def node(name: str = "n1", *, ready: str = "True", unschedulable: bool = False, taints: list[Any] | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": "p5.48xlarge",
                                                  **(labels or {})}},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletNotReady"}]}}


KARPENTER = {"karpenter.sh/nodepool": "gpu"}


@pytest.mark.parametrize("obj, why", [
    (node(), None),
    (node(labels={**KARPENTER, "karpenter.sh/initialized": "true"}), None),
    (node(ready="False"), "NotReady (KubeletNotReady)"),
    (node(unschedulable=True), "cordoned"),
    (node(taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]),
     "being disrupted by Karpenter (karpenter.sh/disrupted)"),
    (node(labels=KARPENTER), "not initialised by Karpenter yet (no karpenter.sh/initialized=true)"),
    (node(unschedulable=True, taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]),
     "cordoned, being disrupted by Karpenter (karpenter.sh/disrupted)"),
])
def test_transition_of(obj: dict[str, Any], why: str | None) -> None:
    assert transition_of(obj) == why


def test_probes_do_not_tolerate_the_nodepool_startup_taints() -> None:
    """A probe tolerated every blocking workload taint of its node, a startup taint included: it could land on a
    node an agent had not made ready yet."""
    info = NodeInfo.from_node(node(taints=[GPU_TAINT, CILIUM], labels=KARPENTER))
    assert {t["key"] for t in tolerations_for([info])} == {"nvidia.com/gpu", "node.cilium.io/agent-not-ready"}
    info.startup_taints = [CILIUM]
    assert tolerations_for([info]) == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


class Nodes:
    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs, self.calls = objs, 0

    def items(self, kind: str, namespace: str | None = None, **selectors: Any) -> list[dict[str, Any]]:
        self.calls += 1
        return self.objs


def test_the_watch_sees_a_node_enter_transition_during_the_run_and_marks_the_inventory() -> None:
    settled = NodeInfo.from_node(node("a"))
    inventory = Inventory([settled], [settled], [], [], total_gpu_nodes=1)
    cluster, now = Nodes([node("a")]), [0.0]
    watch = TransitionWatch(cluster, inventory, clock=lambda: now[0])  # type: ignore[arg-type]
    assert watch.of(["a"]) == {} and inventory.transition == {}
    cluster.objs = [node("a", unschedulable=True)]
    assert watch.of(["a"]) == {} and cluster.calls == 1          # within max_age_s: the same list
    now[0] = 2
    assert watch.of(["a", "gone"]) == {"a": "cordoned", "gone": "left the cluster"}
    assert inventory.transition == {"a": "cordoned"}
    assert "in transition (their checks are not shown): a/p5.48xlarge (cordoned)" in inventory.summary_lines()
