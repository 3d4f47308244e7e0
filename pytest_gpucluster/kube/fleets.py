"""Probe fleets: create many probe pods with a bounded pool, wait on all of them with ONE watch, collect results."""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

from . import errors, probes
from .client import Cluster
from .progress import QUIET, Progress, ProgressFactory, current_module
from .schedulability import UnschedulableWatch
from .watching import WATCH_PERIOD_S, Watcher, WatchState

CREATE_CONCURRENCY = 16
LOG_LIMIT_BYTES = 4 * 1024 * 1024


def fleet_label(key: str, run_id: str) -> str:
    slug = probes.label_value(key.lower())[:40].strip("-_.")
    return f"{slug}-{hashlib.sha256(f'{run_id}/{key}'.encode()).hexdigest()[:8]}"


def _display_phase(pod: dict[str, Any]) -> str:
    _, reason, _ = probes.classify(pod)
    if reason in probes.IMAGE_PULL_ERRORS or reason in probes.CONTAINER_CONFIG_ERRORS:
        return str(reason)
    waiting = probes.container_state(pod).get("waiting") or {}
    if waiting.get("reason") in ("ContainerCreating", "PodInitializing"):
        return "ContainerCreating"
    if probes.pending_reason(pod):
        return "Unschedulable"
    return str(pod.get("status", {}).get("phase") or "Pending")


