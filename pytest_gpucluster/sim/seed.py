"""Seeds a fresh Store from a Scenario: namespaces, CRDs, nodes, NodePools/NodeClasses and operator DaemonSets."""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from .controllers.base import parse_rfc3339
from .controllers.karpenter_catalog import instance_labels
from .hardware import INSTANCE_TYPES
from .resources import crd_manifest
from .scenario import NodeSpec, Scenario
from .store import rfc3339
from .tools.fake.fault import CLUSTER, FIRST_GPU_NODE, FaultKind

FAULTS = (
    FaultKind("taint-missing", {}, FIRST_GPU_NODE, "the node is seeded without its taints"),
    FaultKind("efa-plugin-untolerated", {}, CLUSTER,
              "the EFA device-plugin DaemonSet lacks the nvidia.com/gpu toleration (its upstream default): tainted GPU "
              "nodes get no EFA"),
)

CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CRITICAL = {"key": "CriticalAddonsOnly", "operator": "Exists"}
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"
OPERATOR_VALIDATOR_IMAGE = "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v25.3.0"
EFA_PLUGIN_IMAGE = "602401143452.dkr.ecr.{region}.amazonaws.com/eks/aws-efa-k8s-device-plugin:v0.5.6"
ZONE_IDS = {"a": "az1", "b": "az2", "c": "az3", "d": "az4"}


def _kubelet_version(scenario: Scenario) -> str:
    return f"v{scenario.cluster.kubernetes_version}.0-eks-5e0fdde"


def bottlerocket(scenario: Scenario, group: Any) -> bool:
    """The node group runs Bottlerocket: its `os`, or EKS Auto Mode (whose AMI is Bottlerocket)."""
    return group.os == "bottlerocket" or (group.os is None and scenario.cluster.auto_mode)


