"""Judges for Karpenter: which NodePool can launch a GPU instance type (Karpenter's requirement semantics), its
readiness, node class, taints and limits, and a new node's provisioning timeline against the profile's budgets."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from pytest_gpucluster.checks.taints import accepted_gpu_taints, accepts, blocking, texts
from pytest_gpucluster.checks.verdict import Criterion, Verdict
from pytest_gpucluster.kube.objects import GPU_RESOURCE, INSTANCE_TYPE_LABEL, ZONE_LABEL, condition
from pytest_gpucluster.kube.quantity import parse_quantity
from pytest_gpucluster.kube.taints import taint_text

if TYPE_CHECKING:   # the profile module imports pytest (usage errors); a judge only needs the type
    from pytest_gpucluster.profile import Profile

ARCH, OS, ZONE_ID = "kubernetes.io/arch", "kubernetes.io/os", "topology.k8s.aws/zone-id"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
# Karpenter's well-known labels: the core ones (sigs.k8s.io/karpenter pkg/apis/v1/labels.go: instance-type, arch,
# os, zone, capacity-type) and the AWS provider's (aws/karpenter-provider-aws pkg/apis/v1/labels.go:
# karpenter.k8s.aws/instance-{category,family,generation,size,cpu,memory,network-bandwidth,gpu-name,gpu-count,
# gpu-manufacturer,gpu-memory,...}, topology.k8s.aws/zone-id); EKS Auto Mode names the same instance labels under
# eks.amazonaws.com/ (docs.aws.amazon.com/eks/latest/userguide/create-node-pool.html). Karpenter evaluates a
# requirement on these against each instance type's offerings. A requirement on any other (user) key does not
# exclude an instance type: Karpenter puts the label on the node it launches ("User-Defined Labels",
# karpenter-provider-aws website/content/en/docs/concepts/nodepools.md). A key under a well-known domain that this
# judge does not know is "cannot tell", never "fits".
INSTANCE_PREFIXES = ("karpenter.k8s.aws/", "eks.amazonaws.com/")
WELL_KNOWN_PREFIXES = (*INSTANCE_PREFIXES, "karpenter.sh/", "node.kubernetes.io/", "topology.kubernetes.io/",
                       "topology.k8s.aws/", "kubernetes.io/")
INSTANCE_KEY = re.compile(r"^(node\.kubernetes\.io/instance-type|kubernetes\.io/arch|"
                          r"(karpenter\.k8s\.aws|eks\.amazonaws\.com)/instance-[a-z-]+)$")
# Dimensions of an offering, not of the type: every value is possible for any type (capacity availability is what
# the costly launch test measures). Zones come from live nodes of the type.
OFFERINGS = {CAPACITY_TYPE: {"on-demand", "spot", "reserved"}, OS: {"linux", "windows"}}
FITS, BLOCKS, UNKNOWN = "fits", "blocks", "cannot tell"


class Node(Protocol):
    instance_type: str
    labels: dict[str, str]
    capacity: dict[str, str]


def gpu_name(product: str | None) -> str | None:
    """Karpenter's instance-gpu-name from nvidia-smi's product name: `NVIDIA H100 80GB HBM3` -> `h100`."""
    words = [w for w in re.split(r"[\s-]+", product or "") if w.lower() not in ("nvidia", "tesla", "")]
    return words[0].lower() if words else None


def instance_facts(itype: str, gpus: int, product: str | None, live: Mapping[str, str] | None) -> dict[str, str]:
    """What the instance type's well-known labels say, under both prefixes: from its name (family, category,
    generation, size, arch: Graviton families carry a `g` after the generation), the profile (GPU count, name;
    every GPU type of the profile is NVIDIA), overlaid with the instance labels a live node of the type shows
    (the only source for cpu, memory, gpu-memory, network-bandwidth)."""
    family, _, size = itype.partition(".")
    match = re.match(r"^([a-z]+)(\d+)([a-z-]*)$", family)
    category, generation, extra = (match.group(1), match.group(2), match.group(3)) if match else (family[:1], "", "")
    facts = {INSTANCE_TYPE_LABEL: itype, ARCH: "arm64" if "g" in extra else "amd64"}
    name = gpu_name(product)
    for prefix in INSTANCE_PREFIXES:
        facts.update({f"{prefix}instance-family": family, f"{prefix}instance-category": category,
                      f"{prefix}instance-generation": generation, f"{prefix}instance-size": size})
        if gpus:
            facts.update({f"{prefix}instance-gpu-count": str(gpus), f"{prefix}instance-gpu-manufacturer": "nvidia"})
            if name:
                facts[f"{prefix}instance-gpu-name"] = name
    facts.update({k: v for k, v in (live or {}).items() if INSTANCE_KEY.match(k)})
    return facts


def _single(op: str, value: str, values: list[str]) -> bool:
    if op in ("Gt", "Lt"):
        if not (value.lstrip("-").isdigit() and values and values[0].lstrip("-").isdigit()):
            return False
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return {"In": value in values, "NotIn": value not in values, "Exists": True, "DoesNotExist": False}.get(op, False)


def _some(op: str, possible: set[str], values: list[str]) -> bool:
    return {"In": bool(possible & set(values)), "NotIn": bool(possible - set(values)), "Exists": True}.get(op, False)


def evaluate(req: Mapping[str, Any], facts: Mapping[str, str], zones: Mapping[str, set[str]]) -> tuple[str, str]:
    """Karpenter's reading of one NodePool requirement for one instance type: (fits | blocks | cannot tell, why).
    `minValues` is ignored: it constrains how many types a launch may choose from, not whether this one fits."""
    key, op = str(req.get("key", "")), str(req.get("operator", "In"))
    values = [str(v) for v in req.get("values") or []]
    text = f"requirement {key} {op} {values}"
    if not key.startswith(WELL_KNOWN_PREFIXES):
        return FITS, f"{text}: user label, put on the node"
    if key in OFFERINGS:
        return (FITS, text) if _some(op, OFFERINGS[key], values) else (BLOCKS, text)
    if key in (ZONE_LABEL, ZONE_ID):
        seen = zones.get(key) or set()
        if op == "DoesNotExist":
            return BLOCKS, text
        if _some(op, seen, values):
            return FITS, text
        return UNKNOWN, f"{text}: zones offering the type unknown (live nodes of it: {sorted(seen) or 'none'})"
    if key in facts:
        return (FITS, text) if _single(op, facts[key], values) else (BLOCKS, text)
    if INSTANCE_KEY.match(key) and key.split("/", 1)[1] in _DERIVABLE:
        return UNKNOWN, f"{text}: not known for the type (no profile value, no live node of it labelled)"
    return UNKNOWN, f"{text}: well-known label this check does not know"


_DERIVABLE = {f"instance-{k}" for k in ("family", "category", "generation", "size", "gpu-name", "gpu-count",
                                         "gpu-manufacturer", "gpu-memory", "cpu", "memory", "network-bandwidth")}


def template_spec(nodepool: Mapping[str, Any]) -> dict[str, Any]:
    return dict(((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {})


@dataclass
class Fit:
    """How one NodePool's requirements read for one instance type."""

    blocked: str | None = None
    unknown: list[str] = field(default_factory=list)


