"""A new GPU node's provisioning timeline, the mechanics: watch observer, stall detection and diagnosis, timeline
table, scale-down (NodePool reading: kube/nodepool.py; judging phases against budgets: checks/karpenter.py)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pytest_gpucluster.checks.karpenter import MARKS
from pytest_gpucluster.kube import errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.nodepool import NODEPOOLS, PROBE_POOL_LABEL
from pytest_gpucluster.kube.objects import GPU_RESOURCE, condition, container_state, is_true, started, timestamp
from pytest_gpucluster.kube.plugins import Plugins, admits, ds_ref
from pytest_gpucluster.kube.quantity import count
from pytest_gpucluster.kube.taints import taint_text
from pytest_gpucluster.kube.watching import DeadlineExceeded, Watcher, WatchState, eventually
from pytest_gpucluster.session import Session

OBSERVE_FACTOR = 1.5      # keep watching a slow launch up to 1.5x the total budget, to report every phase
POLL_S = 2.0              # each watch request is re-opened at least this often (ends threads promptly)


@dataclass
class Seen:
    """Everything the watches saw: latest objects, every NodeClaim's last state, and when each mark came true."""

    pod: dict[str, Any] | None = None
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    watch: dict[str, float] = field(default_factory=dict)

    def claim(self) -> dict[str, Any] | None:
        """The NodeClaim that got furthest (the one serving the pod), else the latest."""
        ranked = sorted(self.claims.values(), key=lambda c: (sum(is_true(c, t) for t in ("Launched", "Registered",
                        "Initialized", "Ready")), c["metadata"].get("creationTimestamp", "")))
        return ranked[-1] if ranked else None

    def node(self) -> dict[str, Any] | None:
        name = ((self.claim() or {}).get("status") or {}).get("nodeName")
        return self.nodes.get(name or "") or next(iter(self.nodes.values()), None)

    def marks(self) -> dict[str, bool]:
        claim, node, pod = self.claim(), self.node(), self.pod or {}
        state = container_state(pod)
        return {"Nominated": any(e.get("reason") == "Nominated" for e in self.events.values()),
                "NodeClaim created": claim is not None, "Launched": is_true(claim, "Launched"),
                "Registered": is_true(claim, "Registered"), "Initialized": is_true(claim, "Initialized"),
                "NodeClaim Ready": is_true(claim, "Ready"), "Node Ready": is_true(node, "Ready"),
                "GPU allocatable": count(((node or {}).get("status") or {}).get("allocatable", {})
                                         .get(GPU_RESOURCE)) > 0,
                "pod scheduled": bool((pod.get("spec") or {}).get("nodeName")),
                "container started": started(state) is not None,
                "pod Ready": is_true(pod, "Ready")}

    def cluster_times(self) -> dict[str, float]:
        """The same marks from the objects' own timestamps (whole seconds; none for GPU allocatable)."""
        claim, node, pod = self.claim() or {}, self.node() or {}, self.pod or {}
        state = container_state(pod)
        nominated = [e for e in self.events.values() if e.get("reason") == "Nominated"]
        when = {"pod created": timestamp(pod.get("metadata", {}).get("creationTimestamp")),
                "Nominated": timestamp(nominated[0].get("firstTimestamp") or nominated[0].get("eventTime")) if nominated else None,
                "NodeClaim created": timestamp(claim.get("metadata", {}).get("creationTimestamp")),
                "container started": timestamp((started(state) or {}).get("startedAt"))}
        for mark, obj, ctype in (("Launched", claim, "Launched"), ("Registered", claim, "Registered"),
                                 ("Initialized", claim, "Initialized"), ("NodeClaim Ready", claim, "Ready"),
                                 ("Node Ready", node, "Ready"), ("pod scheduled", pod, "PodScheduled"),
                                 ("pod Ready", pod, "Ready")):
            if is_true(obj, ctype):
                when[mark] = timestamp((condition(obj, ctype) or {}).get("lastTransitionTime"))
        return {k: v for k, v in when.items() if v is not None}