def node_info(scenario: Scenario, node: NodeSpec) -> dict[str, str]:
    """status.nodeInfo as an EKS AL2023 node (or Bottlerocket: Auto Mode, or a node group's `os`) reports it."""
    version = scenario.cluster.kubernetes_version
    if scenario.cluster.auto_mode:
        os_image, kernel = "Bottlerocket (EKS Auto, Standard) 2025.4.26 (aws-k8s-1.32-standard)", "6.1.134"
    elif bottlerocket(scenario, node.group):
        # `Bottlerocket OS <release> (<variant>)` as its nodes report it; the NVIDIA variant is aws-k8s-<version>-nvidia
        variant = f"aws-k8s-{version}-nvidia" if node.instance.is_gpu else f"aws-k8s-{version}"
        os_image, kernel = f"Bottlerocket OS 1.34.0 ({variant})", "6.1.134"
    else:
        os_image, kernel = "Amazon Linux 2023.7.20250512", "6.1.134-152.225.amzn2023.x86_64"
    return {"architecture": node.instance.arch, "operatingSystem": "linux", "osImage": os_image,
            "kernelVersion": kernel, "containerRuntimeVersion": "containerd://1.7.27",
            "kubeletVersion": _kubelet_version(scenario), "kubeProxyVersion": _kubelet_version(scenario),
            "machineID": f"ec2{node.instance_id[2:]}{'0' * 12}", "systemUUID": f"ec2{node.instance_id[2:]}",
            "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, node.name))}


def node_labels(scenario: Scenario, node: NodeSpec) -> dict[str, str]:
    """Labels of a seeded node: kubelet well-known labels, EKS nodegroup or Karpenter/Auto Mode labels."""
    it, cluster = node.instance, scenario.cluster
    zone_id = f"{cluster.region.replace('-', '')[:2]}{cluster.region.split('-')[1][:1]}{cluster.region[-1]}-" \
              f"{ZONE_IDS.get(node.zone[-1], 'az1')}"
    labels = {
        "kubernetes.io/arch": it.arch, "kubernetes.io/os": "linux", "kubernetes.io/hostname": node.name,
        "beta.kubernetes.io/arch": it.arch, "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/instance-type": it.name, "node.kubernetes.io/instance-type": it.name,
        "topology.kubernetes.io/region": cluster.region, "topology.kubernetes.io/zone": node.zone,
        "failure-domain.beta.kubernetes.io/region": cluster.region,
        "failure-domain.beta.kubernetes.io/zone": node.zone, "topology.k8s.aws/zone-id": zone_id,
    }
    group = node.group
    if group.nodepool:
        prefix = "eks.amazonaws.com/" if cluster.auto_mode else "karpenter.k8s.aws/"
        labels.update(instance_labels(it, prefix))
        nodeclass = next((p.nodeclass for p in scenario.nodepools if p.name == group.nodepool), "default")
        labels.update({"karpenter.sh/nodepool": group.nodepool, "karpenter.sh/capacity-type": group.capacity_type,
                       "karpenter.sh/initialized": "true", "karpenter.sh/registered": "true"})
        if cluster.auto_mode:
            labels.update({"eks.amazonaws.com/compute-type": "auto", "eks.amazonaws.com/nodeclass": nodeclass})
        else:
            labels["karpenter.k8s.aws/ec2nodeclass"] = nodeclass
    else:
        nodegroup = group.name_prefix or f"ng-{it.family}"
        labels.update({"eks.amazonaws.com/nodegroup": nodegroup,
                       "eks.amazonaws.com/capacityType": group.capacity_type.upper().replace("-", "_"),
                       "eks.amazonaws.com/nodegroup-image": "ami-0c5f4e1b9c3d2a1e0"})
    labels.update(group.labels)
    return labels


def node_object(scenario: Scenario, node: NodeSpec, instance_id: str | None = None,
                now: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """The v1 Node of a seeded (already registered, Ready) node. GPU/EFA capacity and allocatable are
    left to the device plugin controller, which publishes them once the plugin pod is Ready."""
    untainted = any(node.name in scenario.fault_nodes(f) for f in scenario.faults_for("taint-missing"))
    taints = [] if untainted else [t.to_k8s() for t in node.taints]
    iid = instance_id or node.instance_id
    if node.group.ready_minutes_ago is not None:   # a node that booted (turned Ready) that long ago
        now = rfc3339((parse_rfc3339(now) or 0.0) - node.group.ready_minutes_ago * 60)
    conditions = [
        {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
    conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                       "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                       "lastTransitionTime": now})
    spec: dict[str, Any] = {"providerID": f"aws:///{node.zone}/{iid}"}
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": node_labels(scenario, node),
                     "annotations": {"alpha.kubernetes.io/provided-node-ip": node.private_ip,
                                     "node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {"capacity": node.instance.capacity(), "allocatable": node.instance.allocatable(),
                   "conditions": conditions,
                   "addresses": [{"type": "InternalIP", "address": node.private_ip},
                                 {"type": "InternalDNS", "address": node.name},
                                 {"type": "Hostname", "address": node.name}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                   "nodeInfo": node_info(scenario, node)},
    }


def crd_keys(scenario: Scenario) -> list[str]:
    """Store keys of the custom resources this scenario's cluster has installed."""
    keys = ["nodepools.karpenter.sh", "nodeclaims.karpenter.sh"]
    keys.append("nodeclasses.eks.amazonaws.com" if scenario.cluster.auto_mode else "ec2nodeclasses.karpenter.k8s.aws")
    if scenario.operators.mpi_operator:
        keys.append("mpijobs.kubeflow.org")
    if _gpu_operator(scenario):
        keys.append("clusterpolicies.nvidia.com")
    return keys


def _gpu_operator(scenario: Scenario) -> bool:
    return scenario.operators.gpu_operator.installed or scenario.operators.nvidia_device_plugin == "gpu-operator"


def namespaces(scenario: Scenario) -> list[str]:
    out = [] if scenario.cluster.auto_mode else ["karpenter"]
    if scenario.operators.nvidia_device_plugin == "helm":
        out.append("nvidia-device-plugin")
    if _gpu_operator(scenario):
        out.append("gpu-operator")
    if scenario.operators.mpi_operator:
        out.append("mpi-operator")
    return out


def _daemonset(name: str, namespace: str, labels: Mapping[str, str], selector: Mapping[str, str], image: str,
               tolerations: list[dict[str, str]], *, affinity_types: list[str] | None = None,
               host_network: bool = False, env: list[dict[str, str]] | None = None,
               not_nodegroups: list[str] | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [{"name": name.replace("-daemonset", "").replace("nvdp-", "")[:63], "image": image,
                        "env": env or [], "securityContext": {"allowPrivilegeEscalation": False,
                                                              "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}]}],
        "tolerations": tolerations, "priorityClassName": "system-node-critical",
        "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
    }
    if host_network:
        pod_spec["hostNetwork"] = True
    if affinity_types:
        expressions: list[dict[str, Any]] = [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": affinity_types}]
        if not_nodegroups:
            expressions.append({"key": "eks.amazonaws.com/nodegroup", "operator": "NotIn", "values": not_nodegroups})
        pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": expressions}]}}}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(selector)},
                     "updateStrategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {**labels, **selector}}, "spec": pod_spec}}}


def daemonsets(scenario: Scenario) -> list[dict[str, Any]]:
    """The operator DaemonSets a scenario installs (their pods come from the DaemonSet controller)."""
    ops, out = scenario.operators, []
    gpu_types = sorted(n for n, t in INSTANCE_TYPES.items() if t.is_gpu)
    efa_types = sorted(n for n, t in INSTANCE_TYPES.items() if t.efa_supported)
    # The plugin's env as its manifests render it by default: no FAIL_ON_INIT_ERROR, so --fail-on-init-error keeps its
    # default true (NVIDIA/k8s-device-plugin@1b826acc cmd/nvidia-device-plugin/main.go; the Helm chart sets the env
    # only when values.failOnInitError is a bool, deployments/helm/.../daemonset-device-plugin.yml): a plugin that
    # starts before the driver is ready exits and the kubelet restarts it.
    plugin_env: list[dict[str, str]] = []
    # A cluster mixing AMIs keeps the NVIDIA plugin DaemonSet off its Bottlerocket nodes, whose host runs the plugin
    # (bottlerocket.dev settings.kubelet-device-plugins): a NotIn on their node groups in the chart's affinity.
    hosted = sorted({node_labels(scenario, n).get("eks.amazonaws.com/nodegroup", "") for n in scenario.expand_nodes()
                     if bottlerocket(scenario, n.group) and n.instance.is_gpu} - {""})
    if ops.nvidia_device_plugin == "helm":
        helm = {"app.kubernetes.io/instance": "nvdp", "app.kubernetes.io/managed-by": "Helm",
                "helm.sh/chart": "nvidia-device-plugin-0.17.1", "app.kubernetes.io/version": "0.17.1"}
        out.append(_daemonset("nvdp-nvidia-device-plugin", "nvidia-device-plugin", helm,
                              {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": "nvdp"},
                              DEVICE_PLUGIN_IMAGE, [CRITICAL, GPU_TAINT], affinity_types=gpu_types, env=plugin_env,
                              not_nodegroups=hosted))
        if ops.gpu_feature_discovery:
            out.append(_daemonset("nvdp-gpu-feature-discovery", "nvidia-device-plugin", helm,
                                  {"app.kubernetes.io/name": "gpu-feature-discovery",
                                   "app.kubernetes.io/instance": "nvdp"},
                                  DEVICE_PLUGIN_IMAGE, [CRITICAL, GPU_TAINT], affinity_types=gpu_types))
    elif ops.nvidia_device_plugin == "static":
        out.append(_daemonset("nvidia-device-plugin-daemonset", "kube-system", {},
                              {"name": "nvidia-device-plugin-ds"}, DEVICE_PLUGIN_IMAGE, [GPU_TAINT], env=plugin_env))
        if ops.gpu_feature_discovery:
            out.append(_daemonset("gpu-feature-discovery", "kube-system", {}, {"app.kubernetes.io/name":
                                  "gpu-feature-discovery"}, DEVICE_PLUGIN_IMAGE, [GPU_TAINT], affinity_types=gpu_types))
    if _gpu_operator(scenario):
        operator = {"app.kubernetes.io/managed-by": "gpu-operator", "helm.sh/chart": "gpu-operator-v25.3.0"}
        out.append(_daemonset("nvidia-device-plugin-daemonset", "gpu-operator", operator,
                              {"app": "nvidia-device-plugin-daemonset"}, DEVICE_PLUGIN_IMAGE, [GPU_TAINT],
                              affinity_types=gpu_types, env=plugin_env))
        out.append(_daemonset("gpu-feature-discovery", "gpu-operator", operator, {"app": "gpu-feature-discovery"},
                              DEVICE_PLUGIN_IMAGE, [GPU_TAINT], affinity_types=gpu_types))
        # The operator's validator: Ready on a node once driver, toolkit, CUDA and plugin validations passed.
        out.append(_daemonset("nvidia-operator-validator", "gpu-operator", operator, {"app": "nvidia-operator-validator"},
                              OPERATOR_VALIDATOR_IMAGE, [GPU_TAINT], affinity_types=gpu_types))
    efa = ops.efa_device_plugin
    if efa.installed:
        tolerate = efa.tolerates_gpu_taint and not scenario.has_fault("efa-plugin-untolerated")
        tolerations = [CRITICAL, {"key": "aws.amazon.com/efa", "operator": "Exists", "effect": "NoSchedule"}]
        if tolerate:
            tolerations.append(GPU_TAINT)
        out.append(_daemonset("aws-efa-k8s-device-plugin-daemonset", "kube-system",
                              {"app.kubernetes.io/name": "aws-efa-k8s-device-plugin"},
                              {"name": "aws-efa-k8s-device-plugin"},
                              EFA_PLUGIN_IMAGE.format(region=scenario.cluster.region), tolerations,
                              affinity_types=efa_types, host_network=True))
    return out


def cluster_policy(scenario: Scenario) -> dict[str, Any]:
    """GPU Operator `cluster-policy` with the scenario's state (`ready`, `notReady`)."""
    state = scenario.operators.gpu_operator.state
    return {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "metadata": {"name": "cluster-policy"},
            "spec": {"driver": {"enabled": False}, "toolkit": {"enabled": True},
                     "devicePlugin": {"enabled": True}, "gfd": {"enabled": True}, "mig": {"strategy": "single"}},
            "status": {"state": state, "namespace": "gpu-operator",
                       "conditions": [{"type": "Ready", "status": "True" if state == "ready" else "False",
                                       "reason": "Reconciled" if state == "ready" else "OperandNotReady",
                                       "message": "" if state == "ready" else "ClusterPolicy is not ready",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def _nodepool_status(manifest: dict[str, Any]) -> dict[str, Any]:
    conditions = [{"type": t, "status": "True", "reason": t, "message": "",
                   "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
                  for t in ("NodeClassReady", "NodeRegistrationHealthy", "Ready", "ValidationSucceeded")]
    return {**manifest, "status": {"conditions": conditions, "resources": {"cpu": "0", "memory": "0",
                                                                          "nodes": "0", "pods": "0"}}}


def seed_store(store: Any, scenario: Scenario, aws: Any | None = None) -> None:
    """Create the scenario's initial objects in `store` (run once, on the sim loop).

    `aws`: the AWS simulation (or None); its `instance_ids` (node name -> moto instance id) replace
    the derived instance ids in providerIDs so EC2 and the cluster agree.
    """
    ids: dict[str, str] = dict(getattr(aws, "instance_ids", None) or {}) if aws is not None else {}
    for ns in namespaces(scenario):
        store.ensure("namespaces", {"metadata": {"name": ns}})
    for key in crd_keys(scenario):
        store.ensure(CRD_KEY, crd_manifest(key))
    now = rfc3339(store.clock())
    for node in scenario.expand_nodes():
        store.create("nodes", node_object(scenario, node, ids.get(node.name), now=now))
    class_key = "nodeclasses.eks.amazonaws.com" if scenario.cluster.auto_mode else "ec2nodeclasses.karpenter.k8s.aws"
    for nodeclass in scenario.nodeclasses:
        store.create(class_key, nodeclass.manifest(scenario.cluster))
    for pool in scenario.nodepools:
        store.create("nodepools.karpenter.sh", _nodepool_status(pool.manifest(scenario.cluster)))
    for ds in daemonsets(scenario):
        store.create("daemonsets.apps", ds)
    if _gpu_operator(scenario):
        store.create("clusterpolicies.nvidia.com", cluster_policy(scenario))