def fit(nodepool: Mapping[str, Any], facts: Mapping[str, str], zones: Mapping[str, set[str]]) -> Fit:
    out = Fit()
    for req in template_spec(nodepool).get("requirements") or []:
        status, why = evaluate(req, facts, zones)
        if status == BLOCKS:
            return Fit(blocked=why)
        if status == UNKNOWN:
            out.unknown.append(why)
    return out


@dataclass
class PoolTarget:
    """The NodePool that would launch one GPU instance type (None: no NodePool can), and why others cannot."""

    instance_type: str
    nodepool: dict[str, Any] | None
    excluded: dict[str, str] = field(default_factory=dict)
    node_labels: dict[str, str] = field(default_factory=dict)
    node_capacity: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)       # requirements of the chosen NodePool it cannot judge

    @property
    def name(self) -> str:
        return self.nodepool["metadata"]["name"] if self.nodepool else "no-nodepool"

    @property
    def id(self) -> str:
        return f"{self.name}/{self.instance_type}"


def pool_targets(nodepools: Sequence[dict[str, Any]], nodes: Sequence[Node], profile: Profile) -> list[PoolTarget]:
    """One target per GPU instance type of the cluster's GPU nodes (profile-known; all profile GPU types when the
    cluster has no GPU node yet, keeping those some NodePool admits). Among the NodePools (by weight, then name)
    one that certainly fits wins over one whose requirements cannot all be judged."""
    def gpus(itype: str) -> int:
        inst = profile.for_instance(itype)
        return inst.gpus if inst is not None else 0

    live = {n.instance_type: n for n in nodes}
    types = sorted(t for t in live if gpus(t))
    scale_from_zero = not types
    if scale_from_zero:
        types = [t for t in profile.instance_types() if gpus(t)]
    ordered = sorted(nodepools, key=lambda np: (-int((np.get("spec") or {}).get("weight") or 0), np["metadata"]["name"]))
    targets = []
    for itype in types:
        node = live.get(itype)
        inst = profile.for_instance(itype)
        facts = instance_facts(itype, gpus(itype), inst.gpu_product if inst else None, node.labels if node else None)
        zones = {k: {n.labels[k] for n in nodes if n.instance_type == itype and n.labels.get(k)}
                 for k in (ZONE_LABEL, ZONE_ID)}
        fits = {np["metadata"]["name"]: fit(np, facts, zones) for np in ordered}
        excluded = {name: f.blocked for name, f in fits.items() if f.blocked}
        open_ = [np for np in ordered if not fits[np["metadata"]["name"]].blocked]
        chosen = next((np for np in open_ if not fits[np["metadata"]["name"]].unknown), open_[0] if open_ else None)
        unknown = fits[chosen["metadata"]["name"]].unknown if chosen else []
        targets.append(PoolTarget(itype, chosen, excluded, facts, dict(node.capacity) if node else {}, unknown))
    if scale_from_zero:
        kept = [t for t in targets if t.nodepool is not None]
        return kept or [PoolTarget("any-profile-gpu-type", None, {})]
    return targets


