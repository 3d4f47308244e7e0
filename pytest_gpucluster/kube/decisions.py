"""Scheduler decisions: create pods, watch (one watch) until each is bound or refused, read why, delete them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pytest_gpucluster.kube import watching
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.fleets import fleet_label
from pytest_gpucluster.kube.objects import pending_reason
from pytest_gpucluster.kube.probes import FLEET_LABEL, RUN_LABEL, ProbeContext, ProbeSpec, pod_name, render

DECISION_TIMEOUT_S = 60.0        # how long the scheduler gets to place or refuse a pod


@dataclass
class Decision:
    """What the scheduler did with one pod."""

    pod: dict[str, Any]
    node: str | None                  # where it was bound; None = still pending
    message: str | None               # FailedScheduling / PodScheduled=False message
    decided: bool

    @property
    def tolerations(self) -> list[dict[str, Any]]:
        return list(self.pod.get("spec", {}).get("tolerations") or [])


def place(cluster: Cluster, ctx: ProbeContext, key: str, specs: Mapping[str, ProbeSpec]) -> dict[str, Decision]:
    """Create one pod per spec, wait (one watch) until each is bound or refused, delete them.

    Unlike a probe fleet this does not wait for pods to finish: it reads the scheduler's decision only."""
    if not specs:
        return {}
    fleet = fleet_label(key, ctx.run_id)
    names = {node: pod_name(spec.name, f"{key}/{node}", ctx.run_id) for node, spec in specs.items()}
    for node, spec in specs.items():
        cluster.create("pods", render(spec, ctx, name=names[node], fleet=fleet), ctx.namespace)
    wanted = set(names.values())

    def all_decided(objs: dict[str, dict[str, Any]]) -> bool:
        pods = [objs[n] for n in wanted if n in objs]
        return len(pods) == len(wanted) and all(p.get("spec", {}).get("nodeName") or pending_reason(p) for p in pods)

    selector = f"{RUN_LABEL}={ctx.run_id},{FLEET_LABEL}={fleet}"
    try:
        seen = watching.eventually(cluster, "pods", ctx.namespace, all_decided, timeout_s=DECISION_TIMEOUT_S,
                                   description="the scheduler to place or refuse every pod", label_selector=selector)
    except watching.DeadlineExceeded:
        seen = {p["metadata"]["name"]: p for p in cluster.items("pods", ctx.namespace, label_selector=selector)}
    events = [e for e in cluster.items("events", ctx.namespace)
              if e.get("reason") == "FailedScheduling" and e.get("involvedObject", {}).get("name") in wanted]
    out = {}
    for node, name in names.items():
        pod = seen.get(name) or {"metadata": {"name": name}, "spec": {}}
        failed = [e.get("message", "") for e in events if e["involvedObject"]["name"] == name]
        message = pending_reason(pod) or (failed[-1] if failed else None)
        bound = pod.get("spec", {}).get("nodeName")
        out[node] = Decision(pod=pod, node=bound, message=message, decided=bool(bound or message))
        if not ctx.keep:
            cluster.delete("pods", name, ctx.namespace, grace_seconds=0)
    return out
