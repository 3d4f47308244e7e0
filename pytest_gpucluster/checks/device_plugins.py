"""Judges of the device plugins: NVIDIA plugin on the node, GPU allocatable (MIG, time-slicing), GFD labels,
GPU Operator state, EFA plugin. Pure: node and pod facts gathered by the suite in, a Verdict out."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..kube.objects import EFA_RESOURCE, GPU_RESOURCE
from ..parsers import product_matches
from .verdict import Criterion, Verdict

if TYPE_CHECKING:   # the profile module imports pytest; a judge only needs the type
    from ..profile import InstanceProfile

RESTART_WINDOW_MIN = 10   # kube/plugins.py RESTART_WINDOW_S: a plugin restarted within it is not healthy
# GFD driver version labels: old (<= v0.14) and new naming; both must agree when both are present.
DRIVER_LABELS_OLD = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev")
DRIVER_LABELS_NEW = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver-version.minor",
                     "nvidia.com/cuda.driver-version.revision")
DRIVER_LABEL_FULL = "nvidia.com/cuda.driver-version.full"
GFD_PREFIXES = ("nvidia.com/gpu.", "nvidia.com/cuda.", "nvidia.com/mig.")
NVIDIA_INSTALL = ("helm upgrade -i nvdp nvdp/nvidia-device-plugin -n nvidia-device-plugin --create-namespace")
EFA_INSTALL = ("helm install efa eks/aws-efa-k8s-device-plugin -n kube-system --set tolerations[0].key=nvidia.com/gpu,"
               "tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule")


# -- facts the suite gathers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeFacts:
    """A node as it is now: countable resources already parsed (kube/quantity.py)."""

    id: str                                   # `name/instance-type`
    name: str
    instance_type: str
    labels: Mapping[str, str] = field(default_factory=dict)
    allocatable: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PodFacts:
    """One pod as kube/plugins.py judged it (`healthy` = plugin_healthy, `state` = pod_state)."""

    name: str
    phase: str = "Pending"
    ready: bool = False
    healthy: bool = False
    state: str = "Pending (not ready)"


@dataclass(frozen=True)
class PluginOnNode:
    """A device-plugin DaemonSet seen from one node: its tolerations, the node's blocking taints it does not
    tolerate (kube/taints.py `taint_text`), and its pods on the node."""

    ref: str                                  # namespace/name
    install: str = "static manifest"
    rollout: str = ""
    toleration_keys: Sequence[str] = ()
    untolerated: Sequence[str] = ()
    pods: Sequence[PodFacts] = ()

    @property
    def namespace(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def healthy(self) -> bool:
        return any(p.healthy for p in self.pods)

    def pod_states(self) -> str:
        return "; ".join(f"{p.name} {p.state}" for p in self.pods) or "no pod on this node"


# -- MIG and time-slicing ------------------------------------------------------------------------------
@dataclass
class GpuSharing:
    """MIG / time-slicing as the node's labels and resources show them."""

    mig_strategy: str | None = None         # single | mixed (when MIG devices are advertised)
    mig_resources: dict[str, int] = field(default_factory=dict)
    replicas: int = 1                        # time-slicing / MPS replicas per GPU
    strategy: str = "none"

    def describe(self) -> str:
        parts = []
        if self.mig_strategy:
            parts.append(f"MIG strategy {self.mig_strategy}"
                         + (f" ({', '.join(f'{k}={v}' for k, v in self.mig_resources.items())})"
                            if self.mig_resources else ""))
        if self.replicas > 1:
            parts.append(f"GPU sharing {self.strategy} with {self.replicas} replicas per GPU")
        return "; ".join(parts) or "whole GPUs (no MIG, no sharing)"


