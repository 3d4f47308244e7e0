"""Simulated Karpenter (karpenter.sh/v1): provisioning NodeClaims for unschedulable pods, NodePool limits and status."""
from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from pytest_gpucluster.sim.controllers.base import (
    Controller,
    get_condition,
    is_deleting,
    owner_reference,
    random_suffix,
    set_condition,
)
from pytest_gpucluster.sim.controllers.deviceplugins import NodeFacts
from pytest_gpucluster.sim.controllers.karpenter_catalog import (
    Offering,
    instance_capacity,
    nodepool_offerings,
    pod_fits_offering,
    pod_tolerates_nodepool,
)
from pytest_gpucluster.sim.controllers.karpenter_lifecycle import (
    FINALIZER,
    LAUNCHED_BY_SIM,
    Claim,
    ClaimLifecycle,
)
from pytest_gpucluster.sim.controllers.quantity import QuantityError, parse_quantity, pod_requests

NODEPOOL_CONDITIONS = ("NodeClassReady", "Ready", "ValidationSucceeded")


def is_provisionable(pod: dict[str, Any]) -> bool:
    """Pending, marked Unschedulable by the scheduler, and not a DaemonSet pod (those follow nodes)."""
    if (pod.get("spec") or {}).get("nodeName") or is_deleting(pod):
        return False
    if any(r.get("kind") == "DaemonSet" for r in pod["metadata"].get("ownerReferences") or []):
        return False
    condition = get_condition(pod, "PodScheduled")
    return bool(condition and condition.get("status") == "False" and condition.get("reason") == "Unschedulable")


def nodepool_weight(nodepool: dict[str, Any]) -> int:
    return int((nodepool.get("spec") or {}).get("weight") or 0)