class Observer:
    """Four watches (pod, NodeClaims, nodes, pod events) in threads; each change is stamped with the suite's clock.
    Thread errors are kept and re-raised by `stop()`."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, fleet_selector: str, pool: str, pool_id: str) -> None:
        self.cluster, self.pod_name, self.seen = cluster, pod, Seen()
        self.lock, self.changed, self.halt = threading.Lock(), threading.Event(), threading.Event()
        self.failures: list[BaseException] = []
        specs = [("pods", namespace, fleet_selector, None, self._pod),
                 ("nodeclaims.karpenter.sh", None, f"karpenter.sh/nodepool={pool}", None, self._claims),
                 ("nodes", None, f"{PROBE_POOL_LABEL}={pool_id}", None, self._nodes),
                 ("events", namespace, None, f"involvedObject.name={pod}", self._events)]
        self.threads = [threading.Thread(target=self._loop, args=spec, daemon=True, name=f"gpucluster-watch-{spec[0]}")
                        for spec in specs]

    def start(self, created_at: float) -> None:
        self.seen.watch["pod created"] = created_at
        for thread in self.threads:
            thread.start()

    def _pod(self, objs: dict[str, dict[str, Any]]) -> None:
        self.seen.pod = objs.get(self.pod_name) or self.seen.pod

    def _claims(self, objs: dict[str, dict[str, Any]]) -> None:
        self.seen.claims.update(objs)          # failed, deleted claims stay: their conditions explain stalls

    def _nodes(self, objs: dict[str, dict[str, Any]]) -> None:
        self.seen.nodes.update(objs)

    def _events(self, objs: dict[str, dict[str, Any]]) -> None:
        self.seen.events.update(objs)

    def _loop(self, kind: str, namespace: str | None, labels: str | None, fields: str | None,
              apply: Callable[[dict[str, dict[str, Any]]], None]) -> None:
        def on_event(_etype: str, _obj: dict[str, Any], state: WatchState) -> bool:
            with self.lock:
                apply(state.by_name())
                now = time.time()
                for mark, done in self.seen.marks().items():
                    if done:
                        self.seen.watch.setdefault(mark, now)
            self.changed.set()
            return self.halt.is_set()

        watcher = Watcher(self.cluster, kind, namespace, label_selector=labels, field_selector=fields)
        try:
            while not self.halt.is_set():
                watcher.run(on_event, deadline=time.monotonic() + POLL_S)
        except (errors.ClusterError, AssertionError) as exc:
            self.failures.append(exc)
            self.changed.set()

    def wait(self, timeout_s: float) -> None:
        """Until the next change seen by any watch (or the timeout)."""
        self.changed.wait(max(0.0, timeout_s))
        self.changed.clear()
        if self.failures:
            raise self.failures[0]

    def stop(self) -> Seen:
        self.halt.set()
        for thread in self.threads:
            thread.join(POLL_S * 3)
        if self.failures:
            raise self.failures[0]
        return self.seen


@dataclass
class Budget:
    values: dict[str, float]
    source: str               # which profile key ("profile p5.48xlarge provisioning_budget_s")
    origin: str = ""          # where its numbers come from (the profile's sources["provisioning_budget_s"])

    def limit(self, key: str) -> float | None:
        return self.values.get(key)


@dataclass(frozen=True)
class EfaRequest:
    """How many EFA interfaces the latency probe asks for, and why (the evidence says both)."""

    count: int
    why: str


def efa_request(itype: str, efa: int, required: bool, pool: str, labels: dict[str, str],
                taints: list[dict[str, Any]], plugins: Plugins) -> EfaRequest:
    """Ask for the type's EFA only where the profile requires it (`efa_required`) AND an EFA device plugin can serve
    the new node: Karpenter attaches EFA when the pod asks for it, and a node is Initialized only once every extended
    resource its pods requested is registered (kubernetes-sigs/karpenter@22664681
    pkg/controllers/nodeclaim/lifecycle/initialization.go RequestedResourcesRegistered), so a request no plugin
    serves never gets a node to time. Otherwise the node timed is the node inference pods get, without EFA."""
    if not efa:
        return EfaRequest(0, f"not requested: {itype} has no EFA in the profile")
    if not required:
        return EfaRequest(0, f"not requested: the profile does not require EFA on {itype} (efa_required: false); "
                             "Karpenter attaches EFA only to nodes whose pods ask for it")
    if plugins.auto_mode:
        return EfaRequest(efa, f"{efa} (the profile requires EFA on {itype}; EKS Auto Mode runs the EFA plugin)")
    daemonsets = plugins.daemonsets("efa")
    refusals = {ds_ref(ds): admits(ds, labels, taints) for ds in daemonsets}
    serving = [ref for ref, why in refusals.items() if why is None]
    if serving:
        return EfaRequest(efa, f"{efa} (the profile requires EFA on {itype}; EFA device plugin {serving[0]} admits "
                               f"NodePool {pool}'s taints and labels)")
    detail = "; ".join(f"{ref} {why}" for ref, why in refusals.items()) or "no EFA device plugin DaemonSet installed"
    return EfaRequest(0, f"not requested although the profile requires EFA on {itype}: no EFA device plugin serves "
                         f"NodePool {pool} ({detail}), so a node asked for EFA would never be Initialized; the EFA "
                         "checks judge the EFA nodes (test_efa_device_plugin_runs_on)")


def untolerated(seen: Seen, pool: str) -> str | None:
    """Karpenter's verdict that the pod cannot use the probe NodePool because of its taints (final: no retry helps)."""
    for event in seen.events.values():
        text = str(event.get("message", ""))
        if event.get("reason") == "FailedScheduling" and f'nodepool "{pool}"' in text and "did not tolerate" in text:
            return text
    return None


