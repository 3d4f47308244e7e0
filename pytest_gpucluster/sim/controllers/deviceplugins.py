"""Device plugins and GPU Feature Discovery: node GPU/EFA allocatable and GFD labels once a node's plugin pod is Ready."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.controllers.base import Controller, get_condition, is_deleting, parse_rfc3339
from pytest_gpucluster.sim.controllers.daemonsets import pod_is_ready
from pytest_gpucluster.sim.controllers.fit import node_is_ready
from pytest_gpucluster.sim.hardware import InstanceType, UnknownInstanceType, instance_type
from pytest_gpucluster.sim.tools.fake.fault import EVERY_NODE, FIRST_GPU_NODE, FaultKind

GPU = "nvidia.com/gpu"
EFA = "vpc.amazonaws.com/efa"
PLUGIN_ANNOTATION = "sim.gpucluster.io/plugin"   # explicit role of a DaemonSet, overrides name matching
ROLE_NVIDIA, ROLE_EFA, ROLE_GFD = "nvidia-device-plugin", "efa-device-plugin", "gpu-feature-discovery"
GFD_PREFIXES = ("nvidia.com/gpu.", "nvidia.com/cuda.", "nvidia.com/mig.")

FAULTS = (
    FaultKind("device-plugin-not-ready", {"behaviour": "crashloop | never-ready"}, EVERY_NODE,
              "the NVIDIA device-plugin pod crash-loops or never turns Ready: no GPU allocatable on that node"),
    FaultKind("device-plugin-restarted", {"minutes_ago": "120"}, EVERY_NODE,
              "not a fault of the cluster: every NVIDIA device-plugin pod restarted once that long ago (restartCount 1, "
              "its lastState terminated then) and is Ready since"),
    FaultKind("efa-absent", {}, FIRST_GPU_NODE,
              "no EFA allocatable; fi_info -p efa prints fi_getinfo: -61 (No data available); NCCL on Socket"),
    FaultKind("efa-allocatable-low", {"efa": "(count)"}, FIRST_GPU_NODE,
              "the EFA plugin advertises only that many of the node's EFA interfaces"),
)


def daemonset_role(ds_name: str, annotations: dict[str, str] | None = None) -> str | None:
    """Which plugin a DaemonSet runs, from its annotation or its conventional name.

    Helm `nvdp-nvidia-device-plugin`, static `nvidia-device-plugin-daemonset`, GPU Operator
    `nvidia-device-plugin-daemonset`; `aws-efa-k8s-device-plugin(-daemonset)`; `gpu-feature-discovery`
    (Helm `nvdp-gpu-feature-discovery`). The MPS control daemon is not a device plugin.
    """
    explicit = (annotations or {}).get(PLUGIN_ANNOTATION)
    if explicit:
        return explicit
    if "efa" in ds_name and "device-plugin" in ds_name:
        return ROLE_EFA
    if "gpu-feature-discovery" in ds_name:
        return ROLE_GFD
    if "nvidia-device-plugin" in ds_name and "mps" not in ds_name:
        return ROLE_NVIDIA
    return None


def mig_slices(profile: str) -> int:
    """MIG devices per GPU for a single-strategy profile: `1g.10gb` -> 7, `2g.20gb` -> 3, `3g.40gb` -> 2."""
    try:
        compute = int(profile.split("g.", 1)[0])
    except ValueError:
        return 1
    return {1: 7, 2: 3, 3: 2}.get(compute, 1)


def plugin_fault_behaviour(facts: "NodeFacts") -> Any:
    """DaemonSet behaviour hook: the `device-plugin-not-ready` fault makes the NVIDIA plugin pod on
    the fault's nodes crash-loop (or never become ready, with `behaviour: never-ready`); `device-plugin-restarted`
    makes it report one restart `minutes_ago` (lastState terminated at boot) and run Ready since."""
    def behaviour(ds: dict[str, Any], node: dict[str, Any]) -> str | None:
        if daemonset_role(ds["metadata"]["name"], ds["metadata"].get("annotations")) != ROLE_NVIDIA:
            return None
        for fault in facts.faults(node, "device-plugin-not-ready"):
            return str(fault.params.get("behaviour") or "crashloop")
        for fault in facts.faults(node, "device-plugin-restarted"):
            return f"restarted-once:{float(fault.params.get('minutes_ago', 120))}"
        return None
    return behaviour


class NodeFacts:
    """What a node's hardware offers, from the scenario (seeded nodes) or its instance-type label."""

    def __init__(self, scenario: Any) -> None:
        self.scenario = scenario
        self.karpenter_nodes: dict[str, Any] = {}   # node name -> scenario NodeSpec (registered by Karpenter)

    def spec(self, node: dict[str, Any]) -> Any | None:
        name = node["metadata"]["name"]
        if name in self.karpenter_nodes:
            return self.karpenter_nodes[name]
        if self.scenario is None:
            return None
        try:
            return self.scenario.node(name)
        except (KeyError, IndexError):
            return None

    def instance(self, node: dict[str, Any]) -> InstanceType | None:
        spec = self.spec(node)
        if spec is not None:
            return spec.instance
        labels = node["metadata"].get("labels") or {}
        try:
            return instance_type(labels.get("node.kubernetes.io/instance-type", ""))
        except UnknownInstanceType:
            return None

    def faults(self, node: dict[str, Any], kind: str) -> list[Any]:
        if self.scenario is None:
            return []
        return [f for f in self.scenario.faults_on_node(node["metadata"]["name"]) if f.kind == kind]

    def gpu_resources(self, node: dict[str, Any]) -> dict[str, int]:
        """{resource: count} the NVIDIA device plugin advertises (MIG single/mixed strategy aware)."""
        instance = self.instance(node)
        if instance is None or instance.gpus == 0:
            return {}
        spec = self.spec(node)
        mig = getattr(getattr(spec, "group", None), "mig", None) if spec is not None else None
        if mig is None:
            return {GPU: instance.gpus}
        per_gpu = mig_slices(mig.profile)
        if mig.strategy == "mixed":
            return {f"nvidia.com/mig-{mig.profile}": instance.gpus * per_gpu}
        return {GPU: instance.gpus * per_gpu}

    def efa_count(self, node: dict[str, Any]) -> int:
        instance = self.instance(node)
        if instance is None:
            return 0
        if self.faults(node, "efa-absent"):
            return 0
        count = instance.efa
        for fault in self.faults(node, "efa-allocatable-low"):
            count = min(count, int(fault.params.get("efa", max(0, count // 2))))
        return count

    def gfd_labels(self, node: dict[str, Any]) -> dict[str, str]:
        """The labels GPU Feature Discovery puts on a GPU node (old and new CUDA driver keys)."""
        instance = self.instance(node)
        if instance is None or instance.gpu_model is None or instance.gpus == 0:
            return {}
        spec = self.spec(node)
        hardware = getattr(spec, "hardware", None)
        driver = getattr(hardware, "driver_version", "580.105.08")
        cuda = getattr(hardware, "cuda_version", "13.0")
        major, minor, rev = (driver.split(".") + ["0", "0"])[:3]
        cuda_major, cuda_minor = (cuda.split(".") + ["0"])[:2]
        model = instance.gpu_model
        mig = getattr(getattr(spec, "group", None), "mig", None) if spec is not None else None
        labels = {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(instance.gpus),
            "nvidia.com/gpu.product": model.gfd_product,
            "nvidia.com/gpu.memory": str(model.memory_mib),
            "nvidia.com/gpu.family": model.architecture,
            "nvidia.com/gpu.compute.major": model.compute_cap.split(".")[0],
            "nvidia.com/gpu.compute.minor": model.compute_cap.split(".")[1],
            "nvidia.com/gpu.replicas": "1",
            "nvidia.com/gpu.sharing-strategy": "none",
            "nvidia.com/gpu.machine": instance.name,
            "nvidia.com/mig.capable": "true" if model.mig_capable else "false",
            "nvidia.com/mig.strategy": mig.strategy if mig else "single",
            "nvidia.com/cuda.driver.major": major, "nvidia.com/cuda.driver.minor": minor,
            "nvidia.com/cuda.driver.rev": rev,
            "nvidia.com/cuda.driver-version.major": major, "nvidia.com/cuda.driver-version.minor": minor,
            "nvidia.com/cuda.driver-version.revision": rev,
            "nvidia.com/cuda.driver-version.full": driver,
            "nvidia.com/cuda.runtime.major": cuda_major, "nvidia.com/cuda.runtime.minor": cuda_minor,
            "nvidia.com/cuda.runtime-version.major": cuda_major,
            "nvidia.com/cuda.runtime-version.minor": cuda_minor,
            "nvidia.com/cuda.runtime-version.full": f"{cuda_major}.{cuda_minor}",
        }
        if mig:
            labels["nvidia.com/gpu.product"] = f"{model.gfd_product}-MIG-{mig.profile}"
            labels["nvidia.com/gpu.count"] = str(instance.gpus * mig_slices(mig.profile))
        return labels


class DevicePluginController(Controller):
    """Publishes GPU/EFA capacity+allocatable and GFD labels per node from the plugin pods' readiness.

    Auto Mode (`nvidia_device_plugin: none` on an auto_mode cluster): EKS runs the plugins
    invisibly, so GPUs and EFA appear `gpu_allocatable_after_ready` seconds after the node is Ready.
    """

    name = "device-plugins"
    watches = ("pods", "nodes", "daemonsets.apps")

    def __init__(self, store: Any, scenario: Any, facts: NodeFacts) -> None:
        super().__init__(store, scenario)
        self.facts = facts
        operators = getattr(scenario, "operators", None)
        cluster = getattr(scenario, "cluster", None)
        self.auto_mode = bool(getattr(cluster, "auto_mode", False))
        self.nvidia_mode = getattr(operators, "nvidia_device_plugin", "helm")
        efa = getattr(operators, "efa_device_plugin", None)
        self.efa_installed = bool(getattr(efa, "installed", True))
        karpenter = getattr(scenario, "karpenter", None)
        self.auto_delay = float(getattr(karpenter, "gpu_allocatable_after_ready", 0.0))

    def interested(self, event_type: str, key: str, obj: dict[str, Any]) -> bool:
        if key != "pods":
            return True
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        return any(r.get("kind") == "DaemonSet" for r in refs)

    async def reconcile(self) -> None:
        roles = {ds["metadata"]["uid"]: daemonset_role(ds["metadata"]["name"], ds["metadata"].get("annotations"))
                 for ds in self.items("daemonsets.apps")}
        ready_roles: dict[str, set[str]] = {}
        for pod in self.items("pods"):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name or not pod_is_ready(pod):
                continue
            for ref in pod["metadata"].get("ownerReferences") or []:
                role = roles.get(ref.get("uid", ""))
                if role:
                    ready_roles.setdefault(node_name, set()).add(role)
        now = self.clock()
        for node in self.items("nodes"):
            if is_deleting(node):
                continue
            self._sync_node(node, ready_roles.get(node["metadata"]["name"], set()), now)

    def _auto_mode_ready(self, node: dict[str, Any], now: float) -> bool:
        if not node_is_ready(node):
            return False
        ready = get_condition(node, "Ready") or {}
        since = parse_rfc3339(ready.get("lastTransitionTime")) or now
        if now - since < self.auto_delay:
            self.wake_in(self.auto_delay - (now - since))
            return False
        return True

    def _sync_node(self, node: dict[str, Any], roles: set[str], now: float) -> None:
        invisible = self.auto_mode and self.nvidia_mode == "none"
        # Bottlerocket's NVIDIA variants run the device plugin on the host (bottlerocket.dev
        # settings.kubelet-device-plugins): GPUs appear once the node is Ready, without a DaemonSet pod.
        host = "bottlerocket" in str(((node.get("status") or {}).get("nodeInfo") or {}).get("osImage", "")).lower()
        gpu_live = ROLE_NVIDIA in roles or ((invisible or host) and self._auto_mode_ready(node, now))
        efa_live = ROLE_EFA in roles or (self.auto_mode and not self.efa_installed
                                         and self._auto_mode_ready(node, now))
        wanted: dict[str, str] = {}
        status = node.get("status") or {}
        allocatable = status.get("allocatable") or {}
        gpu_resources = self.facts.gpu_resources(node)
        for resource, count in gpu_resources.items():
            if gpu_live:
                wanted[resource] = str(count)
            elif resource in allocatable:
                wanted[resource] = "0"  # plugin gone: the kubelet keeps the resource at zero
        efa = self.facts.efa_count(node)
        if efa_live and efa > 0:
            wanted[EFA] = str(efa)
        elif EFA in allocatable and not efa_live:
            wanted[EFA] = "0"
        labels = self.facts.gfd_labels(node) if ROLE_GFD in roles else {}
        current_labels = node["metadata"].get("labels") or {}
        capacity = status.get("capacity") or {}
        if all(allocatable.get(k) == v and capacity.get(k) == v for k, v in wanted.items()) and all(
                current_labels.get(k) == v for k, v in labels.items()):
            return

        def publish(obj: dict[str, Any]) -> None:
            st = obj.setdefault("status", {})
            for field in ("capacity", "allocatable"):
                st.setdefault(field, {}).update(wanted)
            obj["metadata"].setdefault("labels", {}).update(labels)

        self.try_mutate("nodes", None, node["metadata"]["name"], publish)