class Karpenter(Controller):
    """Provisioner + NodeClaim lifecycle + disruption + termination, one controller on the sim loop."""

    name = "karpenter"
    watches = ("pods", "nodes", "nodepools.karpenter.sh", "nodeclaims.karpenter.sh")

    def __init__(self, store: Any, scenario: Any, facts: NodeFacts, *, aws: Any | None = None) -> None:
        super().__init__(store, scenario)
        cluster = getattr(scenario, "cluster", None)
        self.auto_mode = bool(getattr(cluster, "auto_mode", False))
        self.region = str(getattr(cluster, "region", "us-west-2"))
        self.zones = list(getattr(cluster, "zones", None) or [f"{self.region}a"])
        self.component = "eks-auto-mode/compute" if self.auto_mode else "karpenter"
        self.lifecycle = ClaimLifecycle(self, facts, aws=aws)
        self.claims: dict[str, Claim] = {}            # nodeclaim name -> in-memory state
        self.nominated: dict[str, str] = {}           # pod uid -> nodeclaim name
        self.unavailable: dict[tuple[str, str, str], float] = {}   # (type, zone, captype) -> until
        self._pod_messages: dict[str, str] = {}       # pod uid -> last karpenter FailedScheduling text
        self._offerings: dict[str, tuple[str, list[Offering]]] = {}
        self._usage_cache: tuple[tuple[Any, ...], dict[str, dict[str, Fraction]]] | None = None
        self._no_claim: dict[str, tuple[Any, ...]] = {}   # pod uid -> inputs under which no NodePool fit

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        """Pods matter while provisionable, once nominated, and on NodeClaims' nodes (emptiness):
        not the probe pods of static nodes coming and going."""
        if key != "pods":
            return True
        uid = obj["metadata"].get("uid", "")
        if uid in self.nominated or uid in self._pod_messages:
            return True
        node_name = (obj.get("spec") or {}).get("nodeName")
        if node_name:
            return any(c.node_name == node_name for c in self.claims.values())
        return event_type != "DELETED" and is_provisionable(obj)

    async def reconcile(self) -> None:
        if "nodepools.karpenter.sh" not in self.store.crds():
            return
        nodepools = {np["metadata"]["name"]: np for np in self.items("nodepools.karpenter.sh")}
        await self.lifecycle.sync(nodepools)
        self._provision(nodepools)
        self._write_nodepool_status(nodepools)

    # -- provisioning ------------------------------------------------------------------------
    def _provision(self, nodepools: dict[str, dict[str, Any]]) -> None:
        now = self.clock()
        self.unavailable = {k: t for k, t in self.unavailable.items() if t > now}
        pods = [p for p in self.store.pods_on_node("") if is_provisionable(p)]
        live_uids = {p["metadata"]["uid"] for p in pods}
        self._pod_messages = {uid: m for uid, m in self._pod_messages.items() if uid in live_uids}
        self._no_claim = {uid: k for uid, k in self._no_claim.items() if uid in live_uids}
        self.nominated = {uid: c for uid, c in self.nominated.items() if uid in live_uids and c in self.claims
                          and not self.claims[c].failed}
        pods.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        usage = self._nodepool_usage(nodepools)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in self.nominated:
                continue
            try:
                pod_requests(pod)
            except QuantityError:
                continue
            claim = self._fit_in_flight(pod, nodepools)
            if claim is None:
                claim = self._new_claim(pod, nodepools, usage)
            if claim is None:
                continue
            claim.add_pod(pod)
            self.nominated[uid] = claim.name
            self.store.record_event(pod, "Nominated", f"Pod should schedule on: nodeclaim/{claim.name}",
                                    component=self.component)

    def _fit_in_flight(self, pod: dict[str, Any], nodepools: dict[str, dict[str, Any]]) -> Claim | None:
        for claim in self.claims.values():
            if claim.failed or claim.deleting or claim.initialized_at is not None or claim.offering is None:
                continue
            nodepool = nodepools.get(claim.nodepool)
            if nodepool is None or pod_tolerates_nodepool(pod, nodepool) is not None:
                continue
            if pod_fits_offering(pod, claim.offering, claim.requests, claim.pod_count):
                return claim
        return None

    def _offerings_for(self, nodepool: dict[str, Any]) -> list[Offering]:
        name, rv = nodepool["metadata"]["name"], nodepool["metadata"].get("resourceVersion", "")
        cached = self._offerings.get(name)
        if cached is None or cached[0] != rv:
            cached = (rv, nodepool_offerings(nodepool, self.zones, self.region, self.auto_mode))
            self._offerings[name] = cached
        return cached[1]

    def _new_claim(self, pod: dict[str, Any], nodepools: dict[str, dict[str, Any]],
                   usage: dict[str, dict[str, Fraction]]) -> Claim | None:
        """A NodeClaim for the pod, or None (FailedScheduling on a new reason). A pod that found no
        NodePool is not re-examined until the NodePools, their usage or the unavailable offerings change."""
        uid = pod["metadata"]["uid"]
        key = (tuple((n, np["metadata"].get("resourceVersion")) for n, np in sorted(nodepools.items())),
               self._usage_cache[0] if self._usage_cache else None, len(self.claims),
               frozenset(self.unavailable), repr((pod.get("spec") or {}).get("tolerations")))
        if self._no_claim.get(uid) == key:
            return None
        claim = self._try_nodepools(pod, nodepools, usage)
        if claim is None:
            self._no_claim[uid] = key
        return claim

    def _try_nodepools(self, pod: dict[str, Any], nodepools: dict[str, dict[str, Any]],
                       usage: dict[str, dict[str, Fraction]]) -> Claim | None:
        reasons: list[str] = []
        ordered = sorted((np for np in nodepools.values() if not is_deleting(np)),
                         key=lambda np: (-nodepool_weight(np), np["metadata"]["name"]))
        for nodepool in ordered:
            name = nodepool["metadata"]["name"]
            taint = pod_tolerates_nodepool(pod, nodepool)
            if taint is not None:
                reasons.append(f'incompatible with nodepool "{name}", did not tolerate '
                               f'{taint["key"]}={taint.get("value", "")}:{taint["effect"]}')
                continue
            fitting = [o for o in self._offerings_for(nodepool) if pod_fits_offering(pod, o)]
            if not fitting:
                reasons.append(f'incompatible with nodepool "{name}", no instance type satisfied resources '
                               f"{_requests_text(pod)} and requirements")
                continue
            within = [o for o in fitting if self._within_limits(nodepool, o, usage.get(name, {}))]
            if not within:
                reasons.append(f'all available instance types exceed limits for nodepool "{name}"')
                continue
            available = [o for o in within if (o.instance.name, o.zone, o.capacity_type) not in self.unavailable]
            if not available:
                reasons.append(f'incompatible with nodepool "{name}", no instance type met the scheduling '
                               "requirements or had a required offering")
                continue
            offering = min(available, key=lambda o: (o.price, o.instance.name, o.zone))
            claim = self._create_claim(nodepool, offering, fitting)
            capacity = instance_capacity(offering.instance)
            bucket = usage.setdefault(name, {})
            for resource, value in capacity.items():
                bucket[resource] = bucket.get(resource, Fraction(0)) + parse_quantity(value)
            return claim
        if not nodepools:
            reasons.append("no nodepools found")
        message = "Failed to schedule pod, " + "; ".join(reasons)
        uid = pod["metadata"]["uid"]
        if self._pod_messages.get(uid) != message:
            self._pod_messages[uid] = message
            self.store.record_event(pod, "FailedScheduling", message, type="Warning", component=self.component)
        return None

    def _within_limits(self, nodepool: dict[str, Any], offering: Offering, used: dict[str, Fraction]) -> bool:
        limits = (nodepool.get("spec") or {}).get("limits") or {}
        capacity = instance_capacity(offering.instance)
        for resource, limit in limits.items():
            add = parse_quantity(capacity.get(resource, "0"))
            if used.get(resource, Fraction(0)) + add > parse_quantity(limit):
                return False
        return True

    def _nodepool_usage(self, nodepools: dict[str, dict[str, Any]]) -> dict[str, dict[str, Fraction]]:
        """Capacity per NodePool (a copy the caller may grow), recomputed only when nodes or NodeClaims change."""
        key = (self.store.generation("nodes"), self.store.generation("nodeclaims.karpenter.sh"),
               tuple((name, c.offering is not None) for name, c in self.claims.items()))
        if self._usage_cache is None or self._usage_cache[0] != key:
            self._usage_cache = (key, self._compute_nodepool_usage())
        return {pool: dict(bucket) for pool, bucket in self._usage_cache[1].items()}

    def _compute_nodepool_usage(self) -> dict[str, dict[str, Fraction]]:
        """Capacity per NodePool: its NodeClaims, plus nodes labelled with it that have no NodeClaim."""
        usage: dict[str, dict[str, Fraction]] = {}
        claimed_nodes: set[str] = set()
        for claim in self.items("nodeclaims.karpenter.sh"):
            pool = (claim["metadata"].get("labels") or {}).get("karpenter.sh/nodepool", "")
            node_name = (claim.get("status") or {}).get("nodeName")
            if node_name:
                claimed_nodes.add(node_name)
            capacity = (claim.get("status") or {}).get("capacity") or {}
            if not capacity and claim["metadata"]["name"] in self.claims:
                offering = self.claims[claim["metadata"]["name"]].offering
                capacity = instance_capacity(offering.instance) if offering else {}
            bucket = usage.setdefault(pool, {})
            bucket["nodes"] = bucket.get("nodes", Fraction(0)) + 1
            for resource, value in capacity.items():
                bucket[resource] = bucket.get(resource, Fraction(0)) + parse_quantity(value)
        for node in self.items("nodes"):
            name = node["metadata"]["name"]
            pool = (node["metadata"].get("labels") or {}).get("karpenter.sh/nodepool")
            if not pool or name in claimed_nodes:
                continue
            bucket = usage.setdefault(pool, {})
            bucket["nodes"] = bucket.get("nodes", Fraction(0)) + 1
            for resource, value in ((node.get("status") or {}).get("capacity") or {}).items():
                bucket[resource] = bucket.get(resource, Fraction(0)) + parse_quantity(value)
        return usage

    def _create_claim(self, nodepool: dict[str, Any], offering: Offering, candidates: list[Offering]) -> Claim:
        np_name = nodepool["metadata"]["name"]
        template = (nodepool.get("spec") or {}).get("template") or {}
        tspec = template.get("spec") or {}
        types = sorted({o.instance.name for o in candidates})[:60]
        requirements = [dict(r) for r in tspec.get("requirements") or []
                        if r.get("key") != "node.kubernetes.io/instance-type"]
        requirements.append({"key": "karpenter.sh/nodepool", "operator": "In", "values": [np_name]})
        requirements.append({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types})
        spec: dict[str, Any] = {
            "nodeClassRef": dict(tspec.get("nodeClassRef") or {}),
            "requirements": requirements,
            "resources": {"requests": {}},
            "expireAfter": tspec.get("expireAfter", "720h"),
            "terminationGracePeriod": tspec.get("terminationGracePeriod", "1h0m0s"),
        }
        if tspec.get("taints"):
            spec["taints"] = [dict(t) for t in tspec["taints"]]
        if tspec.get("startupTaints"):
            spec["startupTaints"] = [dict(t) for t in tspec["startupTaints"]]
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "karpenter.sh/nodepool": np_name}
        now = self.clock()
        obj = {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": f"{np_name}-{random_suffix()}", "generateName": f"{np_name}-",
                         "labels": labels, "finalizers": [FINALIZER],
                         "annotations": {"karpenter.sh/nodepool-hash-version": "v3", LAUNCHED_BY_SIM: "true"},
                         "ownerReferences": [owner_reference(nodepool, controller=False)]},
            "spec": spec,
            "status": {"conditions": self.lifecycle.initial_conditions(now)},
        }
        created = self.store.create("nodeclaims.karpenter.sh", obj)
        claim = Claim(name=created["metadata"]["name"], nodepool=np_name, offering=offering,
                      created_at=now, launched_by_sim=True)
        self.claims[claim.name] = claim
        self.wake_in(0)
        return claim

    # -- status ----------------------------------------------------------------------------------
    def _write_nodepool_status(self, nodepools: dict[str, dict[str, Any]]) -> None:
        usage = self._nodepool_usage(nodepools)
        now = self.clock()
        for name, nodepool in nodepools.items():
            if is_deleting(nodepool):
                continue
            resources = {k: _format(v) for k, v in sorted(usage.get(name, {}).items())}
            resources.setdefault("nodes", "0")
            status = nodepool.get("status") or {}
            conditions = [dict(c) for c in status.get("conditions") or []]
            changed = status.get("resources") != resources
            for ctype in NODEPOOL_CONDITIONS:
                changed |= set_condition(conditions, ctype, "True", ctype, now=now, sort=True,
                                         extra={"observedGeneration": nodepool["metadata"].get("generation", 1)})
            if not changed:
                continue

            def write(obj: dict[str, Any], resources: dict[str, str] = resources,
                      conditions: list[dict[str, Any]] = conditions) -> None:
                obj.setdefault("status", {}).update({"resources": resources, "conditions": conditions})

            self.try_mutate("nodepools.karpenter.sh", None, name, write, subresource="status")


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{int(value * 1000)}m"


def _requests_text(pod: dict[str, Any]) -> str:
    requests = {k: _format(v) for k, v in sorted(pod_requests(pod).items())}
    requests["pods"] = "1"
    return json.dumps(requests, separators=(",", ":"))
