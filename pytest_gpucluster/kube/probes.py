"""Probe pods: ProbeSpec/ProbeResult, rendering fixtures/probe-pod.yaml, reading a finished pod into a result."""
from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..packaged import MANIFESTS_PACKAGE, package_folder
from .objects import HUGEPAGES_2MI, condition, phase, timestamp
# Re-exported: kube/fleets.py and kube/mpijob.py read these here.
from .objects import EFA_RESOURCE as EFA_RESOURCE
from .objects import GPU_RESOURCE as GPU_RESOURCE
from .objects import HOSTNAME_LABEL as HOSTNAME_LABEL
from .objects import container_state as container_state
from .objects import pending_reason as pending_reason

MANAGED_BY = ("app.kubernetes.io/managed-by", "pytest-gpucluster")
RUN_LABEL = "gpucluster.io/run"
FLEET_LABEL = "gpucluster.io/fleet"
PROBE_LABEL = "gpucluster.io/probe"
IMAGE_PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                               "RegistryUnavailable"})
CONTAINER_CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"   # NVIDIA/nvidia-container-toolkit internal/config/image/cuda_image.go
DEADLINE_SLACK_S = 30   # pod-side activeDeadlineSeconds = client timeout + slack: we report first, the pod still expires


@dataclass
class ProbeSpec:
    """What to run where. Field meanings: docs/design.md (ProbeSpec)."""

    name: str
    command: list[str]
    node: str | None = None
    image: str | None = None
    gpus: int = 0
    efa: int = 0
    hugepages_2mi: str | None = None
    memory: str | None = None
    ipc_lock: bool = False
    tolerate_gpu: bool = True
    tolerations: list[dict[str, Any]] | None = None
    node_selector: dict[str, str] | None = None
    env: dict[str, str] | None = None
    timeout_s: float | None = None
    pin: str = "affinity"          # "affinity" (scheduler + taints apply) or "nodeName" (fallback, bypasses both)
    labels: dict[str, str] | None = None
    privileged: bool = False                  # host-level readers only (node health: the kernel log)
    host_paths: dict[str, str] | None = None  # container path -> node path, mounted read-only (hostPath)
    # Most probes need the driver, not a CUDA runtime (nvidia-smi, isolation, kernel log, Karpenter): they run with
    # NVIDIA_DISABLE_REQUIRE=true, so the NVIDIA runtime does not refuse a CUDA image whose NVIDIA_REQUIRE_CUDA the
    # node's driver cannot meet (CUDA 13 images on the 560 drivers of 2024-2025 EKS AMIs); DCGM's image does the same.
    # A probe that runs CUDA sets needs_cuda=True and gets the runtime's refusal as its evidence.
    needs_cuda: bool = False


@dataclass
class ProbeResult:
    """What a probe pod did. `ok` = Succeeded with exit code 0."""

    pod: str
    node: str | None
    phase: str
    exit_code: int | None
    reason: str | None
    logs: str
    events: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    pending_reason: str | None = None
    message: str | None = None
    image: str | None = None
    namespace: str | None = None

    @property
    def ok(self) -> bool:
        return self.phase == "Succeeded" and self.exit_code == 0

    def describe(self) -> str:
        """One line for assertion messages: what happened and where to look."""
        where = f"on {self.node}" if self.node else "(not scheduled)"
        extra = self.pending_reason or self.message or ""
        return (f"probe pod {self.namespace}/{self.pod} {where}: phase {self.phase}, exit code {self.exit_code}, "
                f"reason {self.reason or '-'}{': ' + extra if extra else ''}")


@dataclass
class ProbeContext:
    """Per-run defaults the plugin fills in: where probes go and how they are labelled."""

    namespace: str
    run_id: str
    cuda_image: str
    timeout_s: float
    gpu_tolerations: list[dict[str, Any]] = field(default_factory=list)
    keep: bool = False
    # A pinned probe the scheduler refuses for a reason nothing in flight will change ends after this long
    # (profile probes.unschedulable_grace_s; kube/schedulability.py).
    unschedulable_grace_s: float = 45.0

    def run_selector(self) -> str:
        return f"{MANAGED_BY[0]}={MANAGED_BY[1]},{RUN_LABEL}={self.run_id}"


