"""Device plugins (marker gpu): NVIDIA device plugin, GPU allocatable, GFD labels, GPU Operator, EFA device plugin."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_gpucluster.kube import errors, watching
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, NodeInfo
from pytest_gpucluster.kube.taints import tolerates
from pytest_gpucluster.parsers import product_matches
from pytest_gpucluster.profile import Profile

pytestmark = pytest.mark.gpu

GPU = "nvidia.com/gpu"
EFA = "vpc.amazonaws.com/efa"
AUTO_MODE_LABEL = ("eks.amazonaws.com/compute-type", "auto")
# GFD driver version labels: old (<= v0.14) and new naming; both must agree when both are present.
DRIVER_LABELS_OLD = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev")
DRIVER_LABELS_NEW = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver-version.minor",
                     "nvidia.com/cuda.driver-version.revision")
DRIVER_LABEL_FULL = "nvidia.com/cuda.driver-version.full"
SETTLE_TIMEOUT_S = 30.0   # plugin pods still starting get this long to become Ready or visibly fail
RESTART_WINDOW_S = 600.0  # a plugin container that restarted within this window is not healthy


# -- what is installed ---------------------------------------------------------------------------------
def plugin_role(ds: dict[str, Any]) -> str | None:
    """nvidia | gfd | efa | None from the DaemonSet's name (Helm `nvdp-nvidia-device-plugin`, static
    `nvidia-device-plugin-daemonset`, GPU Operator `nvidia-device-plugin-daemonset`, `aws-efa-k8s-device-plugin`)."""
    name = ds["metadata"]["name"]
    if "efa" in name and "device-plugin" in name:
        return "efa"
    if "gpu-feature-discovery" in name:
        return "gfd"
    if "nvidia-device-plugin" in name and "mps" not in name:
        return "nvidia"
    return None


def install_method(ds: dict[str, Any]) -> str:
    """How the NVIDIA device plugin was installed, from the DaemonSet's namespace and labels."""
    meta = ds["metadata"]
    labels = meta.get("labels") or {}
    if meta.get("namespace") == "gpu-operator" or labels.get("app.kubernetes.io/managed-by") == "gpu-operator":
        return "GPU Operator"
    if labels.get("app.kubernetes.io/managed-by") == "Helm" or labels.get("helm.sh/chart"):
        return f"Helm chart {labels.get('helm.sh/chart', '?')} (release {labels.get('app.kubernetes.io/instance', '?')})"
    return "static manifest"


def ds_ref(ds: dict[str, Any]) -> str:
    return f"{ds['metadata'].get('namespace')}/{ds['metadata']['name']}"


def ds_rollout(ds: dict[str, Any]) -> str:
    st = ds.get("status") or {}
    return (f"desired {st.get('desiredNumberScheduled', 0)}, ready {st.get('numberReady', 0)}, "
            f"available {st.get('numberAvailable', 0)}")


def selector_string(ds: dict[str, Any]) -> str:
    labels = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def recent_restarts(pod: dict[str, Any], now: float | None = None) -> int:
    """Restarts of containers whose last termination is within RESTART_WINDOW_S: a crash-looping plugin is
    briefly Running and Ready between crashes, and its GPUs come and go with it."""
    now = time.time() if now is None else now
    count = 0
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if cs.get("restartCount") and finished:
            when = dt.datetime.fromisoformat(str(finished).replace("Z", "+00:00")).timestamp()
            if now - when <= RESTART_WINDOW_S:
                count += int(cs["restartCount"])
    return count


def plugin_healthy(pod: dict[str, Any]) -> bool:
    return ((pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)
            and recent_restarts(pod) == 0)


def pod_state(pod: dict[str, Any]) -> str:
    """`Running (ready)`, `Running (not ready, CrashLoopBackOff, 7 restarts)`, `Pending` ..."""
    status = pod.get("status") or {}
    words = [status.get("phase", "Pending")]
    details = ["ready" if pod_ready(pod) else "not ready"]
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            details.append(waiting["reason"])
        if cs.get("restartCount"):
            details.append(f"{cs['restartCount']} restarts, {recent_restarts(pod)} in the last "
                           f"{RESTART_WINDOW_S / 60:.0f} min")
    return f"{words[0]} ({', '.join(details)})"