def gpu_sharing(labels: Mapping[str, str], allocatable: Mapping[str, int]) -> GpuSharing:
    out = GpuSharing()
    out.mig_resources = {k: v for k, v in allocatable.items() if k.startswith("nvidia.com/mig-") and v > 0}
    product = labels.get("nvidia.com/gpu.product", "")
    if out.mig_resources:
        out.mig_strategy = "mixed"
    elif "-MIG-" in product:
        out.mig_strategy = labels.get("nvidia.com/mig.strategy", "single")
    try:
        out.replicas = max(1, int(labels.get("nvidia.com/gpu.replicas", "1")))
    except ValueError:
        out.replicas = 1
    out.strategy = labels.get("nvidia.com/gpu.sharing-strategy", "none")
    return out


def mig_slices(profile: str) -> int:
    """MIG devices per GPU for a single-strategy profile on A100/H100 (`1g.10gb` -> 7, `2g.20gb` -> 3, `3g.40gb` -> 2)."""
    try:
        compute = int(profile.split("g.", 1)[0])
    except ValueError:
        return 1
    return {1: 7, 2: 3, 3: 2}.get(compute, 1)


# -- judges --------------------------------------------------------------------------------------------
def nvidia_plugin(node: NodeFacts, daemonsets: Sequence[PluginOnNode], host_plugins: str | None) -> Verdict:
    """A healthy NVIDIA device-plugin pod on the node; where the host runs the plugin (`host_plugins`:
    "EKS Auto Mode" / "Bottlerocket", no DaemonSet) at least one GPU allocatable."""
    gpus = node.allocatable.get(GPU_RESOURCE, 0)
    facts: dict[str, Any]
    if not daemonsets and host_plugins is None:
        return Verdict.failed(
            node.id, summary="No NVIDIA device plugin",
            expected="a DaemonSet (Helm chart nvdp/nvidia-device-plugin, the static nvidia-device-plugin.yml "
                     "in kube-system, or the GPU Operator)",
            observed=f"none in any namespace and the node is not EKS Auto Mode/Bottlerocket (allocatable "
                     f"{GPU_RESOURCE}={gpus})",
            fix=f"Install the device plugin: {NVIDIA_INSTALL}", facts={"nvidia device plugin": "no DaemonSet visible"})
    if host_plugins is not None:   # decided per node: its host runs the plugin, whatever DaemonSets others use
        on_node = [line for ds, line in zip(daemonsets, describe_plugins(daemonsets)) if ds.pods]
        facts = {"nvidia device plugin": f"on the host ({host_plugins})",
                 "judged by": f"{host_plugins}: plugin runs on the host without a DaemonSet; judged by allocatable",
                 **({"DaemonSet pods on the node too": on_node} if on_node else {})}
        crit = (Criterion(f"{GPU_RESOURCE} allocatable", gpus, "GPUs", 1, ">=",
                          f"{host_plugins} has no visible device plugin: at least one GPU must be allocatable"),)
        if gpus > 0:
            return Verdict.passed(node.id, f"{GPU_RESOURCE} allocatable > 0", str(gpus), criteria=crit, facts=facts)
        return Verdict.failed(
            node.id, summary=f"No GPUs advertised by the {host_plugins} node",
            expected=f"{GPU_RESOURCE} allocatable > 0 (the host's device plugin registers them)", observed=str(gpus),
            fix=f"Look at the node's conditions and `kubectl describe node {node.name}`; on Auto Mode check the "
                "NodePool allows GPU instance types; on Bottlerocket the settings.kubelet-device-plugins.nvidia.",
            criteria=crit, facts=facts)
    lines = describe_plugins(daemonsets)
    facts = {"nvidia device plugin": lines}
    expected = (f"a Running, Ready plugin pod on the node without restarts in the last {RESTART_WINDOW_MIN} min "
                "(a restart at the node's boot is history)")
    if any(ds.healthy for ds in daemonsets):
        return Verdict.passed(node.id, expected, " | ".join(lines), facts=facts)
    hint = ""
    if not any(ds.pods for ds in daemonsets):
        untolerated = [t for t in daemonsets[0].untolerated if all(t in ds.untolerated for ds in daemonsets)]
        hint = (f"; the DaemonSet does not tolerate the node's taint(s) {', '.join(untolerated)}" if untolerated
                else "; check the DaemonSet's nodeSelector/affinity against the node's labels")
    return Verdict.failed(
        node.id, summary="NVIDIA device plugin not ready", expected=expected, observed=" | ".join(lines) + hint,
        fix=f"Look at `kubectl -n {daemonsets[0].namespace} logs <pod>` (driver/NVML errors) and "
            f"`kubectl describe node {node.name}`.", facts=facts)