def can_launch(target: PoolTarget) -> Verdict:
    """A NodePool admits the instance type, and it is Ready.

    Karpenter v1 NodePools carry status.conditions ValidationSucceeded, NodeClassReady, NodeRegistrationHealthy and
    Ready, Ready being the aggregate of ValidationSucceeded and NodeClassReady (sigs.k8s.io/karpenter
    pkg/apis/v1/nodepool_status.go, StatusConditions). A v1 NodePool without a Ready condition has not been
    reconciled by the controller (not running, or an older API version serving it): that fails, it is not Ready."""
    itype = target.instance_type
    facts: dict[str, Any] = {"NodePools that cannot launch it": target.excluded}
    if target.nodepool is None:
        reasons = "; ".join(f"{n}: {why}" for n, why in target.excluded.items()) or "the cluster has no NodePool"
        return Verdict.failed(
            f"No NodePool can launch {itype}", "a NodePool whose requirements (instance-type / instance-family / "
            "instance-category, karpenter.k8s.aws/* or eks.amazonaws.com/*) admit it", reasons,
            f"Add it to your GPU NodePool, e.g. `{{key: {INSTANCE_TYPE_LABEL}, operator: In, values: [{itype}]}}`.",
            facts=facts)
    spec, tspec = target.nodepool.get("spec") or {}, template_spec(target.nodepool)
    disruption = spec.get("disruption") or {}
    facts.update({"requirements": tspec.get("requirements") or [], "weight": spec.get("weight", 0),
                  "consolidationPolicy": disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized (default)"),
                  "consolidateAfter": disruption.get("consolidateAfter", "0s (default)"),
                  "expireAfter": tspec.get("expireAfter", "720h (default)"),
                  "disruption budgets": disruption.get("budgets") or [{"nodes": "10% (default)"}]})
    if target.unknown:
        return Verdict.not_shown(f"NodePool {target.name} for {itype}", "; ".join(target.unknown),
                                 "label a node of the type, or add the value to the profile, to judge it", facts=facts)
    ready = condition(target.nodepool, "Ready")
    facts["NodePool Ready"] = ready or "no Ready condition"
    subject = f"NodePool {target.name} (for {itype}) is not Ready"
    if ready is None:
        return Verdict.failed(subject, "status Ready=True", "no Ready condition: the Karpenter controller has not "
                              "reconciled this NodePool", "Check that the Karpenter controller runs (`kubectl -n "
                              "kube-system get deploy karpenter`) and serves karpenter.sh/v1; see `kubectl describe "
                              f"nodepool {target.name}`.", facts=facts)
    if ready.get("status") != "True":
        return Verdict.failed(subject, "status Ready=True", f"{ready.get('status')} {ready.get('reason')}: "
                              f"{ready.get('message')}", f"Look at `kubectl describe nodepool {target.name}` and the "
                              "Karpenter controller's logs.", facts=facts)
    return Verdict.passed(f"NodePool {target.name} for {itype}", "admits the type, Ready=True", "as expected",
                          facts=facts)