def taint_text(taint: dict[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


@dataclass
class Plugins:
    """The device-plugin DaemonSets of the cluster and their pods, read once per module."""

    by_role: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # DaemonSet ref -> its pods
    auto_mode: bool = False
    bottlerocket: bool = False

    def daemonsets(self, role: str) -> list[dict[str, Any]]:
        return self.by_role.get(role, [])

    def pods_on(self, ds: dict[str, Any], node: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.get(ds_ref(ds), []) if (p.get("spec") or {}).get("nodeName") == node]

    @property
    def invisible_plugins(self) -> bool:
        """EKS Auto Mode / Bottlerocket run the NVIDIA and EFA plugins on the host, without a DaemonSet."""
        return self.auto_mode or self.bottlerocket


def settled(pod: dict[str, Any]) -> bool:
    """Ready, or in a state that will not change by itself soon (crash loop, image error, failed)."""
    if pod_ready(pod) or (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return True
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing") or cs.get("restartCount"):
            return True
    return False


def daemon_pods(cluster: Cluster, ds: dict[str, Any]) -> list[dict[str, Any]]:
    """The DaemonSet's pods once they settled (a node that just joined has its plugin pod still starting);
    after SETTLE_TIMEOUT_S, whatever they are then."""
    namespace, selector = ds["metadata"]["namespace"], selector_string(ds) or None
    desired = int((ds.get("status") or {}).get("desiredNumberScheduled") or 0)
    try:
        pods = watching.eventually(cluster, "pods", namespace,
                                   lambda objs: len(objs) >= desired and all(settled(p) for p in objs.values()),
                                   timeout_s=SETTLE_TIMEOUT_S, description=f"{ds_ref(ds)} pods settled",
                                   label_selector=selector)
        return list(pods.values())
    except watching.DeadlineExceeded:
        return cluster.items("pods", namespace, label_selector=selector)


@pytest.fixture(scope="module")
def plugins(cluster: Cluster, inventory: Inventory) -> Plugins:
    found = Plugins()
    for ds in cluster.items("daemonsets.apps"):
        role = plugin_role(ds)
        if role is None:
            continue
        found.pods[ds_ref(ds)] = daemon_pods(cluster, ds)
        found.by_role.setdefault(role, []).append(cluster.get("daemonsets.apps", ds["metadata"]["name"],
                                                              ds["metadata"]["namespace"]))
    gpu_nodes = [n for n in inventory.all_nodes if n.is_gpu]
    found.auto_mode = any(n.labels.get(AUTO_MODE_LABEL[0]) == AUTO_MODE_LABEL[1] for n in gpu_nodes)
    os_images = [str((cluster.get("nodes", n.name).get("status") or {}).get("nodeInfo", {}).get("osImage", ""))
                 for n in gpu_nodes[:1]]
    found.bottlerocket = any("bottlerocket" in img.lower() for img in os_images)
    return found


def fresh(cluster: Cluster, node: NodeInfo) -> dict[str, Any]:
    """The node as it is now (the inventory is a snapshot from collection time)."""
    return cluster.get("nodes", node.name)


def allocatable(node: dict[str, Any], resource: str) -> int:
    try:
        return int(str(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")))
    except ValueError:
        return 0


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


def gpu_sharing(node: dict[str, Any]) -> GpuSharing:
    labels = node["metadata"].get("labels") or {}
    alloc = (node.get("status") or {}).get("allocatable") or {}
    out = GpuSharing()
    out.mig_resources = {k: int(str(v)) for k, v in alloc.items() if k.startswith("nvidia.com/mig-") and str(v).isdigit()}
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


# -- checks --------------------------------------------------------------------------------------------
def test_nvidia_device_plugin_runs_on(gpu_node: NodeInfo, plugins: Plugins, cluster: Cluster, evidence: Any) -> None:
    """A Ready NVIDIA device-plugin pod on the node (Helm, static or GPU Operator); Auto Mode: judged by allocatable."""
    daemonsets = plugins.daemonsets("nvidia")
    if not daemonsets:
        node = fresh(cluster, gpu_node)
        gpus = allocatable(node, GPU)
        evidence.fact("nvidia device plugin", "no DaemonSet visible")
        assert plugins.invisible_plugins, (
            f"No NVIDIA device plugin on {gpu_node.id}: expected a DaemonSet (Helm chart nvdp/nvidia-device-plugin, "
            f"the static nvidia-device-plugin.yml in kube-system, or the GPU Operator); observed none in any "
            f"namespace and the node is not EKS Auto Mode/Bottlerocket (allocatable {GPU}={gpus}). Install the "
            "device plugin: helm upgrade -i nvdp nvdp/nvidia-device-plugin -n nvidia-device-plugin --create-namespace")
        how = "EKS Auto Mode" if plugins.auto_mode else "Bottlerocket"
        evidence.fact("judged by", f"{how}: plugin runs on the host without a DaemonSet; judged by allocatable")
        evidence.measure(f"{GPU} allocatable", gpus, "GPUs", threshold=1, op=">=",
                         source=f"{how} has no visible device plugin: at least one GPU must be allocatable")
        assert gpus > 0, (
            f"{how} node {gpu_node.id} advertises no GPUs: expected {GPU} allocatable > 0 (the host's device "
            f"plugin registers them), observed {gpus}. Look at the node's conditions and `kubectl describe node "
            f"{gpu_node.name}`; on Auto Mode check the NodePool allows GPU instance types.")
        return
    lines, ok = [], False
    for ds in daemonsets:
        pods = plugins.pods_on(ds, gpu_node.name)
        states = [f"{p['metadata']['name']} {pod_state(p)}" for p in pods] or ["no pod on this node"]
        lines.append(f"{ds_ref(ds)} ({install_method(ds)}; {ds_rollout(ds)}): {'; '.join(states)}")
        ok = ok or any(plugin_healthy(p) for p in pods)
    evidence.fact("nvidia device plugin", lines)
    evidence.attach(f"NVIDIA device plugin DaemonSets seen from {gpu_node.name}", "\n".join(lines))
    missing_hint = ""
    if not any(plugins.pods_on(ds, gpu_node.name) for ds in daemonsets):
        untolerated = [taint_text(t) for t in gpu_node.taints
                       if t.get("effect") in ("NoSchedule", "NoExecute") and not any(
                           tolerates(((ds["spec"]["template"].get("spec") or {}).get("tolerations") or []), t)
                           for ds in daemonsets)]
        missing_hint = (f" The DaemonSet does not tolerate the node's taint(s) {', '.join(untolerated)}."
                        if untolerated else " Check the DaemonSet's nodeSelector/affinity against the node's labels.")
    assert ok, (
        f"NVIDIA device plugin not ready on {gpu_node.id}: expected a Running, Ready plugin pod on the node "
        f"without restarts in the last {RESTART_WINDOW_S / 60:.0f} min; "
        f"observed {' | '.join(lines)}.{missing_hint} Look at `kubectl -n {daemonsets[0]['metadata']['namespace']} "
        f"logs <pod>` (driver/NVML errors) and `kubectl describe node {gpu_node.name}`.")


def test_gpu_allocatable_matches_profile(gpu_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                         evidence: Any) -> None:
    """nvidia.com/gpu allocatable equals the profile's GPU count (MIG and time-slicing recognised and reported)."""
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    if inst is None or not inst.gpus:
        pytest.skip(f"{gpu_node.instance_type} is not in the acceptance profile ({gpu_profile.path}): add "
                    f"`instances: {{{gpu_node.instance_type}: {{gpus: N}}}}` to judge {gpu_node.name}")
    node = fresh(cluster, gpu_node)
    sharing = gpu_sharing(node)
    evidence.fact("GPU sharing", sharing.describe())
    if sharing.mig_strategy == "mixed":
        total = sum(sharing.mig_resources.values())
        evidence.measure("MIG devices allocatable", total, "devices", threshold=inst.gpus, op=">=",
                         source=f"profile {inst.instance_type} gpus (MIG mixed: at least one device per GPU)")
        assert total >= inst.gpus, (
            f"MIG devices missing on {gpu_node.id}: expected at least {inst.gpus} MIG devices (profile gpus, mixed "
            f"strategy), observed {sharing.describe()}. Check the mig-manager logs and `nvidia.com/mig.config`.")
        return
    expected = inst.gpus * sharing.replicas
    labels = node["metadata"].get("labels") or {}
    if sharing.mig_strategy == "single":
        product = labels.get("nvidia.com/gpu.product", "")
        expected = inst.gpus * mig_slices(product.rsplit("-MIG-", 1)[-1]) * sharing.replicas
    got = allocatable(node, GPU)
    capacity = int(str(((node.get("status") or {}).get("capacity") or {}).get(GPU, "0")) or 0)
    evidence.measure(f"{GPU} allocatable", got, "GPUs", threshold=expected, op="==",
                     source=f"profile {inst.instance_type} gpus={inst.gpus} x {sharing.describe()}")
    assert got == expected, (
        f"GPU count mismatch on {gpu_node.id}: expected {GPU} allocatable {expected} (profile gpus {inst.gpus}, "
        f"{sharing.describe()}), observed allocatable {got}, capacity {capacity}. "
        + ("The device plugin has not registered any GPU: see test_nvidia_device_plugin_runs_on and the plugin "
           "pod's logs." if got == 0 else
           f"Some GPUs are unhealthy or missing: `kubectl describe node {gpu_node.name}`, then on the node "
           "`nvidia-smi` and `dmesg | grep -i xid`."))


def test_gfd_labels_agree_with_node(gpu_node: NodeInfo, gpu_profile: Profile, cluster: Cluster,
                                    evidence: Any) -> None:
    """GPU Feature Discovery labels (when present) agree with allocatable, the profile's product and each other."""
    node = fresh(cluster, gpu_node)
    labels = node["metadata"].get("labels") or {}
    gfd = {k: v for k, v in labels.items() if k.startswith(("nvidia.com/gpu.", "nvidia.com/cuda.", "nvidia.com/mig."))}
    if "nvidia.com/gpu.count" not in gfd and "nvidia.com/gpu.product" not in gfd:
        pytest.skip(f"no GPU Feature Discovery labels on {gpu_node.id} (GFD not installed): nothing to compare")
    evidence.attach(f"GFD labels of {gpu_node.name}", "\n".join(f"{k}={v}" for k, v in sorted(gfd.items())))
    problems: list[str] = []
    sharing = gpu_sharing(node)
    count = gfd.get("nvidia.com/gpu.count")
    alloc = allocatable(node, GPU)
    inst = gpu_profile.for_instance(gpu_node.instance_type)
    if count is not None and sharing.mig_strategy is None:
        # GFD counts physical GPUs: compare with the profile (the hardware), else with what the plugin advertises.
        if inst is not None and inst.gpus:
            if not count.isdigit() or int(count) != inst.gpus:
                problems.append(f"nvidia.com/gpu.count={count} but the profile says {inst.gpus} GPUs")
        elif alloc and (not count.isdigit() or int(count) * sharing.replicas != alloc):
            problems.append(f"nvidia.com/gpu.count={count} (x{sharing.replicas} replicas) but {GPU} allocatable "
                            f"is {alloc}")
    product = gfd.get("nvidia.com/gpu.product")
    if product and inst is not None and inst.gpu_product:
        base = product.split("-MIG-", 1)[0].split("-SHARED", 1)[0]
        if not product_matches(base, inst.gpu_product):
            problems.append(f"nvidia.com/gpu.product={product} but the profile expects {inst.gpu_product!r}")
    old = [labels.get(k) for k in DRIVER_LABELS_OLD]
    new = [labels.get(k) for k in DRIVER_LABELS_NEW]
    full = labels.get(DRIVER_LABEL_FULL)
    versions = {name: ".".join(str(v) for v in parts) for name, parts in (("old cuda.driver.*", old),
                                                                    ("new cuda.driver-version.*", new))
                if all(parts)}
    if full:
        versions["cuda.driver-version.full"] = full
    evidence.fact("driver version labels", versions)
    if len(set(versions.values())) > 1:
        problems.append("driver version labels disagree: " + ", ".join(f"{k}={v}" for k, v in versions.items()))
    if not versions and any(k.startswith("nvidia.com/cuda.") for k in gfd):
        problems.append("cuda.* labels present but no complete driver version (major/minor/rev) in either naming")
    assert not problems, (
        f"GFD labels disagree with {gpu_node.id}: " + "; ".join(problems)
        + ". GFD relabels every 60 s: a stale or wrong label means GFD cannot read NVML; see the "
        "gpu-feature-discovery pod's logs on the node.")


def test_gpu_operator_ready_on(gpu_node: NodeInfo, cluster: Cluster, evidence: Any) -> None:
    """GPU Operator (when installed): ClusterPolicy state `ready`, validator pods succeeded on the node."""
    try:
        policies = cluster.items("clusterpolicies.nvidia.com")
    except errors.NotFound:
        pytest.skip("GPU Operator not installed (no ClusterPolicy CRD)")
    if not policies:
        pytest.skip("GPU Operator CRD present but no ClusterPolicy: the operator is not deployed")
    problems: list[str] = []
    namespace = "gpu-operator"
    for policy in policies:
        status = policy.get("status") or {}
        namespace = status.get("namespace") or namespace
        state = status.get("state")
        evidence.fact(f"ClusterPolicy {policy['metadata']['name']} state", state)
        if state != "ready":
            conds = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                              for c in status.get("conditions") or [])
            problems.append(f"ClusterPolicy {policy['metadata']['name']} status.state={state!r} ({conds or 'no conditions'})")
    pods = [p for p in cluster.items("pods", namespace, field_selector=f"spec.nodeName={gpu_node.name}")
            if "validator" in p["metadata"]["name"]]
    evidence.fact("validator pods", {p["metadata"]["name"]: pod_state(p) for p in pods})
    cuda = [p for p in pods if p["metadata"]["name"].startswith("nvidia-cuda-validator")]
    operator = [p for p in pods if p["metadata"]["name"].startswith("nvidia-operator-validator")]
    if any((p.get("status") or {}).get("phase") == "Failed" for p in cuda):
        problems.append("nvidia-cuda-validator failed on the node")
    if operator and not any(pod_ready(p) for p in operator):
        problems.append(f"nvidia-operator-validator not ready: {pod_state(operator[0])}")
    if not pods and not problems:
        problems.append(f"no validator pods on the node in namespace {namespace} (operator-validator DaemonSet "
                        "not scheduled here: check the node's nvidia.com/gpu.deploy.operator-validator label)")
    assert not problems, (
        f"GPU Operator not ready for {gpu_node.id}: expected ClusterPolicy state `ready` and succeeded validators "
        f"on the node; observed {'; '.join(problems)}. Look at `kubectl -n {namespace} get pods -o wide` and the "
        "operator-validator init containers' logs.")


@pytest.mark.efa
def test_efa_device_plugin_runs_on(efa_node: NodeInfo, plugins: Plugins, cluster: Cluster, evidence: Any) -> None:
    """EFA device plugin tolerates the node's taints and runs on every EFA-capable node (Auto Mode: allocatable)."""
    daemonsets = plugins.daemonsets("efa")
    node = fresh(cluster, efa_node)
    efa = allocatable(node, EFA)
    evidence.measure(f"{EFA} allocatable", efa, "interfaces", threshold=max(1, efa_node.expected_efa), op=">=",
                     source=f"profile {efa_node.instance_type} efa")
    if not daemonsets:
        assert plugins.invisible_plugins and efa > 0, (
            f"No EFA device plugin for {efa_node.id}: expected a DaemonSet aws-efa-k8s-device-plugin (Helm chart "
            f"eks/aws-efa-k8s-device-plugin) or EKS Auto Mode; observed none, {EFA} allocatable {efa}. Install "
            "it with tolerations for your GPU taint: helm install efa eks/aws-efa-k8s-device-plugin -n kube-system "
            "--set tolerations[0].key=nvidia.com/gpu,tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule")
        evidence.fact("EFA device plugin", "no DaemonSet visible (EKS Auto Mode): judged by allocatable")
        return
    blocking = [t for t in efa_node.taints if t.get("effect") in ("NoSchedule", "NoExecute")]
    lines, ok, untolerated = [], False, {}
    for ds in daemonsets:
        tols = (ds["spec"]["template"].get("spec") or {}).get("tolerations") or []
        missing = [taint_text(t) for t in blocking if not tolerates(tols, t)]
        untolerated[ds_ref(ds)] = missing
        pods = plugins.pods_on(ds, efa_node.name)
        states = [f"{p['metadata']['name']} {pod_state(p)}" for p in pods] or ["no pod on this node"]
        lines.append(f"{ds_ref(ds)} ({ds_rollout(ds)}): tolerations "
                     f"{[t.get('key', '*') for t in tols]}; {'; '.join(states)}")
        ok = ok or (not missing and any(plugin_healthy(p) for p in pods))
    evidence.fact("EFA device plugin", lines)
    if not ok and all(untolerated.values()):
        ref, missing = next(iter(untolerated.items()))
        pytest.fail(
            f"EFA device plugin cannot run on {efa_node.id}: DaemonSet {ref} does not tolerate the node's taint(s) "
            f"{', '.join(missing)}, so the node advertises {EFA}={efa} (expected {efa_node.expected_efa}). "
            "The Helm chart's default tolerations omit the GPU taint: add `tolerations: [{key: nvidia.com/gpu, "
            "operator: Exists, effect: NoSchedule}]` to its values.", pytrace=False)
    assert ok, (
        f"EFA device plugin not ready on {efa_node.id}: expected a Ready plugin pod on the node; observed "
        f"{' | '.join(lines)}; {EFA} allocatable {efa}. Look at the plugin pod's logs (`kubectl -n kube-system "
        "logs`) and whether the instance has EFA interfaces attached (launch template / NodeClass).")