def describe_plugins(daemonsets: Sequence[PluginOnNode]) -> list[str]:
    """One line per DaemonSet: how it was installed, its rollout and its pods on the node."""
    return [f"{ds.ref} ({ds.install}; {ds.rollout}): {ds.pod_states()}" for ds in daemonsets]


def gpu_allocatable(node: NodeFacts, inst: InstanceProfile | None, profile_path: str | None) -> Verdict:
    """nvidia.com/gpu allocatable == profile GPUs x MIG slices x sharing replicas (mixed MIG: >= one device per GPU)."""
    if inst is None or not inst.gpus:
        return Verdict.not_shown(
            node.id, f"{node.instance_type} is not in the acceptance profile ({profile_path})",
            f"add `instances: {{{node.instance_type}: {{gpus: N}}}}` to judge {node.name}")
    sharing = gpu_sharing(node.labels, node.allocatable)
    facts = {"GPU sharing": sharing.describe()}
    if sharing.mig_strategy == "mixed":
        total = sum(sharing.mig_resources.values())
        crit = (Criterion("MIG devices allocatable", total, "devices", inst.gpus, ">=",
                          f"profile {inst.instance_type} gpus (MIG mixed: at least one device per GPU)"),)
        return Verdict.from_problems(
            node.id, f"at least {inst.gpus} MIG devices (profile gpus, mixed strategy)",
            [sharing.describe()] if total < inst.gpus else [], summary="MIG devices missing",
            fix="Check the mig-manager logs and `nvidia.com/mig.config`.", observed_ok=sharing.describe(),
            criteria=crit, facts=facts)
    expected = inst.gpus * sharing.replicas
    if sharing.mig_strategy == "single":
        profile = node.labels.get("nvidia.com/gpu.product", "").rsplit("-MIG-", 1)[-1]
        expected = inst.gpus * mig_slices(profile) * sharing.replicas
    got, capacity = node.allocatable.get(GPU_RESOURCE, 0), node.capacity.get(GPU_RESOURCE, 0)
    crit = (Criterion(f"{GPU_RESOURCE} allocatable", got, "GPUs", expected, "==",
                      f"profile {inst.instance_type} gpus={inst.gpus} x {sharing.describe()}"),)
    want = f"{GPU_RESOURCE} allocatable {expected} (profile gpus {inst.gpus}, {sharing.describe()})"
    if got == expected:
        return Verdict.passed(node.id, want, str(got), criteria=crit, facts=facts)
    fix = ("The device plugin has not registered any GPU: see test_nvidia_device_plugin_runs_on and the plugin pod's "
           "logs." if got == 0 else
           f"Some GPUs are unhealthy or missing: `kubectl describe node {node.name}`, then on the node `nvidia-smi` "
           "and `dmesg | grep -i xid`.")
    return Verdict.failed(node.id, want, f"allocatable {got}, capacity {capacity}", fix,
                          summary="GPU count mismatch", criteria=crit, facts=facts)


