"""Karpenter (marker karpenter): GPU NodePool configuration, and a brand-new GPU node's provisioning timeline (costly)."""
from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from pytest_gpucluster.checks import karpenter as judge
from pytest_gpucluster.checks.karpenter import PHASES, PoolTarget
from pytest_gpucluster.gather.karpenter import (OBSERVE_FACTOR, Budget, Observer, diagnose, ec2_launch_time, efa_request,
                                         observe, scale_down, timeline_table)
from pytest_gpucluster.kube import errors, kubeconfig, nodepool
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.nodepool import NODEPOOLS, PROBE_POOL_LABEL
from pytest_gpucluster.kube.objects import EFA_RESOURCE, GPU_RESOURCE, NODEPOOL_LABEL, condition_texts
from pytest_gpucluster.kube.placement import toleration_for
from pytest_gpucluster.kube.plugins import Plugins
from pytest_gpucluster.kube.probes import ProbeSpec, pod_name, render
from pytest_gpucluster.profile import Profile
from pytest_gpucluster.report.plots import timeline_svg
from pytest_gpucluster.session import SESSION_KEY, Session
from pytest_gpucluster.suite import enforce

pytestmark = pytest.mark.karpenter


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `gpu_pool` over the GPU instance types and the NodePool that launches each (ids
    `nodepool/instance-type`); `launch_pool` over the first of them only (one costly launch per run)."""
    wanted = [n for n in ("gpu_pool", "launch_pool") if n in metafunc.fixturenames]
    if not wanted:
        return
    run: Session = metafunc.config.stash[SESSION_KEY]
    try:
        pools = nodepool.nodepools(run.connect())
        gpu_nodes = [n for n in run.discover_inventory().all_nodes if n.is_gpu]
        targets = judge.pool_targets(pools, gpu_nodes, run.profile) if pools is not None else []
    except (kubeconfig.KubeconfigError, errors.ClusterError) as exc:
        pytest.fail(f"gpucluster: cannot list NodePools for {metafunc.function.__name__}: {exc}", pytrace=False)
    for name in wanted:
        chosen = targets if name == "gpu_pool" else [t for t in targets if t.nodepool is not None][:1]
        if chosen:
            metafunc.parametrize(name, chosen, ids=[t.id for t in chosen])
            continue
        reason = ("Karpenter is not installed (no karpenter.sh/v1 NodePool API)" if pools is None
                  else "no NodePool can launch a GPU instance type of the profile (see test_gpu_nodepool_can_launch)")
        metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-gpu-nodepool"])


def _require_pool(target: PoolTarget) -> dict[str, Any]:
    if target.nodepool is None:
        pytest.skip(f"no NodePool can launch {target.instance_type}: judged by test_gpu_nodepool_can_launch")
    return target.nodepool


def _gpus(profile: Profile, itype: str, default: int) -> int:
    inst = profile.for_instance(itype)
    return inst.gpus if inst is not None else default


# -- configuration checks (cheap) ----------------------------------------------------------------------
def test_gpu_nodepool_can_launch(gpu_pool: PoolTarget, evidence: Any) -> None:
    """A NodePool's requirements admit the GPU instance type (Karpenter's well-known label semantics) and the
    NodePool is Ready; its disruption settings are reported."""
    enforce(judge.can_launch(gpu_pool), evidence)


def test_gpu_nodeclass_resolves_and_is_ready(gpu_pool: PoolTarget, cluster: Cluster, evidence: Any) -> None:
    """The NodePool's nodeClassRef names an existing EC2NodeClass (or Auto Mode NodeClass) that is Ready."""
    ref, kind, obj = nodepool.nodeclass(cluster, _require_pool(gpu_pool))
    enforce(judge.nodeclass_ready(gpu_pool, ref, kind, obj, condition_texts(obj)), evidence)


def test_gpu_nodepool_taints_match_profile(gpu_pool: PoolTarget, gpu_profile: Profile, evidence: Any) -> None:
    """The NodePool taints its GPU nodes with one of the profile's GPU taints (EKS Auto Mode: the one it declares),
    and adds none a GPU pod cannot tolerate (GPU pods tolerate exactly the accepted GPU taints)."""
    _require_pool(gpu_pool)
    enforce(judge.nodepool_taints(gpu_pool, gpu_profile), evidence)


def test_gpu_nodepool_limits_leave_room(gpu_pool: PoolTarget, gpu_profile: Profile, evidence: Any) -> None:
    """The NodePool's limits leave room for at least one more node of the GPU instance type."""
    _require_pool(gpu_pool)
    enforce(judge.limits_room(gpu_pool, _gpus(gpu_profile, gpu_pool.instance_type, 0)), evidence)


