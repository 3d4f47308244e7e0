"""Fail fast on probe pods that can never schedule: a pinned pod the scheduler rejects for a reason nothing in
flight will change ends after a grace period with the scheduler's message, the node's allocatable and the
device-plugin pods' state, instead of waiting out the probe deadline.

A node in transition (kube/objects.transition_of: cordoned, disrupted, NotReady, not initialised) ends the pod
after the grace period too, saying so: its checks are not shown (fixtures.py), so waiting for it helps nothing.
"Nothing in flight" means: the node exists and is Ready, its NodeClaim (if Karpenter launched it) is initialised,
no device-plugin pod on it is still starting, and the rejection is one the node itself causes: it has less of an
extended resource than the pod requests (a GPU/EFA device plugin that is down or never registered), or a taint the
pod does not tolerate. "Insufficient nvidia.com/gpu" while the node HAS enough allocatable means other pods hold
the devices: that changes when they finish, so the pod keeps waiting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import errors
from .client import Cluster
from .objects import condition, karpenter_uninitialised, phase, pod_ready, restarts, transition_of, waiting_reasons
from .plugins import plugin_role, pod_state
from .quantity import quantity_or
from .taints import refused_for_a_taint

STARTING_REASONS = ("ContainerCreating", "PodInitializing")


def extended_requests(pod: dict[str, Any]) -> dict[str, float]:
    """The pod's requests of resources a device plugin or the node provides (not cpu/memory)."""
    out: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        for name, value in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
            if name in ("cpu", "memory", "ephemeral-storage"):
                continue
            out[name] = max(out.get(name, 0.0), quantity_or(value))
    return out


def in_flight(node: dict[str, Any], plugin_pods: list[dict[str, Any]]) -> str | None:
    """What may still change the node's schedulability by itself, or None when nothing will."""
    if (condition(node, "Ready") or {}).get("status") != "True":
        return "the node is not Ready yet"
    if karpenter_uninitialised((node.get("metadata") or {}).get("labels") or {}):
        return "its NodeClaim is still initialising"
    for pod in plugin_pods:
        waiting = waiting_reasons(pod)
        starting = phase(pod) == "Pending" and not any(w not in (None, *STARTING_REASONS) for w in waiting)
        warming = phase(pod) == "Running" and not pod_ready(pod) and restarts(pod) == 0 and not any(waiting)
        if starting or warming:
            return f"device-plugin pod {pod['metadata']['name']} is starting"
    return None


def blocking_cause(message: str, requests: dict[str, float], allocatable: dict[str, Any]) -> str | None:
    """Why the node itself refuses the pod, or None when the refusal may be temporary."""
    short = [f"{name} allocatable {quantity_or(allocatable.get(name)):g}, requested {want:g}"
             for name, want in sorted(requests.items()) if quantity_or(allocatable.get(name)) < want]
    if short:
        return "the node lacks it: " + "; ".join(short)
    if refused_for_a_taint(message):     # every wording the scheduler has used (kube/taints.py)
        return "the node has a taint the pod does not tolerate"
    return None


@dataclass
class UnschedulableWatch:
    """Per fleet: remembers when each pinned pod was first reported unschedulable and judges it after the grace."""

    cluster: Cluster
    grace_s: float
    # looked up when the watch is made, not at import: a replay's virtual clock (bundle/replay.py) stands in for it
    clock: Callable[[], float] = field(default_factory=lambda: time.monotonic)
    first_seen: dict[str, float] = field(default_factory=dict)
    last_check: dict[str, float] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)      # pod -> the failure text

    def check(self, pod_name: str, pod: dict[str, Any], node_name: str, message: str | None) -> bool:
        """True once the pod is certain never to schedule (its text in `stuck`). Cheap between API checks."""
        if pod_name in self.stuck:
            return True
        if not message:
            self.first_seen.pop(pod_name, None)
            return False
        now = self.clock()
        first = self.first_seen.setdefault(pod_name, now)
        if now - first < self.grace_s or now - self.last_check.get(pod_name, 0.0) < max(1.0, self.grace_s / 3):
            return False
        self.last_check[pod_name] = now
        node = self.cluster.get_or_none("nodes", node_name)
        if node is None:
            return False                      # the fleet's NodeGone check reports a vanished node
        moving = transition_of(node)
        if moving:   # cordoned, disrupted, NotReady, not initialised: its checks are not shown (fixtures.py)
            self.stuck[pod_name] = (f"node {node_name} is in transition ({moving}): scheduler says {message!r}; its "
                                    "checks are not shown")
            return True
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cause = blocking_cause(message, extended_requests(pod), allocatable)
        if cause is None:
            return False
        plugins = self._plugin_pods(node_name)
        if in_flight(node, plugins) is not None:
            return False
        states = "; ".join(f"{p['metadata']['name']} {pod_state(p)}" for p in plugins) or "none on the node"
        wanted = ", ".join(f"{k}={quantity_or(allocatable.get(k)):g}" for k in sorted(extended_requests(pod)))
        self.stuck[pod_name] = (
            f"cannot schedule on {node_name} after {now - first:.0f}s: scheduler says {message!r}; {cause}; node "
            f"allocatable {wanted or '-'}; device-plugin pods: {states}. Nothing in flight will change this (node "
            f"Ready, no NodeClaim initialising, no device-plugin pod starting): see `kubectl describe node "
            f"{node_name}` and the device plugin's logs")
        return True

    def _plugin_pods(self, node_name: str) -> list[dict[str, Any]]:
        try:
            pods = self.cluster.items("pods", None, field_selector=f"spec.nodeName={node_name}")
        except errors.Forbidden:
            return []
        return [p for p in pods if any(ref.get("kind") == "DaemonSet" and plugin_role({"metadata": {"name": ref.get("name", "")}})
                                       in ("nvidia", "efa") for ref in (p.get("metadata") or {}).get("ownerReferences") or [])]