@lru_cache(maxsize=4)
def _load_template(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or data.get("kind") != "Pod":
        raise ValueError(f"{path}: expected a Pod manifest")
    return data


def manifests_dir() -> Path:
    """The manifests shipped as the package `pytest_gpucluster.manifests` (fixtures/ in a checkout)."""
    return package_folder(MANIFESTS_PACKAGE)


def pod_name(purpose: str, key: str, run_id: str) -> str:
    """Deterministic DNS-1123 name (so a retried create is idempotent): gc-<purpose>-<hash of key+run>."""
    slug = re.sub(r"[^a-z0-9-]+", "-", purpose.lower()).strip("-")[:30] or "probe"
    digest = hashlib.sha256(f"{run_id}/{key}".encode()).hexdigest()[:10]
    return f"gc-{slug}-{digest}"


def label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "x"


def render(spec: ProbeSpec, ctx: ProbeContext, *, name: str, fleet: str) -> dict[str, Any]:
    """Fill the probe-pod manifest for one probe. Values are set as data, never spliced into YAML text."""
    pod = copy.deepcopy(_load_template(str(manifests_dir() / "probe-pod.yaml")))
    meta = pod["metadata"]
    meta["name"], meta["namespace"] = name, ctx.namespace
    labels = meta.setdefault("labels", {})
    labels.update({MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: ctx.run_id, PROBE_LABEL: label_value(spec.name),
                   FLEET_LABEL: label_value(fleet)})
    labels.update(spec.labels or {})
    timeout = spec.timeout_s or ctx.timeout_s
    podspec = pod["spec"]
    podspec["activeDeadlineSeconds"] = int(math.ceil(timeout)) + DEADLINE_SLACK_S
    if spec.node and spec.pin == "nodeName":
        podspec["nodeName"] = spec.node
        podspec.pop("affinity", None)
    elif spec.node:
        podspec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [spec.node]}]}]}}}
    else:
        podspec.pop("affinity", None)
    if spec.node_selector:
        podspec["nodeSelector"] = dict(spec.node_selector)
    tolerations: list[dict[str, Any]] = list(ctx.gpu_tolerations) if spec.tolerate_gpu else []
    tolerations += list(spec.tolerations or [])
    podspec["tolerations"] = tolerations
    container = podspec["containers"][0]
    container["image"] = spec.image or ctx.cuda_image
    container["command"] = [str(c) for c in spec.command]
    env = dict(spec.env or {})
    if not spec.needs_cuda:
        env.setdefault(DISABLE_REQUIRE, "true")
    container["env"] = [{"name": str(k), "value": str(v)} for k, v in env.items()]
    resources = container.setdefault("resources", {})
    requests, limits = resources.setdefault("requests", {}), resources.setdefault("limits", {})
    extended: dict[str, Any] = {}
    if spec.gpus:
        extended[GPU_RESOURCE] = str(spec.gpus)
    if spec.efa:
        extended[EFA_RESOURCE] = str(spec.efa)
    if spec.hugepages_2mi:
        extended[HUGEPAGES_2MI] = spec.hugepages_2mi
    if spec.memory:
        requests["memory"] = limits["memory"] = spec.memory
    requests.update(extended)
    limits.update(extended)
    caps = container.setdefault("securityContext", {}).setdefault("capabilities", {})
    caps["add"] = ["IPC_LOCK"] if spec.ipc_lock else []
    if spec.privileged:
        container["securityContext"] = {"privileged": True}
    for i, (mount, host) in enumerate(sorted((spec.host_paths or {}).items())):
        podspec.setdefault("volumes", []).append({"name": f"host-{i}", "hostPath": {"path": host}})
        container.setdefault("volumeMounts", []).append({"name": f"host-{i}", "mountPath": mount, "readOnly": True})
    return pod


def classify(pod: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    """(terminal, reason, message). Terminal = Succeeded/Failed, or an image/config error that will not heal."""
    status = pod.get("status") or {}
    if phase(pod) in ("Succeeded", "Failed"):
        term = container_state(pod).get("terminated") or {}
        return True, term.get("reason") or status.get("reason"), term.get("message") or status.get("message")
    waiting = container_state(pod).get("waiting") or {}
    if waiting.get("reason") in IMAGE_PULL_ERRORS:
        image = pod["spec"]["containers"][0].get("image")
        return True, waiting["reason"], f"cannot pull image {image}: {waiting.get('message', '')}".strip()
    if waiting.get("reason") in CONTAINER_CONFIG_ERRORS:
        return True, waiting["reason"], waiting.get("message")
    return False, None, None


def timings(pod: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, float]:
    status = pod.get("status") or {}
    state = container_state(pod)
    started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
    finished = (state.get("terminated") or {}).get("finishedAt")
    sched = condition(pod, "PodScheduled")
    out: dict[str, float | None] = {
        "created": timestamp(pod.get("metadata", {}).get("creationTimestamp")),
        "scheduled": timestamp(sched.get("lastTransitionTime")) if sched and sched.get("status") == "True" else None,
        "started": timestamp(started) or timestamp(status.get("startTime")),
        "finished": timestamp(finished),
    }
    return {k: v for k, v in out.items() if v is not None}


def result_from_pod(pod: dict[str, Any], logs: str, events: list[dict[str, Any]], *, timed_out: bool) -> ProbeResult:
    terminal, reason, message = classify(pod)
    term = container_state(pod).get("terminated") or {}
    pend = pending_reason(pod)
    if pend is None and not pod.get("spec", {}).get("nodeName"):
        failed = [e for e in events if e.get("reason") == "FailedScheduling"]
        pend = failed[-1].get("message") if failed else None
    if timed_out and not terminal:
        reason = "Unschedulable" if pend else "DeadlineExceeded"
        message = message or "probe did not finish before its deadline"
    return ProbeResult(
        pod=pod["metadata"]["name"], node=pod.get("spec", {}).get("nodeName"),
        phase=phase(pod), exit_code=term.get("exitCode"), reason=reason, logs=logs,
        events=events, timings=timings(pod, events), pending_reason=pend, message=message,
        image=pod["spec"]["containers"][0].get("image"), namespace=pod["metadata"].get("namespace"))
