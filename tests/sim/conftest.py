"""Fixtures for the simulated apiserver's tests: a small cluster created straight into the store, and clients for it."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from kubernetes import client, config

from pytest_gpucluster.sim.launcher import SimCluster
from pytest_gpucluster.sim.store import Store

KUBECTL = shutil.which("kubectl")
NODE_INFO = {"architecture": "amd64", "bootID": "0c1d", "containerRuntimeVersion": "containerd://1.7.27",
             "kernelVersion": "6.1.132-147.221.amzn2023.x86_64", "kubeProxyVersion": "v1.32.3-eks-4096722",
             "kubeletVersion": "v1.32.3-eks-4096722", "machineID": "ec2a", "operatingSystem": "linux",
             "osImage": "Amazon Linux 2023.7.20250414", "systemUUID": "ec2a"}
GPU_NODE = "ip-10-0-3-17.us-west-2.compute.internal"
CPU_NODE = "ip-10-0-1-5.us-west-2.compute.internal"
LOG_POD = "nvidia-smi-probe"


def make_node(name: str, instance_type: str, *, gpus: int = 0, taints: list[dict[str, str]] | None = None,
              ip: str = "10.0.0.1") -> dict[str, Any]:
    """A Node as an EKS kubelet registers it (complete enough for the typed Python client)."""
    resources = {"cpu": "192" if gpus else "4", "memory": "2097152Ki", "pods": "110"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
        resources["vpc.amazonaws.com/efa"] = "32"
    ts = "2026-01-01T00:00:00Z"
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "node.kubernetes.io/instance-type": instance_type,
                                              "topology.kubernetes.io/zone": "us-west-2a"}},
        "spec": {"providerID": f"aws:///us-west-2a/i-0{abs(hash(name)) % 10**16:016d}", "taints": taints or []},
        "status": {"capacity": resources, "allocatable": dict(resources), "nodeInfo": NODE_INFO,
                   "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status", "lastHeartbeatTime": ts,
                                   "lastTransitionTime": ts}]},
    }


def populate(store: Store) -> None:
    """Two nodes, a NodePool and NodeClaim, and a finished pod with a log file (written by the fixture)."""
    store.create("nodes", make_node(GPU_NODE, "p5.48xlarge", gpus=8, ip="10.0.3.17",
                                    taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]))
    store.create("nodes", make_node(CPU_NODE, "m6i.xlarge", ip="10.0.1.5"))
    store.create("nodepools.karpenter.sh", {"metadata": {"name": "gpu"}, "spec": {"template": {"spec": {
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
        "requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p5"]}]}}}})
    store.create("nodeclaims.karpenter.sh", {"metadata": {"name": "gpu-x9wxq", "labels": {
        "karpenter.sh/nodepool": "gpu", "node.kubernetes.io/instance-type": "p5.48xlarge",
        "karpenter.sh/capacity-type": "on-demand", "topology.kubernetes.io/zone": "us-west-2a"}},
        "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}},
        "status": {"nodeName": GPU_NODE, "conditions": [{"type": "Ready", "status": "True"}]}})
    pod = store.create("pods", {"metadata": {"name": LOG_POD, "namespace": "default", "labels": {"app": "probe"}},
                                "spec": {"nodeName": GPU_NODE, "restartPolicy": "Never", "containers": [
                                    {"name": "main", "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
                                     "command": ["nvidia-smi", "-L"]}]}})
    store.mutate("pods", "default", LOG_POD, lambda p: p["status"].update({
        "phase": "Succeeded", "containerStatuses": [{
            "name": "main", "ready": False, "restartCount": 0, "image": "cuda", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}))
    store.record_event(pod, "Scheduled", f"Successfully assigned default/{LOG_POD} to {GPU_NODE}")


def write_log(sim: SimCluster, namespace: str, pod: str, container: str, text: str) -> Path:
    path = sim.workdir / "logs" / f"{namespace}_{pod}" / f"{container}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text)
    return path


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    cluster = SimCluster(None, setup=populate, bookmark_interval=0.2)
    with cluster:
        write_log(cluster, "default", LOG_POD, "main",
                  "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d})\n" for i in range(8)))
        yield cluster


@pytest.fixture(scope="module")
def api_client(sim: SimCluster) -> client.ApiClient:
    return config.new_client_from_config(str(sim.kubeconfig_path))


@pytest.fixture(scope="module")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def world() -> SimpleNamespace:
    """Names of the objects `populate` creates, and the log writer (tests/ is not a package)."""
    return SimpleNamespace(gpu_node=GPU_NODE, cpu_node=CPU_NODE, log_pod=LOG_POD, write_log=write_log,
                           make_node=make_node, populate=populate)
