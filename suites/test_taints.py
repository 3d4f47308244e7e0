"""Taints (marker taints): GPU nodes carry the expected taint, the scheduler enforces it, CPU nodes carry none."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pytest

from pytest_gpucluster.kube import watching
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.taints import tolerates
from pytest_gpucluster.kube.fleets import fleet_label
from pytest_gpucluster.kube.probes import FLEET_LABEL, RUN_LABEL, ProbeContext, ProbeSpec, pod_name, render
from pytest_gpucluster.profile import Profile

pytestmark = pytest.mark.taints

GPU = "nvidia.com/gpu"
DECISION_TIMEOUT_S = 60.0        # how long the scheduler gets to place or refuse a pod


def taint_text(taint: Mapping[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


def matches(expected: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """A node taint satisfies an expected one: same key, and same effect/value where the profile names them."""
    return (taint.get("key") == expected.get("key")
            and (not expected.get("effect") or taint.get("effect") == expected["effect"])
            and (expected.get("value") is None or (taint.get("value") or "") == str(expected["value"])))


def blocking(node: NodeInfo) -> list[dict[str, Any]]:
    return [t for t in node.taints if t.get("effect") in ("NoSchedule", "NoExecute")]


# -- placement decisions: create pods, watch until the scheduler placed or refused each ------------------
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


def _refused(pod: dict[str, Any]) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "Unschedulable")
    return None


def place(cluster: Cluster, ctx: ProbeContext, key: str, specs: Mapping[str, ProbeSpec]) -> dict[str, Decision]:
    """Create one pod per spec (command `true`), wait (one watch) until each is bound or refused, delete them.

    Unlike a probe fleet this does not wait for pods to finish: it judges the scheduler's decision only."""
    if not specs:
        return {}
    fleet = fleet_label(key, ctx.run_id)
    names = {node: pod_name(spec.name, f"{key}/{node}", ctx.run_id) for node, spec in specs.items()}
    for node, spec in specs.items():
        cluster.create("pods", render(spec, ctx, name=names[node], fleet=fleet), ctx.namespace)
    wanted = set(names.values())

    def all_decided(objs: dict[str, dict]) -> bool:
        pods = [objs[n] for n in wanted if n in objs]
        return len(pods) == len(wanted) and all(p.get("spec", {}).get("nodeName") or _refused(p) for p in pods)

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
        message = _refused(pod) or (failed[-1] if failed else None)
        bound = pod.get("spec", {}).get("nodeName")
        out[node] = Decision(pod=pod, node=bound, message=message, decided=bool(bound or message))
        if not ctx.keep:
            cluster.delete("pods", name, ctx.namespace, grace_seconds=0)
    return out


def pinned(node: NodeInfo, name: str, **kwargs: Any) -> ProbeSpec:
    return ProbeSpec(name=name, command=["true"], node=node.name, timeout_s=DECISION_TIMEOUT_S, **kwargs)