def observe(obs: Observer, budget: Budget, pool: str) -> str | None:
    """Watch until the pod runs on its new node (and the NodeClaim is Ready). Returns the stall, if any:
    `untolerated` at once when Karpenter says the pod does not tolerate the NodePool's taints, `never-launched`
    once the launched budget is spent without a Launched NodeClaim, `timeout` at the observation deadline
    (1.5x the total budget), None when everything happened."""
    t0 = obs.seen.watch["pod created"]
    total = budget.limit("total") or 900.0
    hard = t0 + total * OBSERVE_FACTOR
    while True:
        with obs.lock:
            marks, watch = obs.seen.marks(), dict(obs.seen.watch)
            taint = untolerated(obs.seen, pool)
        if marks["container started"] and marks["pod Ready"] and marks["NodeClaim Ready"]:
            return None
        if taint and not marks["NodeClaim created"]:
            return "untolerated"
        now = time.time()
        launch_by = watch.get("NodeClaim created", t0) + (budget.limit("launched") or total)
        if not marks["Launched"] and now >= launch_by:
            return "never-launched"
        if now >= hard:
            return "timeout"
        obs.wait(min(hard, launch_by if not marks["Launched"] else hard) - now)


def timeline_table(watch: dict[str, float], cluster: dict[str, float], budget: Budget, ec2: float | None) -> str:
    t0w, t0c = watch["pod created"], cluster.get("pod created", watch["pod created"])
    rows = [f"{'mark':<20} {'cluster timestamp':<22} {'cluster +s':>10} {'watch +s':>9}"]
    for mark in MARKS:
        c, w = cluster.get(mark), watch.get(mark)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c)) if c is not None else "-"
        rows.append(f"{mark:<20} {stamp:<22} {c - t0c if c is not None else float('nan'):>10.0f} "
                    f"{w - t0w if w is not None else float('nan'):>9.2f}")
    if ec2 is not None:
        rows.append(f"{'EC2 LaunchTime':<20} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ec2)):<22} "
                    f"{ec2 - t0c:>10.0f} {'-':>9}")
    rows.append(f"budgets ({budget.source}): " + ", ".join(f"{k} {v:g}s" for k, v in budget.values.items()))
    return "\n".join(rows)


