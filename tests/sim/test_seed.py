"""seed_store: what a fresh simulated cluster holds for a scenario."""
from __future__ import annotations

from typing import Any

from pytest_gpucluster.sim.controllers.base import parse_rfc3339
from pytest_gpucluster.sim.scenario import load_scenario
from pytest_gpucluster.sim.seed import seed_store
from pytest_gpucluster.sim.store import Store


def _seeded(name: str, aws: Any = None) -> Store:
    store = Store()
    seed_store(store, load_scenario(name), aws)
    return store


def _names(store: Store, key: str, namespace: str | None = None) -> set[str]:
    return {o["metadata"]["name"] for o in store.list(key, namespace)[0]}


def test_healthy_seed() -> None:
    store = _seeded("healthy")
    assert {"karpenter", "nvidia-device-plugin", "mpi-operator", "kube-system"} <= _names(store, "namespaces")
    assert store.crds() >= {"nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "ec2nodeclasses.karpenter.k8s.aws",
                            "mpijobs.kubeflow.org"}
    assert "clusterpolicies.nvidia.com" not in store.crds()
    nodes = store.list("nodes")[0]
    assert len(nodes) == 4
    gpu = [n for n in nodes if n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "p5.48xlarge"]
    for node in gpu:
        labels = node["metadata"]["labels"]
        assert labels["karpenter.sh/nodepool"] == "gpu" and labels["karpenter.k8s.aws/instance-gpu-count"] == "8"
        assert labels["topology.kubernetes.io/zone"] == "us-west-2a"
        assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]       # until the device plugin is Ready
        assert node["status"]["nodeInfo"]["osImage"].startswith("Amazon Linux 2023")
        assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "InternalDNS", "Hostname"}
    assert _names(store, "nodepools.karpenter.sh") == {"gpu", "default"}
    nodeclass = store.get("ec2nodeclasses.karpenter.k8s.aws", None, "gpu")
    assert nodeclass["status"]["conditions"][0] == {**nodeclass["status"]["conditions"][0], "type": "Ready",
                                                    "status": "True"}
    ds = {d["metadata"]["name"]: d for d in store.list("daemonsets.apps")[0]}
    assert set(ds) == {"nvdp-nvidia-device-plugin", "nvdp-gpu-feature-discovery", "aws-efa-k8s-device-plugin-daemonset"}
    efa_tolerations = ds["aws-efa-k8s-device-plugin-daemonset"]["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in efa_tolerations


def test_auto_mode_seed_has_no_visible_plugins() -> None:
    store = _seeded("auto-mode")
    assert store.list("daemonsets.apps")[0] == []
    assert "nodeclasses.eks.amazonaws.com" in store.crds() and "ec2nodeclasses.karpenter.k8s.aws" not in store.crds()
    node = store.list("nodes")[0][0]
    assert node["metadata"]["labels"]["eks.amazonaws.com/compute-type"] == "auto"
    assert node["metadata"]["labels"]["eks.amazonaws.com/instance-gpu-name"] == "h100"
    assert node["status"]["nodeInfo"]["osImage"].startswith("Bottlerocket")


def test_fault_seeds() -> None:
    untainted = _seeded("taint-missing")
    scenario = load_scenario("taint-missing")
    target = scenario.fault_nodes(scenario.faults[0])[0]
    assert not untainted.get("nodes", None, target)["spec"].get("taints")
    other = next(n.name for n in scenario.gpu_nodes() if n.name != target)
    assert untainted.get("nodes", None, other)["spec"]["taints"]
    ds = _seeded("efa-plugin-untolerated").get("daemonsets.apps", "kube-system", "aws-efa-k8s-device-plugin-daemonset")
    assert all(t.get("key") != "nvidia.com/gpu" for t in ds["spec"]["template"]["spec"]["tolerations"])


def test_aws_instance_ids_become_provider_ids() -> None:
    scenario = load_scenario("healthy")
    first = scenario.expand_nodes()[0].name

    class Aws:
        instance_ids = {first: "i-0123456789abcdef0"}
    store = _seeded("healthy", Aws())
    assert store.get("nodes", None, first)["spec"]["providerID"] == "aws:///us-west-2a/i-0123456789abcdef0"


def test_scale_seed_builds_every_node() -> None:
    """scale-1000 seeds 1000 GPU nodes and the CPU nodes (how fast: benchmarks/sim_load.py, not a timed test)."""
    store = _seeded("scale-1000")
    assert store.count("nodes") == 1002


def test_nodes_turned_ready_minutes_ago_and_the_plugin_keeps_its_default_fail_on_init_error() -> None:
    """`ready_minutes_ago`: the node's Ready transition lies that far back (a fresh node right after provisioning);
    the device plugin's env leaves --fail-on-init-error at its upstream default (true)."""
    store = _seeded("fresh-nodes-plugin-restart")
    gpu = [n for n in store.list("nodes")[0] if "karpenter.sh/nodepool" in n["metadata"]["labels"]]
    ready = next(c for c in gpu[0]["status"]["conditions"] if c["type"] == "Ready")
    assert 178 <= store.clock() - (parse_rfc3339(ready["lastTransitionTime"]) or 0) <= 182
    plugin = store.get("daemonsets.apps", "nvidia-device-plugin", "nvdp-nvidia-device-plugin")
    assert plugin["spec"]["template"]["spec"]["containers"][0]["env"] == []


def test_a_bottlerocket_node_group_reports_its_os_and_the_helm_plugin_stays_off_it() -> None:
    store = _seeded("bottlerocket-mixed")
    images = sorted(n["status"]["nodeInfo"]["osImage"] for n in store.list("nodes")[0]
                    if "p5" in n["metadata"]["labels"]["node.kubernetes.io/instance-type"])
    assert images[0].startswith("Amazon Linux 2023") and images[-1] == "Bottlerocket OS 1.34.0 (aws-k8s-1.32-nvidia)"
    plugin = store.get("daemonsets.apps", "nvidia-device-plugin", "nvdp-nvidia-device-plugin")
    terms = plugin["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "eks.amazonaws.com/nodegroup", "operator": "NotIn", "values": ["ng-p5"]} in terms[0]["matchExpressions"]