@pytest.fixture(scope="module")
def untolerated(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext) -> dict[str, Decision]:
    """Per GPU node: a pod without any toleration, pinned to the node by hostname."""
    return place(cluster, probe_context, "taints/untolerated",
                 {n.name: pinned(n, "no-toleration", tolerate_gpu=False) for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def tolerated(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext) -> dict[str, Decision]:
    """Per GPU node: a pod tolerating the profile's GPU taints, requesting no GPU, pinned to the node."""
    return place(cluster, probe_context, "taints/tolerated",
                 {n.name: pinned(n, "tolerated") for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def gpu_request_without_toleration(inventory: Inventory, cluster: Cluster,
                                   probe_context: ProbeContext) -> dict[str, Decision]:
    """Per GPU node: a pod requesting 1 GPU with no toleration of its own (ExtendedResourceToleration may add one)."""
    return place(cluster, probe_context, "taints/ert",
                 {n.name: pinned(n, "gpu-no-toleration", gpus=1, tolerate_gpu=False) for n in inventory.gpu_nodes})


@pytest.fixture(scope="module")
def gpu_request_on_cpu(inventory: Inventory, cluster: Cluster, probe_context: ProbeContext) -> dict[str, Decision]:
    """Per CPU-only node: a pod requesting 1 GPU (tolerating the GPU taints), pinned to the node."""
    return place(cluster, probe_context, "taints/gpu-on-cpu",
                 {n.name: pinned(n, "gpu-on-cpu", gpus=1) for n in inventory.cpu_nodes})


# -- checks --------------------------------------------------------------------------------------------
def test_gpu_node_carries_gpu_taint(gpu_node: NodeInfo, gpu_profile: Profile, evidence: Any) -> None:
    """The node carries one of the GPU taints the profile expects (default nvidia.com/gpu:NoSchedule)."""
    expected = gpu_profile.expected_taints(gpu_node.instance_type)
    evidence.fact("taints", [taint_text(t) for t in gpu_node.taints] or "none")
    evidence.fact("expected (any of)", [taint_text(t) for t in expected])
    found = [t for t in gpu_node.taints if any(matches(e, t) for e in expected)]
    assert found, (
        f"Missing GPU taint on {gpu_node.id}: expected one of {', '.join(taint_text(t) for t in expected)} "
        f"(profile {gpu_profile.path}), observed {', '.join(taint_text(t) for t in gpu_node.taints) or 'no taints'}. "
        "Without it any pod can land on this GPU node and hold its CPU/memory. Add the taint to the NodePool "
        "(spec.template.spec.taints) or node group; if your cluster uses another key, set cluster.gpu_taints "
        "in the profile.")


def test_pod_without_toleration_stays_pending(gpu_node: NodeInfo, untolerated: dict[str, Decision],
                                              evidence: Any) -> None:
    """A pod with no toleration, pinned to the GPU node, is refused with a FailedScheduling naming the taint."""
    decision = untolerated[gpu_node.name]
    evidence.fact("scheduler", decision.message or f"bound to {decision.node}")
    assert decision.node is None, (
        f"Taint not enforced on {gpu_node.id}: a pod without tolerations pinned to the node should stay Pending; "
        f"observed it bound to {decision.node} (node taints: "
        f"{', '.join(taint_text(t) for t in gpu_node.taints) or 'none'}). Add the GPU taint to the node "
        "(see test_gpu_node_carries_gpu_taint).")
    assert decision.message, (
        f"No scheduling decision for the untolerated pod on {gpu_node.id} within {DECISION_TIMEOUT_S:.0f}s: "
        "expected a FailedScheduling event; check the scheduler (`kubectl get events -A --field-selector "
        "reason=FailedScheduling`).")
    named = [taint_text(t) for t in blocking(gpu_node) if f"{{{t.get('key')}:" in decision.message
             or f"{{{t.get('key')}: " in decision.message or str(t.get("key")) in decision.message]
    assert named, (
        f"Pod refused on {gpu_node.id} for another reason than its taint: expected the FailedScheduling message to "
        f"name an untolerated taint ({', '.join(taint_text(t) for t in blocking(gpu_node)) or 'none on the node'}); "
        f"observed {decision.message!r}.")


def test_pod_with_toleration_is_admitted(gpu_node: NodeInfo, tolerated: dict[str, Decision], evidence: Any) -> None:
    """A pod tolerating the GPU taint(s), requesting no GPU, pinned to the node, is placed there."""
    decision = tolerated[gpu_node.name]
    evidence.fact("scheduler", decision.message or f"bound to {decision.node}")
    assert decision.node == gpu_node.name, (
        f"A pod tolerating the GPU taint was not admitted on {gpu_node.id}: expected it bound there; observed "
        f"{decision.message or decision.node or 'no decision'}. If the reason names a taint, the node carries a "
        f"taint the profile does not list (node taints: {', '.join(taint_text(t) for t in gpu_node.taints) or 'none'}"
        "): add it to cluster.gpu_taints in the profile.")


def test_gpu_request_toleration_behaviour(gpu_node: NodeInfo, gpu_request_without_toleration: dict[str, Decision],
                                          evidence: Any) -> None:
    """A GPU-requesting pod without tolerations: with EKS's ExtendedResourceToleration it gets the
    `nvidia.com/gpu` toleration and runs; without it, it is refused by the taint. Report which; never both."""
    decision = gpu_request_without_toleration[gpu_node.name]
    added = [t for t in decision.tolerations if t.get("key") == GPU]
    behaviour = ("ExtendedResourceToleration active: the API server added toleration "
                 + ", ".join(f"{t.get('key')} {t.get('operator', 'Equal')}" for t in added)) if added \
        else "ExtendedResourceToleration not active: GPU pods must carry their own tolerations"
    evidence.fact("behaviour", behaviour)
    evidence.fact("scheduler", decision.message or f"bound to {decision.node}")
    if decision.node is not None:
        ignored = [taint_text(t) for t in blocking(gpu_node) if not tolerates(decision.tolerations, t)]
        assert not ignored, (
            f"Scheduler ignored taints on {gpu_node.id}: the pod was bound although it tolerates none of "
            f"{', '.join(ignored)} (its tolerations: {decision.tolerations}). Check for a custom scheduler "
            "or a mutating webhook rewriting tolerations.")
        return
    assert decision.message, (
        f"No scheduling decision for a 1-GPU pod on {gpu_node.id} within {DECISION_TIMEOUT_S:.0f}s; check the "
        "scheduler's events.")
    if f"Insufficient {GPU}" in decision.message and "taint" not in decision.message:
        pytest.skip(f"cannot judge ExtendedResourceToleration on {gpu_node.id}: the node has no free {GPU} "
                    f"({decision.message!r}); judged by test_device_plugins.py")
    untolerated = [t for t in blocking(gpu_node) if not tolerates(decision.tolerations, t)]
    assert untolerated and any(str(t.get("key")) in decision.message for t in untolerated), (
        f"A 1-GPU pod was refused on {gpu_node.id} for another reason than a taint: expected either admission "
        f"({'ERT added a toleration' if added else 'with ERT'}) or a FailedScheduling naming an untolerated taint; "
        f"observed {decision.message!r}. 'Insufficient {GPU}': the device plugin advertises no free GPU "
        "(see test_device_plugins.py).")
    evidence.fact("note", f"GPU pods need a toleration for {', '.join(taint_text(t) for t in untolerated)}"
                  + (" (ERT only tolerates nvidia.com/gpu)" if added else ""))


def test_gpu_pod_not_placed_on_cpu_node(cpu_node: NodeInfo, gpu_request_on_cpu: dict[str, Decision],
                                        evidence: Any) -> None:
    """A pod requesting a GPU never lands on a CPU-only node (refused for Insufficient nvidia.com/gpu)."""
    decision = gpu_request_on_cpu[cpu_node.name]
    evidence.fact("scheduler", decision.message or f"bound to {decision.node}")
    assert decision.node is None, (
        f"A pod requesting 1 {GPU} was placed on CPU-only node {cpu_node.id}: expected it to stay Pending; the "
        f"node advertises {GPU}={cpu_node.allocatable.get(GPU, '0')}. A device plugin on a CPU node advertising "
        "GPUs, or a fake extended resource patched onto the node, would cause this.")
    assert decision.message and GPU in decision.message, (
        f"Pod requesting a GPU on {cpu_node.id} was refused for an unexpected reason: expected 'Insufficient "
        f"{GPU}', observed {decision.message!r}.")


def test_cpu_node_has_no_gpu_taint(cpu_node: NodeInfo, gpu_profile: Profile, evidence: Any) -> None:
    """CPU-only nodes carry none of the GPU taints (system pods must be able to run there)."""
    gpu_keys = {t["key"] for t in gpu_profile.gpu_tolerations()}
    wrong = [taint_text(t) for t in cpu_node.taints if t.get("key") in gpu_keys]
    evidence.fact("taints", [taint_text(t) for t in cpu_node.taints] or "none")
    assert not wrong, (
        f"GPU taint on CPU-only node {cpu_node.id}: expected none of {sorted(gpu_keys)}, observed "
        f"{', '.join(wrong)}. CPU workloads and system pods cannot land here; remove the taint from the CPU "
        "NodePool/node group (it was probably copied from the GPU one).")
