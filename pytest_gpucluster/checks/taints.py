"""Judges for GPU taints: which taints count as "the GPU taint" for a node, and what the scheduler did with
pods that do or do not tolerate it (pure: node facts, scheduler decisions and the profile in, a Verdict out)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_gpucluster.checks.verdict import Verdict
from pytest_gpucluster.kube.objects import AUTO_MODE_LABEL, GPU_RESOURCE
from pytest_gpucluster.kube.placement import BLOCKING_EFFECTS
from pytest_gpucluster.kube.taints import refused_for_a_taint, taint_text, tolerates, untolerated_taint_keys

if TYPE_CHECKING:   # the profile module imports pytest (usage errors); a judge only needs the type
    from pytest_gpucluster.profile import Profile

Taint = Mapping[str, Any]

_FIX_PROFILE = ("Add the taint to the NodePool (spec.template.spec.taints) or node group; if your cluster uses "
                "another key, set cluster.gpu_taints in the profile.")


def texts(taints: Iterable[Taint]) -> str:
    return ", ".join(taint_text(t) for t in taints)


def blocking(taints: Iterable[Taint]) -> list[Taint]:
    return [t for t in taints if t.get("effect") in BLOCKING_EFFECTS]


def accepts(expected: Taint, taint: Taint) -> bool:
    """A node taint is the expected one: same key, and the effect / value where the expectation names them
    (the expectation read as a toleration, matched by Kubernetes' rules)."""
    tol: dict[str, Any] = {"key": expected.get("key"), "operator": "Exists"}
    if expected.get("value") not in (None, ""):
        tol.update(operator="Equal", value=str(expected["value"]))
    if expected.get("effect"):
        tol["effect"] = expected["effect"]
    return tolerates([tol], taint)


def flavour_of(labels: Mapping[str, str]) -> str:
    key, value = AUTO_MODE_LABEL
    return "auto-mode" if labels.get(key) == value else "standard"


def accepted_gpu_taints(profile: Profile, instance_type: str, flavour: str,
                        nodepool_taints: Sequence[Taint] | None) -> list[Taint]:
    """The taints accepted as "the GPU taint" on a node: the instance's own `taint`, else the flavour's list
    (standard: cluster.gpu_taints); on a flavour with `gpu_taint_from_nodepool` (EKS Auto Mode, where there
    is no key convention) also the blocking taints the node's NodePool declares."""
    accepted: list[Taint] = list(profile.expected_taints(instance_type, flavour))
    if profile.gpu_taint_from_nodepool(flavour):
        accepted += [t for t in blocking(nodepool_taints or []) if t not in accepted]
    return accepted


def gpu_taint(subject: str, taints: Sequence[Taint], accepted: Sequence[Taint], source: str) -> Verdict:
    facts = {"taints": [taint_text(t) for t in taints] or "none",
             "expected (any of)": [taint_text(t) for t in accepted]}
    if any(accepts(e, t) for t in taints for e in accepted):
        return Verdict.passed(subject, f"one of {texts(accepted)}", texts(taints), facts=facts)
    return Verdict.failed(
        subject, f"one of {texts(accepted) or 'no GPU taint configured'} ({source})",
        f"{texts(taints) or 'no taints'}. Without it any pod can land on this GPU node and hold its CPU/memory",
        _FIX_PROFILE, summary="Missing GPU taint", facts=facts)


def refused_by_taint(message: str, taints: Sequence[Taint]) -> tuple[bool, list[str]]:
    """(refused for an untolerated taint of the node, the node's blocking taints the message names). Only the
    scheduler's untolerated-taint wording counts (kube/taints.py, one definition with the fail-fast), never the key
    anywhere else (`Insufficient nvidia.com/gpu`); a message in the key-less form counts when it names no taint."""
    keys = untolerated_taint_keys(message)
    named = [taint_text(t) for t in blocking(taints) if t.get("key") in keys]
    unnamed = not keys and refused_for_a_taint(message)
    return bool(named) or unnamed, named


def untolerated_pending(subject: str, taints: Sequence[Taint], bound_to: str | None, message: str | None,
                        timeout_s: float) -> Verdict:
    facts = {"scheduler": message or f"bound to {bound_to}"}
    if bound_to is not None:
        return Verdict.failed(subject, "a pod without tolerations pinned to the node to stay Pending",
                              f"it bound to {bound_to} (node taints: {texts(taints) or 'none'})",
                              "Add the GPU taint to the node (see test_gpu_node_carries_gpu_taint).",
                              summary="Taint not enforced", facts=facts)
    if not message:
        return Verdict.failed(subject, f"a FailedScheduling event within {timeout_s:.0f}s", "no scheduling decision",
                              "Check the scheduler (`kubectl get events -A --field-selector reason=FailedScheduling`).",
                              summary="No scheduling decision for the untolerated pod", facts=facts)
    by_taint, named = refused_by_taint(message, taints)
    if by_taint:
        return Verdict.passed(subject, "refused for an untolerated taint",
                              ", ".join(named) or "untolerated taint (the scheduler does not name it)", facts=facts)
    return Verdict.failed(subject, f"the FailedScheduling message to name an untolerated taint "
                          f"({texts(blocking(taints)) or 'none on the node'})", repr(message),
                          summary="Pod refused for another reason than its taint", facts=facts)


def tolerated_admitted(subject: str, node: str, taints: Sequence[Taint], bound_to: str | None,
                       message: str | None) -> Verdict:
    facts = {"scheduler": message or f"bound to {bound_to}"}
    if bound_to == node:
        return Verdict.passed(subject, "bound to the node", f"bound to {node}", facts=facts)
    return Verdict.failed(
        subject, "a pod tolerating the GPU taint bound there", message or bound_to or "no decision",
        f"If the reason names a taint, the node carries a taint the profile does not list (node taints: "
        f"{texts(taints) or 'none'}): add it to cluster.gpu_taints in the profile.",
        summary="A pod tolerating the GPU taint was not admitted", facts=facts)


def gpu_request_behaviour(subject: str, taints: Sequence[Taint], tolerations: Sequence[Mapping[str, Any]],
                          bound_to: str | None, message: str | None, timeout_s: float) -> Verdict:
    """A 1-GPU pod without tolerations of its own: admitted (ExtendedResourceToleration added one) or refused
    by an untolerated taint; never bound while a taint it does not tolerate stays, never refused for else."""
    added = [t for t in tolerations if t.get("key") == GPU_RESOURCE]
    behaviour = ("ExtendedResourceToleration active: the API server added toleration "
                 + ", ".join(f"{t.get('key')} {t.get('operator', 'Equal')}" for t in added)) if added \
        else "ExtendedResourceToleration not active: GPU pods must carry their own tolerations"
    facts: dict[str, Any] = {"behaviour": behaviour, "scheduler": message or f"bound to {bound_to}"}
    untolerated = [t for t in blocking(taints) if not tolerates(tolerations, t)]
    if bound_to is not None:
        if untolerated:
            return Verdict.failed(subject, "a pod bound only where it tolerates every taint",
                                  f"bound although it tolerates none of {texts(untolerated)} (its tolerations: "
                                  f"{list(tolerations)})", "Check for a custom scheduler or a mutating webhook "
                                  "rewriting tolerations.", summary="Scheduler ignored taints", facts=facts)
        return Verdict.passed(subject, "admitted or refused by a taint", f"bound to {bound_to}", facts=facts)
    if not message:
        return Verdict.failed(subject, f"a scheduling decision within {timeout_s:.0f}s", "none",
                              "Check the scheduler's events.", summary="No scheduling decision for a 1-GPU pod",
                              facts=facts)
    by_taint, _ = refused_by_taint(message, untolerated)
    if f"Insufficient {GPU_RESOURCE}" in message and not by_taint:
        return Verdict.not_shown(subject, f"the node has no free {GPU_RESOURCE} ({message!r})",
                                 "judged by test_device_plugins.py", facts=facts)
    if untolerated and by_taint:
        note = f"GPU pods need a toleration for {texts(untolerated)}" + (" (ERT only tolerates nvidia.com/gpu)"
                                                                         if added else "")
        return Verdict.passed(subject, "refused by an untolerated taint", message, facts={**facts, "note": note})
    return Verdict.failed(
        subject, f"either admission ({'ERT added a toleration' if added else 'with ERT'}) or a FailedScheduling "
        "naming an untolerated taint", repr(message), f"'Insufficient {GPU_RESOURCE}': the device plugin advertises no "
        "free GPU (see test_device_plugins.py).", summary="A 1-GPU pod was refused for another reason than a taint",
        facts=facts)


def gpu_pod_on_cpu(subject: str, advertised: str, bound_to: str | None, message: str | None) -> Verdict:
    facts = {"scheduler": message or f"bound to {bound_to}"}
    if bound_to is not None:
        return Verdict.failed(subject, "a pod requesting 1 GPU to stay Pending on a CPU-only node",
                              f"it was placed there; the node advertises {GPU_RESOURCE}={advertised}",
                              "A device plugin on a CPU node advertising GPUs, or a fake extended resource patched "
                              "onto the node, would cause this.", summary="GPU pod placed on a CPU-only node",
                              facts=facts)
    if not message or GPU_RESOURCE not in message:
        return Verdict.failed(subject, f"'Insufficient {GPU_RESOURCE}'", repr(message),
                              summary="Pod requesting a GPU refused for an unexpected reason", facts=facts)
    return Verdict.passed(subject, f"'Insufficient {GPU_RESOURCE}'", message, facts=facts)


def cpu_node_untainted(subject: str, taints: Sequence[Taint], gpu_keys: Iterable[str]) -> Verdict:
    keys = sorted(set(gpu_keys))
    wrong = [taint_text(t) for t in taints if t.get("key") in keys]
    return Verdict.from_problems(
        subject, f"none of {keys}", wrong, "CPU workloads and system pods cannot land here; remove the taint from "
        "the CPU NodePool/node group (it was probably copied from the GPU one).", observed_ok="no GPU taint",
        summary="GPU taint on CPU-only node", facts={"taints": [taint_text(t) for t in taints] or "none"})