def nodeclass_ready(target: PoolTarget, ref: Mapping[str, Any], kind: str | None, obj: Mapping[str, Any] | None,
                    conds: Mapping[str, str]) -> Verdict:
    where = f"NodePool {target.name} (for {target.instance_type})"
    facts = {"nodeClassRef": dict(ref), f"{ref.get('kind')} {ref.get('name')} conditions": dict(conds)}
    if kind is None:
        return Verdict.failed(f"{where} references an unknown node class {dict(ref)}", "group/kind karpenter.k8s.aws/"
                              "EC2NodeClass (or eks.amazonaws.com/NodeClass on EKS Auto Mode)", str(dict(ref)),
                              facts=facts)
    if obj is None:
        return Verdict.failed(f"{where} references {ref.get('kind')} {ref.get('name')!r}", "it to exist",
                              "it does not exist: Karpenter cannot launch anything from it",
                              f"Create it or fix spec.template.spec.nodeClassRef (`kubectl get {kind}`).", facts=facts)
    ready = condition(obj, "Ready")
    if ready is not None and ready.get("status") == "True":
        return Verdict.passed(f"{ref.get('kind')} {ref.get('name')}", "Ready=True", "Ready=True", facts=facts)
    return Verdict.failed(
        f"{ref.get('kind')} {ref.get('name')} of {where} is not Ready", "Ready=True",
        f"{ready.get('status') if ready else 'no Ready condition'} {(ready or {}).get('reason', '')}: "
        f"{(ready or {}).get('message', '')} (all: {dict(conds)})", "Check its subnet/security-group selector terms "
        "match tagged resources (karpenter.sh/discovery) and that its role exists.", facts=facts)


def flavour_of_pool(nodepool: Mapping[str, Any]) -> str:
    return "auto-mode" if (template_spec(nodepool).get("nodeClassRef") or {}).get("group") == "eks.amazonaws.com" \
        else "standard"


def pool_gpu_taints(nodepool: Mapping[str, Any], itype: str, profile: Profile) -> list[Mapping[str, Any]]:
    """The taints accepted as the GPU taint on the NodePool's nodes (see checks/taints.accepted_gpu_taints)."""
    return accepted_gpu_taints(profile, itype, flavour_of_pool(nodepool), template_spec(nodepool).get("taints"))


def nodepool_taints(target: PoolTarget, profile: Profile) -> Verdict:
    """The NodePool taints its GPU nodes with an accepted GPU taint, and adds none a GPU pod cannot tolerate
    (GPU pods tolerate the accepted GPU taints and the profile's)."""
    assert target.nodepool is not None
    spec = template_spec(target.nodepool)
    taints = spec.get("taints") or []
    accepted = pool_gpu_taints(target.nodepool, target.instance_type, profile)
    tolerated = [*accepted, *profile.gpu_taints]
    facts = {"NodePool taints": [taint_text(t) for t in taints],
             "NodePool startupTaints": [taint_text(t) for t in spec.get("startupTaints") or []],
             "profile GPU taints (any one of)": [taint_text(t) for t in accepted]}
    extra = [t for t in blocking(taints) if not any(t.get("key") == want.get("key") for want in tolerated)]
    problems = ([] if any(accepts(want, t) for t in taints for want in accepted)
                else ["none of the profile's GPU taints (non-GPU pods could land on GPU nodes)"])
    if extra:
        problems.append(f"adds {texts(extra)}, which GPU pods tolerating only the profile's taints stay Pending on")
    return Verdict.from_problems(
        f"NodePool {target.name} (for {target.instance_type})", f"one of {[taint_text(t) for t in accepted]}",
        [f"{[taint_text(t) for t in taints]}: " + "; ".join(problems)] if problems else [],
        "Fix spec.template.spec.taints, or the profile's cluster.gpu_taints / instances.<type>.taint if the NodePool "
        "is right.", summary="Taints disagree with the profile", facts=facts)


def limits_room(target: PoolTarget, gpus: int) -> Verdict:
    """The NodePool's spec.limits leave room for one more node of the type (status.resources in use)."""
    assert target.nodepool is not None
    limits = (target.nodepool.get("spec") or {}).get("limits") or {}
    used = (target.nodepool.get("status") or {}).get("resources") or {}
    one_more = {**target.node_capacity, GPU_RESOURCE: str(gpus), "nodes": "1"}
    facts: dict[str, Any] = {"limits": limits or "none (unlimited)", "in use (status.resources)": used}
    crits, full = [], []
    for resource, limit in limits.items():
        if resource not in one_more:
            facts[f"{resource}: one more node"] = "unknown for this instance type (not judged)"
            continue
        need, have, cap = (parse_quantity(one_more[resource]), parse_quantity(used.get(resource, "0")),
                           parse_quantity(limit))
        crits.append(Criterion(f"{resource} after one more {target.instance_type}", have + need, resource,
                               threshold=cap, op="<=", source=f"NodePool {target.name} spec.limits"))
        if have + need > cap:
            full.append(f"{resource}: {used.get(resource, '0')} in use + {one_more[resource]} > limit {limit}")
    return Verdict.from_problems(
        f"NodePool {target.name} has no room for another {target.instance_type}" if full else
        f"NodePool {target.name}", "room for one more node within spec.limits", full,
        "Karpenter will not launch it (pods stay Pending with `all available instance types exceed limits for "
        "nodepool`). Raise spec.limits or free capacity.", criteria=tuple(crits), facts=facts)


