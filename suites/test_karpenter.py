"""Karpenter (marker karpenter): GPU NodePool configuration, and a brand-new GPU node's provisioning timeline (costly)."""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import yaml

from pytest_gpucluster.kube import errors, kubeconfig
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory
from pytest_gpucluster.kube.probes import MANAGED_BY, RUN_LABEL, manifests_dir
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.run import RUN_KEY, Run

pytestmark = pytest.mark.karpenter

GPU = "nvidia.com/gpu"
NODEPOOLS = "nodepools.karpenter.sh"
NODECLASS_KINDS = {("karpenter.k8s.aws", "EC2NodeClass"): "ec2nodeclasses.karpenter.k8s.aws",
                   ("eks.amazonaws.com", "NodeClass"): "nodeclasses.eks.amazonaws.com"}
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
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


def template_spec(nodepool: dict[str, Any]) -> dict[str, Any]:
    return ((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}


def exclusion(nodepool: dict[str, Any], labels: dict[str, str]) -> str | None:
    """Why the NodePool cannot launch the instance type (the first requirement against it), or None."""
    for req in template_spec(nodepool).get("requirements") or []:
        if requirement_blocks(req, labels):
            return f"requirement {req.get('key')} {req.get('operator')} {req.get('values', [])}"
    return None


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype), None)


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


def _taint(t: dict[str, Any]) -> str:
    return f"{t.get('key')}{'=' + str(t['value']) if t.get('value') else ''}:{t.get('effect')}"


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
    """The NodePool taints its GPU nodes with the profile's GPU taint, and adds none a GPU pod cannot tolerate."""
    nodepool = _require_pool(gpu_pool)
    spec = template_spec(nodepool)
    taints = spec.get("taints") or []
    expected = gpu_profile.expected_taints(gpu_pool.instance_type)
    evidence.fact("NodePool taints", [_taint(t) for t in taints])
    evidence.fact("NodePool startupTaints", [_taint(t) for t in spec.get("startupTaints") or []])
    evidence.fact("profile GPU taints", [_taint(t) for t in expected])

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a.get("key") == b.get("key") and a.get("effect") == b.get("effect") and (
            not b.get("value") or str(a.get("value", "")) == str(b["value"]))

    missing = [_taint(t) for t in expected if not any(same(have, t) for have in taints)]
    extra = [_taint(t) for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
             and not any(t.get("key") == want.get("key") for want in expected + gpu_profile.gpu_taints)]
    problems = ([f"missing {', '.join(missing)} (non-GPU pods could land on GPU nodes)"] if missing else []) + (
        [f"adds {', '.join(extra)}, which GPU pods tolerating only the profile's taints stay Pending on"]
        if extra else [])
    assert not problems, (
        f"NodePool {gpu_pool.name} (for {gpu_pool.instance_type}) taints disagree with the profile: expected "
        f"{[_taint(t) for t in expected]}, observed {[_taint(t) for t in taints]}: {'; '.join(problems)}. Fix "
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
        need, have, cap = (_amount(one_more[resource]), _amount(used.get(resource, "0")), _amount(limit))
        evidence.measure(f"{resource} after one more {gpu_pool.instance_type}", have + need, resource,
                         threshold=cap, op="<=", source=f"NodePool {gpu_pool.name} spec.limits")
        if have + need > cap:
            full.append(f"{resource}: {used.get(resource, '0')} in use + {one_more[resource]} > limit {limit}")
    assert not full, (
        f"NodePool {gpu_pool.name} has no room for another {gpu_pool.instance_type}: {'; '.join(full)}. Karpenter "
        "will not launch it (pods stay Pending with `all available instance types exceed limits for nodepool`). "
        "Raise spec.limits or free capacity.")


_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3,
          "Ti": 1024 ** 4}


def _amount(text: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]
