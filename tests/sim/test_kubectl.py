"""Acceptance of the simulated apiserver by the real kubectl: get, watch, describe, logs, apply."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_gpucluster.sim.launcher import SimCluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl(sim: SimCluster, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_get_nodes_prints_kubectl_columns(sim: SimCluster, world: SimpleNamespace) -> None:
    lines = ok(kubectl(sim, "get", "nodes"))
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[world.gpu_node][1:3] == ["Ready", "<none>"] and rows[world.gpu_node][-1] == "v1.32.3-eks-4096722"
    wide = ok(kubectl(sim, "get", "nodes", "-o", "wide", "-l", "node.kubernetes.io/instance-type=p5.48xlarge"))
    assert "INTERNAL-IP" in wide[0] and "10.0.3.17" in wide[1] and len(wide) == 2


def test_get_nodepools_and_crds(sim: SimCluster) -> None:
    lines = ok(kubectl(sim, "get", "nodepools"))
    assert lines[0].split() == ["NAME", "NODECLASS", "NODES", "READY", "AGE"] and lines[1].split()[:2] == ["gpu", "gpu"]
    assert any(line.startswith("nodeclaims.karpenter.sh") for line in ok(kubectl(sim, "get", "crd")))


def test_get_nodeclaims_watch_prints_rows_as_they_change(sim: SimCluster, world: SimpleNamespace) -> None:
    assert KUBECTL is not None
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), "get", "nodeclaims", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        header, first = proc.stdout.readline(), proc.stdout.readline()
        assert header.split() == ["NAME", "TYPE", "CAPACITY", "ZONE", "NODE", "READY", "AGE"]
        assert first.split()[:6] == ["gpu-x9wxq", "p5.48xlarge", "on-demand", "us-west-2a", world.gpu_node, "True"]
        sim.call(sim.store.create, "nodeclaims.karpenter.sh", {"metadata": {"name": "gpu-new", "labels": {
            "node.kubernetes.io/instance-type": "p5.48xlarge"}}, "spec": {}})
        added = proc.stdout.readline()
        assert added.split()[:2] == ["gpu-new", "p5.48xlarge"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_describe_node_shows_taints_allocatable_and_pods(sim: SimCluster, world: SimpleNamespace) -> None:
    text = "\n".join(ok(kubectl(sim, "describe", "node", world.gpu_node)))
    assert f"Name:               {world.gpu_node}" in text
    assert "Taints:             nvidia.com/gpu=present:NoSchedule" in text
    assert "nvidia.com/gpu:         8" in text and "vpc.amazonaws.com/efa:  32" in text


def test_logs(sim: SimCluster, world: SimpleNamespace) -> None:
    lines = ok(kubectl(sim, "logs", world.log_pod))
    assert len(lines) == 8 and lines[7].startswith("GPU 7: NVIDIA H100 80GB HBM3")
    assert ok(kubectl(sim, "logs", world.log_pod, "--tail=1")) == [lines[7]]
    missing = kubectl(sim, "logs", "nope")
    assert missing.returncode == 1 and 'pods "nope" not found' in missing.stderr


def test_apply_creates_then_patches(sim: SimCluster, tmp_path: Path) -> None:
    manifest = tmp_path / "ds.yaml"
    template = """apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: probe, namespace: default, labels: {{app: probe}}}}
spec:
  selector: {{matchLabels: {{app: probe}}}}
  template:
    metadata: {{labels: {{app: probe}}}}
    spec:
      containers:
      - {{name: main, image: "busybox:{tag}", env: [{{name: A, value: "1"}}]}}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: applied}}
spec: {{weight: {weight}}}
"""
    manifest.write_text(template.format(tag="1.36", weight=1))
    assert ok(kubectl(sim, "apply", "-f", str(manifest))) == ["daemonset.apps/probe created",
                                                             "nodepool.karpenter.sh/applied created"]
    manifest.write_text(template.format(tag="1.37", weight=5))
    assert ok(kubectl(sim, "apply", "-f", str(manifest))) == ["daemonset.apps/probe configured",
                                                             "nodepool.karpenter.sh/applied configured"]
    image = ok(kubectl(sim, "get", "ds", "probe", "-o", "jsonpath={.spec.template.spec.containers[0].image}"))
    weight = ok(kubectl(sim, "get", "nodepool", "applied", "-o", "jsonpath={.spec.weight}"))
    assert image == ["busybox:1.37"] and weight == ["5"]
    requests = sim.stats()["requests"]
    assert requests.get("patch daemonsets", 0) >= 1 and requests.get("patch nodepools", 0) >= 1
