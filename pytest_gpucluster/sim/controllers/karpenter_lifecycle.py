"""Simulated Karpenter NodeClaim lifecycle: Launched -> Registered -> Initialized -> Ready, disruption and termination."""
from __future__ import annotations

import asyncio
import fnmatch
import hashlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Protocol

from pytest_gpucluster.sim.controllers.base import (
    get_condition,
    is_deleting,
    owner_reference,
    rfc3339,
    set_condition,
)
from pytest_gpucluster.sim.controllers.deviceplugins import NodeFacts
from pytest_gpucluster.sim.controllers.fit import TERMINAL_PHASES
from pytest_gpucluster.sim.controllers.karpenter_catalog import (
    AUTO_PREFIX,
    AWS_PREFIX,
    EFA,
    Offering,
    instance_allocatable,
    instance_capacity,
    instance_labels,
    parse_duration,
)
from pytest_gpucluster.sim.controllers.quantity import parse_quantity, pod_requests
from pytest_gpucluster.sim.hardware import UnknownInstanceType, instance_type
from pytest_gpucluster.sim.tools.fake.fault import CLUSTER, FaultKind


FAULTS = (
    FaultKind("karpenter-slow", {"phase": "register (or launch, initialize, ready)", "seconds": "60"}, CLUSTER,
              "that NodeClaim phase takes that long"),
    FaultKind("karpenter-no-capacity", {"instance_types": "every type", "zones": "every zone"}, CLUSTER,
              "launches of those types in those zones fail with InsufficientInstanceCapacity"),
)

FINALIZER = "karpenter.sh/termination"
LAUNCHED_BY_SIM = "sim.gpucluster.io/launched"   # only nodes the sim launched are consolidated
CLAIM_CONDITIONS = ("Launched", "Registered", "Initialized", "Ready")
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}
IMAGE_ID = "ami-0a1b2c3d4e5f67890"
UNAVAILABLE_OFFERING_TTL_S = 180.0   # Karpenter's unavailable-offerings cache (ICE) lifetime


@dataclass
class Claim:
    """What the controller remembers about one NodeClaim between passes."""

    name: str
    nodepool: str
    offering: Offering | None
    created_at: float
    launched_by_sim: bool = False
    requests: dict[str, Fraction] = field(default_factory=dict)
    pod_count: int = 0
    launched_at: float | None = None
    registered_at: float | None = None
    node_ready_at: float | None = None
    initialized_at: float | None = None
    ready_at: float | None = None
    node_name: str | None = None
    instance_id: str | None = None
    efa: int = 0                     # EFA interfaces the launch attached (see ClaimLifecycle._efa_count)
    failed: bool = False
    deleting: bool = False
    terminated: bool = False
    empty_since: float | None = None

    @property
    def registered(self) -> bool:
        return self.registered_at is not None

    def add_pod(self, pod: dict[str, Any]) -> None:
        self.pod_count += 1
        for resource, amount in pod_requests(pod).items():
            self.requests[resource] = self.requests.get(resource, Fraction(0)) + amount


def no_capacity(scenario: Any, instance: str, zone: str) -> bool:
    """The `karpenter-no-capacity` fault: EC2 has none of this type in this zone (default: every GPU type)."""
    if scenario is None:
        return False
    for fault in scenario.faults_for("karpenter-no-capacity"):
        types = fault.params.get("instance_types") or []
        zones = fault.params.get("zones") or []
        type_hit = (any(fnmatch.fnmatchcase(instance, p) for p in types) if types
                    else instance_type(instance).is_gpu)
        if type_hit and (zone in zones if zones else True):
            return True
    return False


def transition_message(ctype: str, old: str, new: str, reason: str) -> str:
    return f"Status condition transitioned, Type: {ctype}, Status: {old} -> {new}, Reason: {reason}"