def gfd_labels_of(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels GPU Feature Discovery writes (gpu.*, cuda.*, mig.*)."""
    return {k: v for k, v in labels.items() if k.startswith(GFD_PREFIXES)}


def gfd_labels(node: NodeFacts, inst: InstanceProfile | None) -> Verdict:
    """GFD labels (when present) agree with allocatable, the profile's product and each other."""
    labels, gfd = node.labels, gfd_labels_of(node.labels)
    if "nvidia.com/gpu.count" not in gfd and "nvidia.com/gpu.product" not in gfd:
        return Verdict.not_shown(node.id, "no GPU Feature Discovery labels (GFD not installed): nothing to compare")
    problems: list[str] = []
    sharing = gpu_sharing(labels, node.allocatable)
    count, alloc = gfd.get("nvidia.com/gpu.count"), node.allocatable.get(GPU_RESOURCE, 0)
    if count is not None and sharing.mig_strategy is None:
        # GFD counts physical GPUs: compare with the profile (the hardware), else with what the plugin advertises.
        if inst is not None and inst.gpus:
            if not count.isdigit() or int(count) != inst.gpus:
                problems.append(f"nvidia.com/gpu.count={count} but the profile says {inst.gpus} GPUs")
        elif alloc and (not count.isdigit() or int(count) * sharing.replicas != alloc):
            problems.append(f"nvidia.com/gpu.count={count} (x{sharing.replicas} replicas) but {GPU_RESOURCE} "
                            f"allocatable is {alloc}")
    product = gfd.get("nvidia.com/gpu.product")
    if product and inst is not None and inst.gpu_product:
        base = product.split("-MIG-", 1)[0].split("-SHARED", 1)[0]
        if not product_matches(base, inst.gpu_product):
            problems.append(f"nvidia.com/gpu.product={product} but the profile expects {inst.gpu_product!r}")
    versions = {name: ".".join(str(labels.get(k)) for k in keys)
                for name, keys in (("old cuda.driver.*", DRIVER_LABELS_OLD), ("new cuda.driver-version.*",
                                                                              DRIVER_LABELS_NEW))
                if all(labels.get(k) for k in keys)}
    if labels.get(DRIVER_LABEL_FULL):
        versions["cuda.driver-version.full"] = labels[DRIVER_LABEL_FULL]
    if len(set(versions.values())) > 1:
        problems.append("driver version labels disagree: " + ", ".join(f"{k}={v}" for k, v in versions.items()))
    if not versions and any(k.startswith("nvidia.com/cuda.") for k in gfd):
        problems.append("cuda.* labels present but no complete driver version (major/minor/rev) in either naming")
    return Verdict.from_problems(
        node.id, "GFD labels that agree with the node, the profile and each other", problems,
        summary="GFD labels disagree with the node",
        fix="GFD relabels every 60 s: a stale or wrong label means GFD cannot read NVML; see the "
            "gpu-feature-discovery pod's logs on the node.", facts={"driver version labels": versions})


def operator_namespace(policies: Sequence[Mapping[str, Any]], default: str = "gpu-operator") -> str:
    """Where the GPU Operator runs its operands (ClusterPolicy status.namespace)."""
    for policy in policies:
        default = (policy.get("status") or {}).get("namespace") or default
    return default


def gpu_operator(node: NodeFacts, policies: Sequence[Mapping[str, Any]] | None,
                       validators: Sequence[PodFacts]) -> Verdict:
    """ClusterPolicy state `ready` and the validator pods on the node succeeded. `policies` None: no CRD."""
    if policies is None:
        return Verdict.not_shown(node.id, "GPU Operator not installed (no ClusterPolicy CRD)")
    if not policies:
        return Verdict.not_shown(node.id, "GPU Operator CRD present but no ClusterPolicy: the operator is not deployed")
    namespace, problems, facts = operator_namespace(policies), [], {}
    for policy in policies:
        status, name = policy.get("status") or {}, policy["metadata"]["name"]
        state = status.get("state")
        facts[f"ClusterPolicy {name} state"] = state
        if state != "ready":
            conds = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                              for c in status.get("conditions") or [])
            problems.append(f"ClusterPolicy {name} status.state={state!r} ({conds or 'no conditions'})")
    facts["validator pods"] = {p.name: p.state for p in validators}
    cuda = [p for p in validators if p.name.startswith("nvidia-cuda-validator")]
    operator = [p for p in validators if p.name.startswith("nvidia-operator-validator")]
    if any(p.phase == "Failed" for p in cuda):
        problems.append("nvidia-cuda-validator failed on the node")
    if operator and not any(p.ready for p in operator):
        problems.append(f"nvidia-operator-validator not ready: {operator[0].state}")
    if not validators and not problems:
        problems.append(f"no validator pods on the node in namespace {namespace} (operator-validator DaemonSet "
                        "not scheduled here: check the node's nvidia.com/gpu.deploy.operator-validator label)")
    return Verdict.from_problems(
        node.id, "ClusterPolicy state `ready` and succeeded validators on the node", problems,
        summary="GPU Operator not ready",
        fix=f"Look at `kubectl -n {namespace} get pods -o wide` and the operator-validator init containers' logs.",
        facts=facts)