# -- provisioning timeline ------------------------------------------------------------------------------
# Marks of a new GPU node's life, in order.
MARKS = ("pod created", "Nominated", "NodeClaim created", "Launched", "Registered", "Node Ready", "GPU allocatable",
         "Initialized", "NodeClaim Ready", "pod scheduled", "container started", "pod Ready")
# Budgets in the profile are cumulative from NodeClaim creation (total: from pod creation), per instance type.
BUDGETS = {"launched": ("NodeClaim created", "Launched"), "registered": ("NodeClaim created", "Registered"),
           "initialized": ("NodeClaim created", "Initialized"), "total": ("pod created", "container started")}
# Phases between marks (label, from, to): the table rows, the plot bars, the per-phase budgets' culprits.
PHASES = (("Karpenter sees the pod", "pod created", "Nominated"),
          ("NodeClaim created", "pod created", "NodeClaim created"),
          ("EC2 launch", "NodeClaim created", "Launched"),
          ("boot and register", "Launched", "Registered"),
          ("node ready", "Registered", "Node Ready"),
          ("GPUs allocatable", "Node Ready", "GPU allocatable"),
          ("initialized", "Node Ready", "Initialized"),
          ("NodeClaim ready", "Initialized", "NodeClaim Ready"),
          ("pod scheduled", "pod created", "pod scheduled"),
          ("container started", "pod scheduled", "container started"),
          ("pod ready", "container started", "pod Ready"))


def phase_seconds(times: Mapping[str, float]) -> dict[str, float]:
    return {f"{a} -> {b}": times[b] - times[a] for _, a, b in PHASES if a in times and b in times}


def culprit(watch: Mapping[str, float], a: str, b: str, now: float) -> str:
    """The phase to blame for a slow a -> b: the slowest one in between, or where it got stuck."""
    if b not in watch:
        reached = [m for m in MARKS[MARKS.index(a):MARKS.index(b)] if m in watch]
        last = max(reached, key=lambda m: watch[m])
        return f"not reached: stuck {now - watch[last]:.1f}s after {last}"
    span = [p for p in PHASES if MARKS.index(p[1]) >= MARKS.index(a) and MARKS.index(p[2]) <= MARKS.index(b)]
    label, seconds = max(((lbl, watch[y] - watch[x]) for lbl, x, y in span if x in watch and y in watch),
                         key=lambda p: p[1], default=("-", watch[b] - watch[a]))
    return f"slowest phase: {label} {seconds:.1f}s"


def provisioning(itype: str, pool: str, clone: str, watch: Mapping[str, float], budgets: Mapping[str, float],
                 source: str, now: float, stall: str | None, leftovers: Sequence[str], total: float,
                 origin: str = "") -> Verdict:
    """Every budgeted phase within the profile's budget, no stall, and nothing left after the clone is deleted.
    `origin`: where the budget's numbers come from (the profile's `sources["provisioning_budget_s"]`: a measured
    figure, Karpenter's docs, or "site policy: set yours"), shown with each budget criterion."""
    crits, over = [], []
    for key, (a, b) in BUDGETS.items():
        limit = budgets.get(key)
        if a not in watch or limit is None:
            continue
        took = watch.get(b, now) - watch[a]
        crits.append(Criterion(f"budget {key}: {a} -> {b}", round(took, 3), "s", threshold=limit, op="<=",
                               source=f"{source}.{key}" + (f" ({origin})" if origin else "")))
        if took > limit:
            over.append(f"{key} {took:.1f}s > {limit:g}s ({a} -> {b}; {culprit(watch, a, b, now)})")
    problems = ([f"stalled: {stall}"] if stall else []) + over + (
        [f"scale-down: still present {total:g}s after deleting the NodePool: {', '.join(leftovers)}"]
        if leftovers else [])
    return Verdict.from_problems(
        f"Provisioning a new {itype} through NodePool {pool} (clone {clone}) failed" if problems else
        f"Provisioning a new {itype} through NodePool {pool}",
        f"every phase within {source} and the node gone after the NodePool is deleted",
        [p.rstrip(".") for p in problems], "The timeline table and plot are in the report; `kubectl describe "
        "nodeclaim` shows Karpenter's view.", criteria=tuple(crits))