def diagnose(stall: str, seen: Seen, cluster: Cluster, pool: str) -> str:
    """Why the new GPU node or the pod on it never got there, in the words of Karpenter / the scheduler."""
    claim, node, marks = seen.claim(), seen.node(), seen.marks()
    pod_events = sorted(seen.events.values(), key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")))
    failed = [e for e in pod_events if e.get("reason") == "FailedScheduling"]
    if not marks["Launched"]:
        launch = [c for c in seen.claims.values() if (condition(c, "Launched") or {}).get("status") == "False"]
        if launch:
            cond = condition(launch[-1], "Launched") or {}
            names = {c["metadata"]["name"] for c in seen.claims.values()}
            texts = [e.get("message", "") for e in cluster.items("events", "default",
                                                                  field_selector="involvedObject.kind=NodeClaim")
                     if e.get("involvedObject", {}).get("name") in names and e.get("type") == "Warning"]
            return (f"NodeClaim never Launched: {cond.get('reason')}: {cond.get('message')}"
                    + (f" (Karpenter events: {' | '.join(dict.fromkeys(texts))})" if texts else "")
                    + ". EC2 has no capacity (or quota) for the type: try other zones / capacity types, a capacity "
                    "reservation, or raise the 'Running On-Demand P/G instances' vCPU quota.")
        karpenter = [e.get("message", "") for e in failed if "nodepool" in e.get("message", "")]
        text = str(untolerated(seen, pool) or (karpenter[-1] if karpenter else (
            failed[-1].get("message") if failed else "no scheduling event")))
        if "did not tolerate" in text:
            return (f"pod pending on a taint the NodePool adds: Karpenter says `{text}`. The GPU pod tolerates the "
                    "profile's GPU taints only: make the NodePool's taints and the profile's cluster.gpu_taints agree.")
        return (f"no NodeClaim was {'launched' if claim else 'created'} for NodePool {pool}: Karpenter says `{text}`. "
                "Check the Karpenter controller's logs (`kubectl -n kube-system logs deploy/karpenter`).")
    if not marks["Registered"]:
        return ("instance launched but never registered as a node: check the node's bootstrap (EC2 console "
                "output), the node role's EKS access entry, and that the security groups reach the API server.")
    if not marks["Initialized"]:
        alloc = ((node or {}).get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE, "absent")
        taints = [taint_text(t) for t in ((node or {}).get("spec") or {}).get("taints") or []]
        if not marks["GPU allocatable"]:
            return (f"Registered but never Initialized: the node shows {GPU_RESOURCE} allocatable {alloc}, so the "
                    "NVIDIA device plugin never made its GPUs allocatable (not scheduled on the node - tolerations? - or "
                    f"crash-looping on the driver). Node taints: {taints}.")
        cond = condition(claim, "Initialized") or {}
        if cond.get("reason") not in (None, "", "AwaitingReconciliation"):   # what it waits for (initialization.go)
            return (f"Registered but never Initialized: Karpenter says {cond.get('reason')}: {cond.get('message')} "
                    f"(node taints: {taints}); a requested extended resource needs its device plugin on the node.")
        return f"Registered but never Initialized: GPUs allocatable, but startup taints remain: {taints}."
    if not marks["container started"]:
        refused = (container_state(seen.pod or {}).get("terminated") or {})
        if refused.get("reason") == "StartError":
            return f"the probe container was refused at start on the new node: {refused.get('message')}."
        last = failed[-1].get("message") if failed else (seen.pod or {}).get("status", {}).get("phase", "?")
        hint = " (a taint the NodePool adds that the GPU pod does not tolerate)" if "taint" in str(last) else ""
        return f"node Initialized but the pod never started: `{last}`{hint}."
    return "the NodeClaim never turned Ready after the pod started (Karpenter's Ready condition)."


def ec2_launch_time(run: Session, provider_id: str) -> tuple[float | None, str]:
    """EC2's LaunchTime of the new instance (optional: only where an AWS session opens; imported here so the
    Karpenter checks run where the AWS package cannot be used)."""
    from pytest_gpucluster.aws import AwsCallFailed, AwsUnavailable, ec2
    from pytest_gpucluster.aws.session import open_session, target_from_provider_ids

    instance_id = provider_id.rsplit("/", 1)[-1]
    try:
        session = open_session(profile=run.options.aws_profile, region=run.options.region,
                               target=target_from_provider_ids([provider_id]), env=run.aws_env)
        info = ec2.describe_instances(session, [instance_id]).get(instance_id)
    except (AwsUnavailable, AwsCallFailed) as exc:
        return None, f"not read ({exc})"
    if info is None or info.launch_time is None:
        return None, f"EC2 does not know {instance_id}"
    return info.launch_time.timestamp(), f"{instance_id} LaunchTime {info.launch_time.isoformat()}"


def scale_down(cluster: Cluster, namespace: str, pod: str, pool: str, pool_id: str, deadline_s: float) -> list[str]:
    """Delete the probe pod and the NodePool; what is still there after the deadline (empty = clean)."""
    cluster.delete("pods", pod, namespace, grace_seconds=0)
    cluster.delete(NODEPOOLS, pool)
    end = time.monotonic() + deadline_s
    left = []
    for kind, selector in (("nodeclaims.karpenter.sh", f"karpenter.sh/nodepool={pool}"),
                           ("nodes", f"{PROBE_POOL_LABEL}={pool_id}")):
        try:
            eventually(cluster, kind, None, lambda objs: not objs, timeout_s=max(1.0, end - time.monotonic()),
                       description=f"no {kind} of NodePool {pool}", label_selector=selector)
        except DeadlineExceeded:
            left += [f"{kind}/{o['metadata']['name']}" for o in cluster.items(kind, label_selector=selector)]
    if cluster.get_or_none(NODEPOOLS, pool) is not None:
        left.append(f"{NODEPOOLS}/{pool}")
    return left