class FleetRunner:
    """Runs one fleet of probes. Requests: N creates + N logs + 1 event list + ~1 watch per 20 s."""

    def __init__(self, cluster: Cluster, ctx: probes.ProbeContext, *, progress: ProgressFactory = QUIET,
                 concurrency: int = CREATE_CONCURRENCY) -> None:
        self.cluster, self.ctx, self.progress, self.concurrency = cluster, ctx, progress, concurrency

    def run(self, key: str, specs: Mapping[str, probes.ProbeSpec]) -> dict[str, probes.ProbeResult]:
        if not specs:
            return {}
        fleet = fleet_label(key, self.ctx.run_id)
        names = {node: probes.pod_name(spec.name, f"{key}/{node}", self.ctx.run_id) for node, spec in specs.items()}
        manifests = {node: probes.render(spec, self.ctx, name=names[node], fleet=fleet)
                     for node, spec in specs.items()}
        by_pod = {names[node]: node for node in specs}
        timeout = max((s.timeout_s or self.ctx.timeout_s) for s in specs.values())
        purposes = sorted({s.name for s in specs.values()})
        module = current_module()
        what = f"{module + ' ' if module else ''}probe pods ({', '.join(purposes)})"
        pinned = {names[node]: spec.node for node, spec in specs.items() if spec.node}
        with self.progress(what, total=len(specs)) as bar:      # creating them is part of the wait a person sees
            bar.update(note="creating")
            create_errors = self._create_all(manifests)
            bar.update(note="", done=len(create_errors))
            state, gone = self._wait(fleet, set(by_pod) - {names[n] for n in create_errors}, timeout, bar, pinned)
        return self._collect(state, by_pod, create_errors, gone)

    def _create_all(self, manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Create every pod (idempotent: deterministic names). Invalid manifests become per-node failures;
        permission, credential and connectivity errors stop the fleet."""
        failures: dict[str, str] = {}

        def create(node: str) -> tuple[str, str | None]:
            try:
                self.cluster.create("pods", manifests[node], self.ctx.namespace)
            except errors.Invalid as exc:
                return node, str(exc)
            return node, None

        workers = max(1, min(self.concurrency, len(manifests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucluster-create") as pool:
            for node, failure in pool.map(create, list(manifests)):   # re-raises the first real error
                if failure:
                    failures[node] = failure
        return failures

    def _wait(self, fleet: str, pods: set[str], timeout_s: float, bar: Progress,
              pinned: Mapping[str, str]) -> tuple[WatchState, dict[str, tuple[str, str]]]:
        """Watch the fleet until every pod is terminal, or can never schedule on its pinned node (the node is gone:
        looked up once per pod; or the scheduler keeps refusing it for a reason nothing in flight will change:
        kube/schedulability.py, after the context's grace period), or the deadline passes."""
        watcher = Watcher(self.cluster, "pods", self.ctx.namespace,
                          label_selector=f"{probes.RUN_LABEL}={self.ctx.run_id},{probes.FLEET_LABEL}={fleet}")
        gone: dict[str, tuple[str, str]] = {}   # pod -> (NodeGone | Unschedulable, why it can never run)
        checked: set[str] = set()
        stuck = UnschedulableWatch(self.cluster, self.ctx.unschedulable_grace_s)
        if not pods:
            return watcher.state, gone

        def cannot_run(name: str, pod: dict[str, Any]) -> bool:
            reason = probes.pending_reason(pod)
            if name not in pinned or name in gone:
                return name in gone
            if reason and name not in checked:
                checked.add(name)
                if self.cluster.get_or_none("nodes", pinned[name]) is None:
                    why = (f"node {pinned[name]} disappeared while its probe pod waited (Unschedulable: "
                           f"{reason}); check `kubectl get node {pinned[name]}` and the node's NodeClaim / "
                           "Auto Scaling group")
                    gone[name] = ("NodeGone", why)
                    return True
            if stuck.check(name, pod, pinned[name], reason):
                gone[name] = ("Unschedulable", stuck.stuck[name])
            return name in gone

        # Kept per event for the pod that changed (a fleet of N pods sees ~4N events: a scan of every pod per
        # event made the wait O(N^2) in the plugin); the whole state is read again only after a relist.
        phases: dict[str, str] = {}
        ended: set[str] = set()

        def observe(pod: dict[str, Any]) -> None:
            name = pod.get("metadata", {}).get("name", "")
            if name in pods:
                phases[name] = _display_phase(pod)
                (ended.add if probes.classify(pod)[0] else ended.discard)(name)

        def finished(state: WatchState) -> bool:
            if len(phases) < len(pods):
                return False
            for name in pods - ended:       # short-circuits at the first pod that can still run
                pod = state.objects.get((self.ctx.namespace, name))
                if pod is None or not cannot_run(name, pod):
                    return False
            return True

        def on_event(etype: str, pod: dict[str, Any], state: WatchState) -> bool:
            if etype == "SYNC":
                phases.clear()
                ended.clear()
                for obj in state.objects.values():
                    observe(obj)
            elif etype == "DELETED":
                name = pod.get("metadata", {}).get("name", "")
                phases.pop(name, None)
                ended.discard(name)
            else:
                observe(pod)
            return finished(state)

        def snapshot() -> dict[str, Any]:
            waiting = {n: phases.get(n, "Pending") for n in pods - ended - set(gone)}
            return {"counts": Counter(waiting.values()), "done": (bar.total or len(pods)) - len(waiting),
                    "pending": {pinned.get(n, n): phase for n, phase in waiting.items()}}
        bar.follow(snapshot)

        window = min(WATCH_PERIOD_S, max(1.0, self.ctx.unschedulable_grace_s / 3)) if pinned else WATCH_PERIOD_S
        watcher.run(on_event, deadline=time.monotonic() + timeout_s, on_idle=lambda: finished(watcher.state),
                    window_s=window)
        return watcher.state, gone

    def _collect(self, state: WatchState, by_pod: dict[str, str], create_errors: dict[str, str],
                 gone: Mapping[str, tuple[str, str]]) -> dict[str, probes.ProbeResult]:
        seen = state.by_name()
        events_by_pod: dict[str, list[dict[str, Any]]] = {}
        for ev in self.cluster.items("events", self.ctx.namespace):
            involved = ev.get("involvedObject", {})
            if involved.get("kind") == "Pod" and involved.get("name") in by_pod:
                events_by_pod.setdefault(involved["name"], []).append(ev)

        def one(pod_name: str) -> tuple[str, probes.ProbeResult]:
            node = by_pod[pod_name]
            if node in create_errors:
                return node, probes.ProbeResult(pod=pod_name, node=None, phase="NotCreated", exit_code=None,
                                                reason="Invalid", logs="", message=create_errors[node],
                                                namespace=self.ctx.namespace)
            pod = seen.get(pod_name) or self.cluster.get_or_none("pods", pod_name, self.ctx.namespace)
            if pod is None:
                return node, probes.ProbeResult(pod=pod_name, node=None, phase="Missing", exit_code=None,
                                                reason="Deleted", logs="", namespace=self.ctx.namespace,
                                                message="the pod disappeared before it finished")
            terminal = probes.classify(pod)[0]
            logs = self._logs(pod) if self._has_run(pod) else ""
            result = probes.result_from_pod(pod, logs, events_by_pod.get(pod_name, []), timed_out=not terminal)
            if pod_name in gone:
                reason, why = gone[pod_name]
                result = dataclasses.replace(result, reason=reason, message=why, pending_reason=why)
            if (not terminal or pod.get("status", {}).get("phase") == "Pending") and not self.ctx.keep:
                self.cluster.delete("pods", pod_name, self.ctx.namespace, grace_seconds=0)
            return node, result

        workers = max(1, min(self.concurrency, len(by_pod)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucluster-collect") as pool:
            return dict(pool.map(one, list(by_pod)))

    @staticmethod
    def _has_run(pod: dict[str, Any]) -> bool:
        state = probes.container_state(pod)
        return bool(state.get("running") or state.get("terminated"))

    def _logs(self, pod: dict[str, Any]) -> str:
        try:
            return self.cluster.logs(pod["metadata"]["name"], self.ctx.namespace, limit_bytes=LOG_LIMIT_BYTES)
        except errors.NotFound:
            return ""