@pytest.mark.costly
@pytest.mark.live_only("the launch is timed by four watches running beside the suite (karpenter.Observer), whose "
                       "interleaving with it a replay does not reproduce; the recorded run's report has its timeline")
def test_gpu_node_provisioning_latency(launch_pool: PoolTarget, gpucluster_session: Session, cluster: Cluster,
                                       gpu_profile: Profile, device_plugins: Plugins, request: pytest.FixtureRequest,
                                       evidence: Any) -> None:
    """A GPU pod on a brand-new node of a temporary clone of the GPU NodePool: every phase from the cluster's
    timestamps and the suite's watches, budgets from the profile, then the node must go away again."""
    itype, source = launch_pool.instance_type, _require_pool(launch_pool)
    inst = gpu_profile.for_instance(itype)
    gpus = _gpus(gpu_profile, itype, 1)
    budget = Budget(dict(inst.provisioning_budget_s) if inst else {}, f"profile {itype} provisioning_budget_s",
                    inst.sources.get("provisioning_budget_s", "") if inst else "")
    run_id, namespace = gpucluster_session.run_id, gpucluster_session.namespace
    body, pool_id = nodepool.probe_nodepool(source, itype, gpus, run_id)
    pool = body["metadata"]["name"]
    fleet = f"karpenter-{pool_id}"
    name = pod_name("karpenter-latency", fleet, run_id)
    total = budget.limit("total") or 900.0
    tolerations = [toleration_for(t) for t in judge.pool_gpu_taints(source, itype, gpu_profile)]
    # What a pod of the workload requests: all the GPUs and EFA where the profile requires it and a plugin serves it.
    labels = {**launch_pool.node_labels, **((body["spec"]["template"].get("metadata") or {}).get("labels") or {}),
              NODEPOOL_LABEL: pool}
    efa = efa_request(itype, inst.efa if inst is not None else 0, bool(inst is not None and inst.efa_required), pool,
                      labels, list(judge.template_spec(body).get("taints") or []), device_plugins)
    spec = ProbeSpec("karpenter-latency", ["sh", "-c", "nvidia-smi -L; exec sleep 3600"], gpus=gpus, efa=efa.count,
                     node_selector={PROBE_POOL_LABEL: pool_id}, timeout_s=total * OBSERVE_FACTOR,
                     tolerations=tolerations)
    evidence.fact("probe requests", {GPU_RESOURCE: gpus, EFA_RESOURCE: efa.count})
    evidence.fact(f"{EFA_RESOURCE} requested", efa.why)
    manifest = render(spec, gpucluster_session.probe_context(), name=name, fleet=fleet)

    def remove() -> None:   # on any exit, interrupt included; teardown also deletes NodePools by run label
        if not gpucluster_session.options.keep:
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
    watch, stamps, now = seen.watch, seen.cluster_times(), time.time()
    provider = ((seen.claim() or {}).get("status") or {}).get("providerID")
    ec2_time, ec2_note = ec2_launch_time(gpucluster_session, provider) if provider else (None, "no instance")
    evidence.fact("EC2 launch time", ec2_note)
    evidence.attach(f"provisioning timeline of a new {itype} (NodePool {pool})",
                    timeline_table(watch, stamps, budget, ec2_time), kind="text")
    for clock, times in (("watch", watch), ("cluster", stamps)):
        for phase, seconds in judge.phase_seconds(times).items():
            evidence.measure(f"{phase} ({clock})", round(seconds, 3), "s",
                             source="suite's watch events (sub-second)" if clock == "watch"
                             else "object timestamps (whole seconds)")
    bars = [(label, watch[a] - watch["pod created"], max(watch[a], watch[b]) - watch["pod created"])
            for label, a, b in PHASES if a in watch and b in watch]
    if bars:
        evidence.plot(f"Karpenter provisioning timeline ({itype})",
                      timeline_svg(bars, title=f"New {itype} from NodePool {launch_pool.name} (watch clock)",
                                   limit=budget.limit("total")), kind="timeline")
    started = time.monotonic()
    left = scale_down(cluster, namespace, name, pool, pool_id, total)
    evidence.measure("scale-down: NodePool deleted -> NodeClaim and node gone", round(time.monotonic() - started, 3),
                     "s", threshold=total, op="<=", source=f"{budget.source}.total (the profile has no "
                     f"separate scale-down budget; {budget.origin or 'source not stated'})")
    evidence.fact("scale-down leftovers", left or "none")
    enforce(judge.provisioning(itype, launch_pool.name, pool, watch, budget.values, budget.source, now, why, left,
                               total, budget.origin), evidence)