def efa_plugin(node: NodeFacts, daemonsets: Sequence[PluginOnNode], host_plugins: str | None,
                     expected_efa: int) -> Verdict:
    """The EFA device plugin tolerates the node's taints and runs healthy there (Auto Mode: no DaemonSet), and the
    node advertises the profile's EFA interfaces."""
    efa, want = node.allocatable.get(EFA_RESOURCE, 0), max(1, expected_efa)
    crit = (Criterion(f"{EFA_RESOURCE} allocatable", efa, "interfaces", want, ">=",
                      f"profile {node.instance_type} efa"),)
    if not daemonsets:
        if host_plugins is None or efa <= 0:
            return Verdict.failed(
                node.id, summary="No EFA device plugin",
                expected="a DaemonSet aws-efa-k8s-device-plugin (Helm chart eks/aws-efa-k8s-device-plugin) or EKS "
                         "Auto Mode", observed=f"none, {EFA_RESOURCE} allocatable {efa}",
                fix=f"Install it with tolerations for your GPU taint: {EFA_INSTALL}", criteria=crit)
        facts: dict[str, Any] = {"EFA device plugin": f"no DaemonSet visible ({host_plugins}): judged by allocatable"}
    else:
        lines = [f"{ds.ref} ({ds.rollout}): tolerations {list(ds.toleration_keys)}; {ds.pod_states()}"
                 for ds in daemonsets]
        ok = any(not ds.untolerated and ds.healthy for ds in daemonsets)
        facts = {"EFA device plugin": lines}
        if not ok and all(ds.untolerated for ds in daemonsets):
            ref, missing = daemonsets[0].ref, daemonsets[0].untolerated
            return Verdict.failed(
                node.id, summary="EFA device plugin cannot run",
                expected=f"the plugin DaemonSet to tolerate the node's taints and {EFA_RESOURCE}={expected_efa}",
                observed=f"DaemonSet {ref} does not tolerate the node's taint(s) {', '.join(missing)}, so the node "
                         f"advertises {EFA_RESOURCE}={efa}",
                fix="The Helm chart's default tolerations omit the GPU taint: add `tolerations: [{key: nvidia.com/gpu, "
                    "operator: Exists, effect: NoSchedule}]` to its values.", criteria=crit, facts=facts)
        if not ok:
            return Verdict.failed(
                node.id, summary="EFA device plugin not ready", expected="a Ready plugin pod on the node",
                observed=f"{' | '.join(lines)}; {EFA_RESOURCE} allocatable {efa}",
                fix="Look at the plugin pod's logs (`kubectl -n kube-system logs`) and whether the instance has EFA "
                    "interfaces attached (launch template / NodeClass).", criteria=crit, facts=facts)
    if efa < want:
        return Verdict.failed(
            node.id, summary="EFA interfaces missing", expected=f"{EFA_RESOURCE} allocatable >= {want} (profile "
                                                                 f"{node.instance_type} efa)",
            observed=f"{efa} with a healthy EFA device plugin",
            fix="The plugin advertises the EFA interfaces attached to the instance: check the launch template / "
                "NodeClass attaches all of them (`fi_info -p efa` on the node) and the plugin pod's logs.",
            criteria=crit, facts=facts)
    return Verdict.passed(node.id, f"a healthy EFA device plugin and {EFA_RESOURCE} >= {want}", str(efa), criteria=crit,
                          facts=facts)
