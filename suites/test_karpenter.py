"""Karpenter (marker karpenter): GPU NodePool configuration, and a brand-new GPU node's provisioning timeline (costly)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from pytest_gpucluster.karpenter import (
    BUDGETS,
    GPU,
    INSTANCE_TYPE,
    NODEPOOLS,
    OBSERVE_FACTOR,
    PHASES,
    PROBE_POOL_LABEL,
    Budget,
    Observer,
    condition,
    culprit,
    diagnose,
    ec2_launch_time,
    observe,
    phase_seconds,
    probe_nodepool,
    quantity,
    scale_down,
    taint_text,
    template_spec,
    timeline_table,
)
from pytest_gpucluster.kube import errors, kubeconfig
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.probes import ProbeSpec, pod_name, render
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.report.plots import timeline_svg
from pytest_gpucluster.run import RUN_KEY, Run

pytestmark = pytest.mark.karpenter

NODECLASS_KINDS = {("karpenter.k8s.aws", "EC2NodeClass"): "ec2nodeclasses.karpenter.k8s.aws",
                   ("eks.amazonaws.com", "NodeClass"): "nodeclasses.eks.amazonaws.com"}
# Labels that describe an instance type (the rest - zone, capacity type, custom labels - cannot exclude one).
INSTANCE_KEY = re.compile(r"^(node\.kubernetes\.io/instance-type|kubernetes\.io/arch|"
                          r"(karpenter\.k8s\.aws|eks\.amazonaws\.com)/instance-[a-z-]+)$")


# -- what a NodePool can launch ------------------------------------------------------------------------
def instance_labels(itype: str, gpus: int, known: dict[str, str] | None = None) -> dict[str, str]:
    """The well-known labels of an instance type (both the Karpenter and the Auto Mode prefixes), overlaid
    with what a live node of that type shows (`known`), which has the rest (cpu, memory, network ...)."""
    family, _, size = itype.partition(".")
    match = re.match(r"^([a-z]+)(\d+)", family)
    category, generation = (match.group(1), match.group(2)) if match else (family[:1], "")
    labels = {INSTANCE_TYPE: itype}
    for prefix in ("karpenter.k8s.aws/", "eks.amazonaws.com/"):
        labels.update({f"{prefix}instance-family": family, f"{prefix}instance-category": category,
                       f"{prefix}instance-generation": generation, f"{prefix}instance-size": size})
        if gpus:
            labels.update({f"{prefix}instance-gpu-count": str(gpus),
                           f"{prefix}instance-gpu-manufacturer": "nvidia"})
    labels.update({k: v for k, v in (known or {}).items() if INSTANCE_KEY.match(k)})
    return labels


def requirement_blocks(req: dict[str, Any], labels: dict[str, str]) -> bool:
    """True when the requirement rules the instance type out (unknown instance labels never do)."""
    key, op, values = req.get("key", ""), req.get("operator", "In"), [str(v) for v in req.get("values") or []]
    if not INSTANCE_KEY.match(key) or key not in labels:
        return False
    value = labels[key]
    if op == "In":
        return value not in values
    if op == "NotIn":
        return value in values
    if op == "DoesNotExist":
        return True
    if op in ("Gt", "Lt") and values and value.isdigit() and values[0].lstrip("-").isdigit():
        return not (int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0]))
    return False


def exclusion(nodepool: dict[str, Any], labels: dict[str, str]) -> str | None:
    """Why the NodePool cannot launch the instance type (the first requirement against it), or None."""
    for req in template_spec(nodepool).get("requirements") or []:
        if requirement_blocks(req, labels):
            return f"requirement {req.get('key')} {req.get('operator')} {req.get('values', [])}"
    return None


@dataclass
class PoolTarget:
    """The NodePool that would launch one GPU instance type (None: no NodePool can), and why others cannot."""

    instance_type: str
    nodepool: dict[str, Any] | None
    excluded: dict[str, str] = field(default_factory=dict)
    node_labels: dict[str, str] = field(default_factory=dict)
    node_capacity: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.nodepool["metadata"]["name"] if self.nodepool else "no-nodepool"

    @property
    def id(self) -> str:
        return f"{self.name}/{self.instance_type}"


def pool_targets(nodepools: list[dict[str, Any]], inventory: Inventory, profile: Profile) -> list[PoolTarget]:
    """One target per GPU instance type of the cluster's GPU nodes (profile-known; all profile GPU types
    when the cluster has no GPU node yet, keeping those some NodePool admits)."""
    def gpus(itype: str) -> int:
        inst = profile.for_instance(itype)
        return inst.gpus if inst is not None else 0

    live = {n.instance_type: n for n in inventory.all_nodes if n.is_gpu}
    types = sorted(t for t in live if gpus(t))
    scale_from_zero = not types
    if scale_from_zero:
        types = [t for t in profile.instance_types() if gpus(t)]
    ordered = sorted(nodepools, key=lambda np: (-int((np.get("spec") or {}).get("weight") or 0), np["metadata"]["name"]))
    targets = []
    for itype in types:
        node = live.get(itype)
        labels = instance_labels(itype, gpus(itype), node.labels if node else None)
        excluded = {np["metadata"]["name"]: why for np in ordered if (why := exclusion(np, labels))}
        chosen = next((np for np in ordered if np["metadata"]["name"] not in excluded), None)
        targets.append(PoolTarget(itype, chosen, excluded, labels, dict(node.capacity) if node else {}))
    if scale_from_zero:
        kept = [t for t in targets if t.nodepool is not None]
        return kept or [PoolTarget("any-profile-gpu-type", None, {})]
    return targets


def _nodepools(cluster: Cluster) -> list[dict[str, Any]] | None:
    try:
        return cluster.items(NODEPOOLS)
    except errors.NotFound:   # no karpenter.sh CRDs: Karpenter (or Auto Mode) is not installed
        return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `gpu_pool` over the GPU instance types and the NodePool that launches each (ids
    `nodepool/instance-type`); `launch_pool` over the first of them only (one costly launch per run)."""
    wanted = [n for n in ("gpu_pool", "launch_pool") if n in metafunc.fixturenames]
    if not wanted:
        return
    run: Run = metafunc.config.stash[RUN_KEY]
    try:
        nodepools = _nodepools(run.connect())
        targets = pool_targets(nodepools, run.discover_inventory(), run.profile) if nodepools is not None else []
    except (kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        pytest.fail(f"gpucluster: cannot list NodePools for {metafunc.function.__name__}: {exc}", pytrace=False)
    for name in wanted:
        chosen = targets if name == "gpu_pool" else [t for t in targets if t.nodepool is not None][:1]
        if chosen:
            metafunc.parametrize(name, chosen, ids=[t.id for t in chosen])
            continue
        reason = ("Karpenter is not installed (no karpenter.sh/v1 NodePool API)" if nodepools is None
                  else "no NodePool can launch a GPU instance type of the profile (see test_gpu_nodepool_can_launch)")
        metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-gpu-nodepool"])


def _require_pool(target: PoolTarget) -> dict[str, Any]:
    if target.nodepool is None:
        pytest.skip(f"no NodePool can launch {target.instance_type}: judged by test_gpu_nodepool_can_launch")
    return target.nodepool


# -- configuration checks (cheap) ----------------------------------------------------------------------
def test_gpu_nodepool_can_launch(gpu_pool: PoolTarget, evidence: Any) -> None:
    """A NodePool's requirements admit the GPU instance type; its disruption settings are reported."""
    evidence.fact("NodePools that cannot launch it", gpu_pool.excluded)
    if gpu_pool.nodepool is None:
        reasons = "; ".join(f"{n}: {why}" for n, why in gpu_pool.excluded.items()) or "the cluster has no NodePool"
        pytest.fail(f"No NodePool can launch {gpu_pool.instance_type}: expected a NodePool whose requirements "
                    f"(instance-type / instance-family / instance-category, karpenter.k8s.aws/* or eks.amazonaws.com/*) "
                    f"admit it; observed {reasons}. Add it to your GPU NodePool, e.g. `{{key: {INSTANCE_TYPE}, "
                    f"operator: In, values: [{gpu_pool.instance_type}]}}`.", pytrace=False)
    spec = gpu_pool.nodepool.get("spec") or {}
    disruption = spec.get("disruption") or {}
    evidence.fact("requirements", template_spec(gpu_pool.nodepool).get("requirements") or [])
    evidence.fact("weight", spec.get("weight", 0))
    evidence.fact("consolidationPolicy", disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized (default)"))
    evidence.fact("consolidateAfter", disruption.get("consolidateAfter", "0s (default)"))
    evidence.fact("expireAfter", template_spec(gpu_pool.nodepool).get("expireAfter", "720h (default)"))
    evidence.fact("disruption budgets", disruption.get("budgets") or [{"nodes": "10% (default)"}])
    ready = condition(gpu_pool.nodepool, "Ready")
    evidence.fact("NodePool Ready", ready or "no status conditions")
    assert ready is None or ready.get("status") == "True", (
        f"NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) is not Ready: expected status Ready=True, observed "
        f"{ready.get('status')} {ready.get('reason')}: {ready.get('message')}. Look at `kubectl describe nodepool "
        f"{gpu_pool.name}` and the Karpenter controller's logs.")


def test_gpu_nodeclass_resolves_and_is_ready(gpu_pool: PoolTarget, cluster: Cluster, evidence: Any) -> None:
    """The NodePool's nodeClassRef names an existing EC2NodeClass (or Auto Mode NodeClass) that is Ready."""
    nodepool = _require_pool(gpu_pool)
    ref = template_spec(nodepool).get("nodeClassRef") or {}
    evidence.fact("nodeClassRef", ref)
    kind = NODECLASS_KINDS.get((ref.get("group", ""), ref.get("kind", "")))
    assert kind is not None, (
        f"NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) references an unknown node class {ref}: expected "
        f"group/kind karpenter.k8s.aws/EC2NodeClass (or eks.amazonaws.com/NodeClass on EKS Auto Mode).")
    try:
        nodeclass = cluster.get(kind, ref.get("name", ""))
    except errors.NotFound:
        pytest.fail(f"NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) references {ref.get('kind')} "
                    f"{ref.get('name')!r}, which does not exist: Karpenter cannot launch anything from it. Create it "
                    f"or fix spec.template.spec.nodeClassRef (`kubectl get {kind}`).", pytrace=False)
    ready = condition(nodeclass, "Ready")
    conds = {c.get("type"): f"{c.get('status')} {c.get('reason', '')}".strip()
             for c in (nodeclass.get("status") or {}).get("conditions") or []}
    evidence.fact(f"{ref.get('kind')} {ref.get('name')} conditions", conds)
    assert ready is not None and ready.get("status") == "True", (
        f"{ref.get('kind')} {ref.get('name')} of NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) is not "
        f"Ready: expected Ready=True, observed {ready.get('status') if ready else 'no Ready condition'} "
        f"{(ready or {}).get('reason', '')}: {(ready or {}).get('message', '')} (all: {conds}). Check its subnet/"
        "security-group selector terms match tagged resources (karpenter.sh/discovery) and that its role exists.")


def test_gpu_nodepool_taints_match_profile(gpu_pool: PoolTarget, gpu_profile: Profile, evidence: Any) -> None:
    """The NodePool taints its GPU nodes with one of the profile's GPU taints, and adds none a GPU pod cannot
    tolerate (GPU pods tolerate exactly the profile's GPU taints)."""
    nodepool = _require_pool(gpu_pool)
    spec = template_spec(nodepool)
    taints = spec.get("taints") or []
    accepted = gpu_profile.expected_taints(gpu_pool.instance_type)
    evidence.fact("NodePool taints", [taint_text(t) for t in taints])
    evidence.fact("NodePool startupTaints", [taint_text(t) for t in spec.get("startupTaints") or []])
    evidence.fact("profile GPU taints (any one of)", [taint_text(t) for t in accepted])

    def same(have: dict[str, Any], want: dict[str, Any]) -> bool:
        return have.get("key") == want.get("key") and (not want.get("effect") or have.get("effect") == want["effect"]) \
            and (not want.get("value") or str(have.get("value", "")) == str(want["value"]))

    tolerated = [*accepted, *gpu_profile.gpu_taints]
    has_gpu_taint = any(same(have, want) for have in taints for want in accepted)
    extra = [taint_text(t) for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
             and not any(t.get("key") == want.get("key") for want in tolerated)]
    problems = ([] if has_gpu_taint else ["none of the profile's GPU taints (non-GPU pods could land on GPU nodes)"]) \
        + ([f"adds {', '.join(extra)}, which GPU pods tolerating only the profile's taints stay Pending on"]
           if extra else [])
    assert not problems, (
        f"NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) taints disagree with the profile: expected one of "
        f"{[taint_text(t) for t in accepted]}, observed {[taint_text(t) for t in taints]}: {'; '.join(problems)}. Fix "
        "spec.template.spec.taints, or the profile's cluster.gpu_taints / instances.<type>.taint if the NodePool is right.")


def test_gpu_nodepool_limits_leave_room(gpu_pool: PoolTarget, gpu_profile: Profile, evidence: Any) -> None:
    """The NodePool's limits leave room for at least one more node of the GPU instance type."""
    nodepool = _require_pool(gpu_pool)
    limits = (nodepool.get("spec") or {}).get("limits") or {}
    used = (nodepool.get("status") or {}).get("resources") or {}
    inst = gpu_profile.for_instance(gpu_pool.instance_type)
    one_more = {**gpu_pool.node_capacity, GPU: str(inst.gpus if inst else 0), "nodes": "1"}
    evidence.fact("limits", limits or "none (unlimited)")
    evidence.fact("in use (status.resources)", used)
    full = []
    for resource, limit in limits.items():
        if resource not in one_more:
            evidence.fact(f"{resource}: one more node", "unknown for this instance type (not judged)")
            continue
        need, have, cap = (quantity(one_more[resource]), quantity(used.get(resource, "0")), quantity(limit))
        evidence.measure(f"{resource} after one more {gpu_pool.instance_type}", have + need, resource,
                         threshold=cap, op="<=", source=f"NodePool {gpu_pool.name} spec.limits")
        if have + need > cap:
            full.append(f"{resource}: {used.get(resource, '0')} in use + {one_more[resource]} > limit {limit}")
    assert not full, (
        f"NodePool {gpu_pool.name} has no room for another {gpu_pool.instance_type}: {'; '.join(full)}. Karpenter "
        "will not launch it (pods stay Pending with `all available instance types exceed limits for nodepool`). "
        "Raise spec.limits or free capacity.")


@pytest.mark.costly
def test_gpu_node_provisioning_latency(launch_pool: PoolTarget, gpucluster_run: Run, cluster: Cluster,
                                       gpu_profile: Profile, request: pytest.FixtureRequest, evidence: Any) -> None:
    """A GPU pod on a brand-new node of a temporary clone of the GPU NodePool: every phase from the cluster's
    timestamps and the suite's watches, budgets from the profile, then the node must go away again."""
    itype, source = launch_pool.instance_type, _require_pool(launch_pool)
    inst = gpu_profile.for_instance(itype)
    gpus = inst.gpus if inst is not None else 1
    budget = Budget(dict(inst.provisioning_budget_s) if inst else {},
                    f"profile {itype} provisioning_budget_s")
    run_id, namespace = gpucluster_run.run_id, gpucluster_run.namespace
    body, pool_id = probe_nodepool(source, itype, gpus, run_id)
    pool = body["metadata"]["name"]
    ctx = gpucluster_run.probe_context()
    fleet = f"karpenter-{pool_id}"
    name = pod_name("karpenter-latency", fleet, run_id)
    total = budget.limit("total") or 900.0
    spec = ProbeSpec("karpenter-latency", ["sh", "-c", "nvidia-smi -L; exec sleep 3600"], gpus=gpus,
                     node_selector={PROBE_POOL_LABEL: pool_id}, timeout_s=total * OBSERVE_FACTOR)
    manifest = render(spec, ctx, name=name, fleet=fleet)

    def remove() -> None:   # on any exit, interrupt included; teardown also deletes NodePools by run label
        if not gpucluster_run.options.keep:
            cluster.delete("pods", name, namespace, grace_seconds=0)
            cluster.delete(NODEPOOLS, pool)
    request.addfinalizer(remove)
    evidence.attach(f"temporary NodePool {pool} (clone of {launch_pool.name})", yaml.safe_dump(body), kind="manifest")
    cluster.create(NODEPOOLS, body)
    obs = Observer(cluster, namespace, name, f"gpucluster.io/fleet={fleet}", pool, pool_id)
    created_at = time.time()
    cluster.create("pods", manifest, namespace)
    obs.start(created_at)
    try:
        stall = observe(obs, budget, pool)
    finally:
        seen = obs.stop()
    why = diagnose(stall, seen, cluster, pool) if stall else None
    watch, stamps = seen.watch, seen.cluster_times()
    provider = ((seen.claim() or {}).get("status") or {}).get("providerID")
    ec2_time, ec2_note = ec2_launch_time(gpucluster_run, request.config, provider) if provider else (None, "no instance")
    evidence.fact("EC2 launch time", ec2_note)
    evidence.attach(f"provisioning timeline of a new {itype} (NodePool {pool})",
                    timeline_table(watch, stamps, budget, ec2_time), kind="text")
    for clock, times in (("watch", watch), ("cluster", stamps)):
        for phase, seconds in phase_seconds(times).items():
            evidence.measure(f"{phase} ({clock})", round(seconds, 3), "s",
                             source="suite's watch events (sub-second)" if clock == "watch"
                             else "object timestamps (whole seconds)")
    bars = [(label, watch[a] - watch["pod created"], max(watch[a], watch[b]) - watch["pod created"])
            for label, a, b in PHASES if a in watch and b in watch]
    if bars:
        evidence.plot(f"Karpenter provisioning timeline ({itype})",
                      timeline_svg(bars, title=f"New {itype} from NodePool {launch_pool.name} (watch clock)",
                                   limit=budget.limit("total")))
    over = []
    for key, (a, b) in BUDGETS.items():
        limit = budget.limit(key)
        if a not in watch or limit is None:
            continue
        took = watch.get(b, time.time()) - watch[a]
        evidence.measure(f"budget {key}: {a} -> {b}", round(took, 3), "s", threshold=limit, op="<=",
                         source=f"{budget.source}.{key}")
        if took > limit:
            over.append(f"{key} {took:.1f}s > {limit:g}s ({a} -> {b}; {culprit(watch, a, b)})")
    started = time.monotonic()
    left = scale_down(cluster, namespace, name, pool, pool_id, total)
    evidence.measure("scale-down: NodePool deleted -> NodeClaim and node gone", round(time.monotonic() - started, 3),
                     "s", threshold=total, op="<=", source=f"{budget.source}.total (the profile has no "
                     "separate scale-down budget)")
    evidence.fact("scale-down leftovers", left or "none")
    problems = ([f"stalled: {why}"] if why else []) + over + (
        [f"scale-down: still present {total:g}s after deleting the NodePool: {', '.join(left)}"] if left else [])
    assert not problems, (
        f"Provisioning a new {itype} through NodePool {launch_pool.name} (clone {pool}) failed: expected every phase "
        f"within {budget.source} and the node gone after the NodePool is deleted; observed "
        + "; ".join(p.rstrip(".") for p in problems)
        + ". The timeline table and plot are in the report; `kubectl describe nodeclaim` shows Karpenter's view.")