def insufficient_capacity_message(instance: str, zone: str, zones: list[str]) -> str:
    others = ", ".join(z for z in zones if z != zone) or zone
    return ("creating instance, insufficient capacity, with fleet error(s), InsufficientInstanceCapacity: "
            f"We currently do not have sufficient {instance} capacity in the Availability Zone you requested "
            f"({zone}). Our system will be working on provisioning additional capacity. You can currently get "
            f"{instance} capacity by not specifying an Availability Zone in your request or choosing {others}.")


class KarpenterHost(Protocol):
    """What the lifecycle needs of the Karpenter controller that owns it (karpenter.py; no import back)."""

    auto_mode: bool
    region: str
    zones: list[str]
    scenario: Any
    store: Any
    claims: dict[str, Claim]
    nominated: dict[str, str]
    unavailable: dict[tuple[str, str, str], float]

    def clock(self) -> float: ...

    def wake_in(self, seconds: float) -> None: ...

    def items(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def try_mutate(self, key: str, namespace: str | None, name: str, fn: Callable[[dict[str, Any]], None],
                   *, subresource: str | None = None) -> dict[str, Any] | None: ...

    def try_delete(self, key: str, namespace: str | None, name: str, **kwargs: Any) -> dict[str, Any] | None: ...


class ClaimLifecycle:
    """Drives every NodeClaim through its phases on the Karpenter controller's passes."""

    def __init__(self, karpenter: KarpenterHost, facts: NodeFacts, *, aws: Any | None) -> None:
        self.k = karpenter
        self.facts = facts
        self.aws = aws
        self._new_nodes = 0

    @property
    def store(self) -> Any:
        return self.k.store

    def initial_conditions(self, now: float) -> list[dict[str, Any]]:
        return sorted(({"type": t, "status": "Unknown", "reason": "AwaitingReconciliation",
                        "message": "object is awaiting reconciliation", "lastTransitionTime": rfc3339(now),
                        "observedGeneration": 1} for t in CLAIM_CONDITIONS), key=lambda c: c["type"])

    def delay(self, phase: str) -> float:
        scenario = self.k.scenario
        for fault in (scenario.faults_for("karpenter-slow") if scenario is not None else []):
            if str(fault.params.get("phase", "register")) == phase:
                return float(fault.params.get("seconds", 60.0))
        return float(getattr(getattr(scenario, "karpenter", None), phase, 0.0) or 0.0)

    # -- one pass ------------------------------------------------------------------------------
    async def sync(self, nodepools: dict[str, dict[str, Any]]) -> None:
        stored = {c["metadata"]["name"]: c for c in self.k.items("nodeclaims.karpenter.sh")}
        for name in [n for n in self.k.claims if n not in stored]:
            gone = self.k.claims.pop(name)
            if gone.node_name:
                self.facts.karpenter_nodes.pop(gone.node_name, None)
        nodes = {n["metadata"]["name"]: n for n in self.k.items("nodes")}
        now = self.k.clock()
        for name, obj in stored.items():
            claim = self.k.claims.get(name) or self._adopt(obj, now)
            if is_deleting(obj):
                claim.deleting = True
                await self._terminate(claim, obj, nodes)
                continue
            pool = (obj["metadata"].get("labels") or {}).get("karpenter.sh/nodepool", "")
            node = nodes.get(claim.node_name or "")
            if pool not in nodepools or (node is not None and is_deleting(node)):
                self.k.try_delete("nodeclaims.karpenter.sh", None, name)
                continue
            await self._advance(claim, obj, node, now)
            if claim.ready_at is not None and node is not None:
                self._disrupt(claim, obj, nodepools[pool], node, now)

    def _adopt(self, obj: dict[str, Any], now: float) -> Claim:
        """A NodeClaim this controller did not create: seeded (already Ready) or applied by a user."""
        meta, status = obj["metadata"], obj.get("status") or {}
        pool = (meta.get("labels") or {}).get("karpenter.sh/nodepool", "")
        claim = Claim(meta["name"], pool, None, now,
                      launched_by_sim=(meta.get("annotations") or {}).get(LAUNCHED_BY_SIM) == "true")
        ready = get_condition(obj, "Ready")
        if ready and ready.get("status") == "True":
            claim.launched_at = claim.registered_at = claim.node_ready_at = now
            claim.initialized_at = claim.ready_at = now
            claim.node_name = status.get("nodeName")
        else:
            claim.offering = self._offering_from_requirements(obj)
            if not (obj.get("status") or {}).get("conditions"):
                self.k.try_mutate("nodeclaims.karpenter.sh", None, meta["name"], lambda o: o.setdefault(
                    "status", {}).__setitem__("conditions", self.initial_conditions(now)), subresource="status")
        self.k.claims[claim.name] = claim
        return claim

    def _offering_from_requirements(self, obj: dict[str, Any]) -> Offering | None:
        values: dict[str, list[str]] = {}
        for req in (obj.get("spec") or {}).get("requirements") or []:
            if req.get("operator") == "In":
                values[req.get("key", "")] = [str(v) for v in req.get("values") or []]
        for name in values.get("node.kubernetes.io/instance-type", []):
            try:
                instance = instance_type(name)
            except UnknownInstanceType:
                continue
            zone = (values.get("topology.kubernetes.io/zone") or self.k.zones)[0]
            captype = (values.get("karpenter.sh/capacity-type") or ["on-demand"])[0]
            labels = {**instance_labels(instance, AUTO_PREFIX if self.k.auto_mode else AWS_PREFIX),
                      "topology.kubernetes.io/zone": zone, "karpenter.sh/capacity-type": captype}
            return Offering(instance, zone, captype, labels)
        return None

    # -- phases ----------------------------------------------------------------------------------
    async def _advance(self, claim: Claim, obj: dict[str, Any], node: dict[str, Any] | None, now: float) -> None:
        if claim.failed or claim.offering is None and claim.ready_at is None:
            return
        if claim.launched_at is None:
            due = claim.created_at + self.delay("launch")
            if now < due:
                return self.k.wake_in(due - now)
            await self._launch(claim, now)
        elif claim.registered_at is None:
            due = claim.launched_at + self.delay("register")
            if now < due:
                return self.k.wake_in(due - now)
            self._register(claim, now)
        elif claim.node_ready_at is None:
            due = claim.registered_at + self.delay("initialize")
            if now < due:
                return self.k.wake_in(due - now)
            self._node_ready(claim, now)
        elif claim.initialized_at is None:
            missing = self._not_registered(claim, node) if node is not None else None
            if node is not None and missing is None:
                self._initialized(claim, now)
            elif missing is not None:
                self._waiting(claim, "ResourceNotRegistered", f'Resource "{missing}" was requested but not registered',
                              obj, now)
        elif claim.ready_at is None:
            due = claim.initialized_at + self.delay("ready")
            if now < due:
                return self.k.wake_in(due - now)
            claim.ready_at = now
            self._transition(claim, "Ready", now)
        self.k.wake_in(0)  # the next phase may already be due

    def _transition(self, claim: Claim, ctype: str, now: float, status_extra: dict[str, Any] | None = None,
                    labels: dict[str, str] | None = None) -> dict[str, Any] | None:
        def write(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            set_condition(status.setdefault("conditions", []), ctype, "True", ctype, now=now, sort=True,
                          extra={"observedGeneration": obj["metadata"].get("generation", 1)})
            status.update(status_extra or {})
            if labels:
                obj["metadata"].setdefault("labels", {}).update(labels)

        updated = self.k.try_mutate("nodeclaims.karpenter.sh", None, claim.name, write)
        if updated is not None:
            self.store.record_event(updated, ctype, transition_message(ctype, "Unknown", "True", ctype),
                                    component="karpenter")
        return updated

    async def _launch(self, claim: Claim, now: float) -> None:
        offering = claim.offering
        assert offering is not None
        if no_capacity(self.k.scenario, offering.instance.name, offering.zone):
            self.k.unavailable[(offering.instance.name, offering.zone, offering.capacity_type)] = (
                now + UNAVAILABLE_OFFERING_TTL_S)
            self._fail(claim, "InsufficientCapacityError",
                       insufficient_capacity_message(offering.instance.name, offering.zone, self.k.zones), now)
            return
        if self.aws is not None:
            instance_id, launched = await asyncio.to_thread(
                self.aws.launch_instance, offering.instance.name, offering.zone,
                {"karpenter.sh/nodepool": claim.nodepool, "karpenter.sh/nodeclaim": claim.name})
            claim.instance_id = instance_id
        else:
            claim.instance_id = "i-" + hashlib.sha256(claim.name.encode()).hexdigest()[:17]
        claim.launched_at = self.k.clock()
        claim.efa = self._efa_count(claim)
        attached = offering.instance.with_overrides(efa=claim.efa)
        status = {"providerID": f"aws:///{offering.zone}/{claim.instance_id}", "imageID": IMAGE_ID,
                  "capacity": instance_capacity(attached), "allocatable": instance_allocatable(attached)}
        labels = {**offering.labels, "karpenter.sh/capacity-type": offering.capacity_type,
                  "topology.kubernetes.io/zone": offering.zone, "topology.kubernetes.io/region": self.k.region}
        self._transition(claim, "Launched", claim.launched_at, status, labels)

    def _efa_count(self, claim: Claim) -> int:
        """EFA interfaces the launch attaches: every one the type has when a pod of the claim requested
        vpc.amazonaws.com/efa or the EC2NodeClass configures network interfaces, else none (a plain ENA launch).
        aws/karpenter-provider-aws@1d927085 pkg/providers/instance/instance.go getEFACountForInstance; the NodeClaim
        advertises EFA only then (pkg/cloudprovider/cloudprovider.go resourceFilter)."""
        assert claim.offering is not None
        if claim.requests.get(EFA, Fraction(0)) > 0:
            return claim.offering.instance.efa
        claims = [c for c in self.k.items("nodeclaims.karpenter.sh") if c["metadata"]["name"] == claim.name]
        ref = ((claims[0].get("spec") or {}).get("nodeClassRef") or {}) if claims else {}
        if ref.get("kind") == "EC2NodeClass":
            for nodeclass in self.k.items("ec2nodeclasses.karpenter.k8s.aws"):
                if nodeclass["metadata"]["name"] == ref.get("name") and (nodeclass.get("spec") or {}).get(
                        "networkInterfaces"):
                    return claim.offering.instance.efa
        return 0

    def _fail(self, claim: Claim, reason: str, message: str, now: float) -> None:
        claim.failed = True

        def write(obj: dict[str, Any]) -> None:
            conditions = obj.setdefault("status", {}).setdefault("conditions", [])
            set_condition(conditions, "Launched", "False", reason, message, now=now, sort=True)
            set_condition(conditions, "Ready", "False", "UnhealthyDependents", "Launched=False", now=now, sort=True)

        updated = self.k.try_mutate("nodeclaims.karpenter.sh", None, claim.name, write)
        if updated is not None:
            self.store.record_event(updated, reason, f"NodeClaim {claim.name} event: {message}",
                                    type="Warning", component="karpenter")
        self.k.try_delete("nodeclaims.karpenter.sh", None, claim.name)

    def _register(self, claim: Claim, now: float) -> None:
        offering = claim.offering
        assert offering is not None
        obj = self.store.get("nodeclaims.karpenter.sh", None, claim.name)
        spec = obj.get("spec") or {}
        node_spec = None
        if self.k.scenario is not None:
            node_spec = self.k.scenario.new_node(offering.instance.name, offering.zone, self._new_nodes,
                                                 nodepool=claim.nodepool, capacity_type=offering.capacity_type,
                                                 efa=claim.efa, nodeclass=(spec.get("nodeClassRef") or {}).get("name"))
        self._new_nodes += 1
        if self.k.auto_mode or node_spec is None:
            name = claim.instance_id or claim.name
        else:
            name = node_spec.name
        claim.node_name = name
        if node_spec is not None:
            self.facts.karpenter_nodes[name] = node_spec
            self.k.scenario.register_launched(name, node_spec)   # the kubelet gives pods this hardware
        labels = {**(obj["metadata"].get("labels") or {}), "kubernetes.io/hostname": name,
                  "karpenter.sh/registered": "true"}
        if self.k.auto_mode:
            labels["eks.amazonaws.com/compute-type"] = "auto"
        taints = [dict(t) for t in spec.get("taints") or []] + [dict(t) for t in spec.get("startupTaints") or []]
        taints.append(dict(NOT_READY_TAINT))
        ip = getattr(node_spec, "private_ip", "10.0.200.10")
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "finalizers": [FINALIZER],
                         "annotations": {"karpenter.sh/nodepool-hash-version": "v3"},
                         "ownerReferences": [owner_reference(obj, controller=False)]},
            "spec": {"providerID": (obj.get("status") or {}).get("providerID", ""), "taints": taints},
            "status": {
                "capacity": dict(offering.instance.capacity()),
                "allocatable": dict(offering.instance.allocatable()),
                "conditions": [
                    {"type": t, "status": "False", "reason": r, "message": m,
                     "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": rfc3339(now)}
                    for t, r, m in (
                        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                        ("Ready", "KubeletNotReady", "container runtime network not ready: NetworkReady=false "
                         "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
                         "initialized"))],
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name},
                              {"type": "InternalDNS", "address": name}],
                "nodeInfo": {"architecture": offering.instance.arch, "operatingSystem": "linux",
                             "osImage": "Amazon Linux 2023.6.20250115", "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                             "containerRuntimeVersion": "containerd://1.7.25",
                             "kubeletVersion": "v1.32.0-eks-aeac579", "kubeProxyVersion": "v1.32.0-eks-aeac579"},
            },
        }
        self.store.create("nodes", node)
        claim.registered_at = now
        self._transition(claim, "Registered", now, {"nodeName": name})

    def _node_ready(self, claim: Claim, now: float) -> None:
        """kubelet + CNI up: Ready=True, the not-ready taint and the startup taints go away."""
        obj = self.store.get("nodeclaims.karpenter.sh", None, claim.name)
        startup = [(t.get("key"), t.get("effect")) for t in (obj.get("spec") or {}).get("startupTaints") or []]

        def ready(node: dict[str, Any]) -> None:
            node["spec"]["taints"] = [t for t in node["spec"].get("taints") or []
                                      if (t.get("key"), t.get("effect")) not in startup
                                      and t.get("key") != NOT_READY_TAINT["key"]]
            set_condition(node["status"]["conditions"], "Ready", "True", "KubeletReady",
                          "kubelet is posting ready status", now=now, extra={"lastHeartbeatTime": rfc3339(now)})

        if self.k.try_mutate("nodes", None, claim.node_name or "", ready) is not None:
            claim.node_ready_at = now

    def _not_registered(self, claim: Claim, node: dict[str, Any]) -> str | None:
        """Karpenter's Initialized waits for every extended resource the claim's pods requested to be allocatable:
        the first one still missing, None when all are (kubernetes-sigs/karpenter@22664681
        pkg/controllers/nodeclaim/lifecycle/initialization.go RequestedResourcesRegistered; node Ready and startup
        taints gone come first, as the node-ready phase here)."""
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        for resource, amount in sorted(claim.requests.items()):
            if "/" in resource and amount > 0 and parse_quantity(allocatable.get(resource, "0")) <= 0:
                return resource
        return None

    def _waiting(self, claim: Claim, reason: str, message: str, obj: dict[str, Any], now: float) -> None:
        """Initialized=Unknown with what Karpenter waits for (SetUnknownWithReason), written when it changes."""
        current: dict[str, Any] = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Initialized"),
                       {})
        if (current.get("reason"), current.get("message")) == (reason, message):
            return

        def write(o: dict[str, Any]) -> None:
            set_condition(o.setdefault("status", {}).setdefault("conditions", []), "Initialized", "Unknown", reason,
                          message, now=now, sort=True)

        self.k.try_mutate("nodeclaims.karpenter.sh", None, claim.name, write)

    def _initialized(self, claim: Claim, now: float) -> None:
        claim.initialized_at = now
        self.k.try_mutate("nodes", None, claim.node_name or "", lambda n: n["metadata"].setdefault(
            "labels", {}).__setitem__("karpenter.sh/initialized", "true"))
        self._transition(claim, "Initialized", now)

    # -- disruption and termination ------------------------------------------------------------
    def _disrupt(self, claim: Claim, obj: dict[str, Any], nodepool: dict[str, Any], node: dict[str, Any],
                 now: float) -> None:
        expire = parse_duration((obj.get("spec") or {}).get("expireAfter"))
        if expire is not None and claim.launched_by_sim:
            if now - claim.created_at >= expire:
                self.k.try_delete("nodeclaims.karpenter.sh", None, claim.name)
                return
            self.k.wake_in(claim.created_at + expire - now)
        disruption = (nodepool.get("spec") or {}).get("disruption") or {}
        after = parse_duration(disruption.get("consolidateAfter"))
        if not claim.launched_by_sim or after is None or disruption.get("consolidationPolicy") not in (
                "WhenEmpty", "WhenEmptyOrUnderutilized"):
            return
        busy = any(p["spec"].get("nodeName") == claim.node_name and (p.get("status") or {}).get("phase")
                   not in TERMINAL_PHASES and not any(r.get("kind") == "DaemonSet"
                                                      for r in p["metadata"].get("ownerReferences") or [])
                   for p in self.store.pods_on_node(claim.node_name or ""))
        if busy or claim.name in self.k.nominated.values():
            claim.empty_since = None
            return
        claim.empty_since = claim.empty_since or now
        if now - claim.empty_since < after:
            self.k.wake_in(claim.empty_since + after - now)
            return
        self._transition(claim, "Consolidatable", now)
        self.store.record_event(obj, "DisruptionTerminating", "Disrupting NodeClaim: Empty/Delete",
                                component="karpenter")
        self.k.try_delete("nodeclaims.karpenter.sh", None, claim.name)

    async def _terminate(self, claim: Claim, obj: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> None:
        """Finalizer work: taint and drain the node, delete it, terminate the instance, release the claim."""
        node_name = claim.node_name or (obj.get("status") or {}).get("nodeName")
        node = nodes.get(node_name or "")
        if node is not None:
            if not is_deleting(node):
                self.k.try_delete("nodes", None, node["metadata"]["name"])
            if DISRUPTED_TAINT not in (node["spec"].get("taints") or []):
                self.k.try_mutate("nodes", None, node["metadata"]["name"], lambda n: n["spec"].setdefault(
                    "taints", []).append(dict(DISRUPTED_TAINT)))
            draining = [p for p in list(self.store.pods_on_node(node_name or "")) if node_name
                        and (p.get("status") or {}).get("phase") not in TERMINAL_PHASES
                        and not any(r.get("kind") == "DaemonSet" for r in p["metadata"].get("ownerReferences") or [])]
            for pod in draining:
                if not is_deleting(pod):
                    self.k.try_delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if draining:
                self.k.wake_in(0.1)
                return
            self.k.try_mutate("nodes", None, node["metadata"]["name"], lambda n: n["metadata"].__setitem__(
                "finalizers", [f for f in n["metadata"].get("finalizers") or [] if f != FINALIZER]))
        if claim.instance_id and self.aws is not None and not claim.terminated and claim.launched_at is not None:
            await asyncio.to_thread(self.aws.terminate_instance, claim.instance_id)
        claim.terminated = True
        if node_name:
            self.facts.karpenter_nodes.pop(node_name, None)
        self.k.try_mutate("nodeclaims.karpenter.sh", None, claim.name, lambda c: c["metadata"].__setitem__(
            "finalizers", [f for f in c["metadata"].get("finalizers") or [] if f != FINALIZER]))
