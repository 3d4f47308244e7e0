"""Acceptance of the simulated apiserver by the real kubectl: get, watch, describe, logs, apply; and the everyday
verbs (create, run, wait, delete, events) against the cluster `gpucluster sim --scenario healthy` serves."""
from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
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


# ----- the everyday verbs against `gpucluster sim --scenario healthy` (scheduler, kubelet, controllers) ---------------
@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    """The cluster `gpucluster sim --scenario healthy` serves, started as the CLI starts it (through SimCluster)."""
    with SimCluster("healthy", workdir=tmp_path_factory.mktemp("healthy")) as cluster:
        yield cluster


def client_minor() -> int:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return int("".join(ch for ch in json.loads(out)["clientVersion"]["minor"] if ch.isdigit()))


def delete_namespace(sim: SimCluster, name: str) -> None:
    """`kubectl delete namespace` waits until the namespace and everything in it is gone."""
    assert ok(kubectl(sim, "delete", "namespace", name, "--timeout=60s", timeout=90)) == [f'namespace "{name}" deleted']
    gone = kubectl(sim, "get", "namespace", name)
    assert gone.returncode == 1 and f'namespaces "{name}" not found' in gone.stderr


def test_create_namespace_run_wait_logs_delete(healthy: SimCluster) -> None:
    assert ok(kubectl(healthy, "create", "namespace", "x")) == ["namespace/x created"]
    assert ok(kubectl(healthy, "-n", "x", "run", "p", "--image=busybox", "--restart=Never", "--command", "--",
                      "sh", "-c", "echo hi")) == ["pod/p created"]
    assert ok(kubectl(healthy, "-n", "x", "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/p",
                      "--timeout=60s", timeout=90)) == ["pod/p condition met"]
    assert ok(kubectl(healthy, "-n", "x", "logs", "p")) == ["hi"]
    delete_namespace(healthy, "x")


def test_run_args_go_to_the_image_entrypoint(healthy: SimCluster) -> None:
    ok(kubectl(healthy, "create", "namespace", "args"))
    try:
        ok(kubectl(healthy, "-n", "args", "run", "p", "--image=busybox", "--restart=Never", "--", "sh", "-c",
                   "echo hi"))
        ok(kubectl(healthy, "-n", "args", "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/p",
                   "--timeout=8s", timeout=30))
        assert ok(kubectl(healthy, "-n", "args", "logs", "p")) == ["hi"]
    finally:
        ok(kubectl(healthy, "delete", "namespace", "args", "--wait=false"))


def test_typed_creates_send_protobuf_and_land_as_sent(healthy: SimCluster) -> None:
    """kubectl >= 1.32 sends these through client-go's typed clients, as application/vnd.kubernetes.protobuf."""
    ok(kubectl(healthy, "create", "namespace", "typed"))
    verbose = kubectl(healthy, "-n", "typed", "create", "secret", "generic", "s", "--from-literal=pw=s3cr\u00e9t",
                      "-v=8")
    assert ok(verbose) == ["secret/s created"]
    if client_minor() >= 32:
        assert "Content-Type: application/vnd.kubernetes.protobuf" in verbose.stderr
    for args, printed in [
        (["create", "configmap", "c", "--from-literal=a=1"], "configmap/c created"),
        (["create", "serviceaccount", "sa"], "serviceaccount/sa created"),
        (["create", "service", "clusterip", "svc", "--tcp=443:https"], "service/svc created"),
        (["create", "role", "r", "--verb=get", "--resource=pods"], "role.rbac.authorization.k8s.io/r created"),
        (["create", "rolebinding", "rb", "--role=r", "--serviceaccount=typed:sa"],
         "rolebinding.rbac.authorization.k8s.io/rb created"),
        (["create", "job", "j", "--image=busybox", "--", "sh", "-c", "echo job"], "job.batch/j created"),
    ]:
        assert ok(kubectl(healthy, "-n", "typed", *args)) == [printed]

    def get(kind: str, name: str, path: str) -> str:
        return "\n".join(ok(kubectl(healthy, "-n", "typed", "get", kind, name, "-o", f"jsonpath={path}")))
    assert base64.b64decode(get("secret", "s", "{.data.pw}")).decode() == "s3cr\u00e9t"
    assert get("configmap", "c", "{.data.a}") == "1"
    assert get("service", "svc", "{.spec.ports[0].targetPort}") == "https"
    assert get("rolebinding", "rb", "{.subjects[0].name}/{.roleRef.name}") == "sa/r"
    assert ok(kubectl(healthy, "-n", "typed", "wait", "--for=condition=Complete", "job/j", "--timeout=60s",
                      timeout=90)) == ["job.batch/j condition met"]
    delete_namespace(healthy, "typed")


APPLIED = """apiVersion: v1
kind: Namespace
metadata: {name: applied}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: applied, labels: {app: sleeper}}
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, "echo started; sleep 3600"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: applied}
data: {mode: fast}
"""


def test_apply_create_wait_ready_describe_events(healthy: SimCluster, tmp_path: Path) -> None:
    manifest = tmp_path / "applied.yaml"
    manifest.write_text(APPLIED)
    assert ok(kubectl(healthy, "apply", "-f", str(manifest))) == [
        "namespace/applied created", "pod/sleeper created", "configmap/settings created"]
    assert ok(kubectl(healthy, "-n", "applied", "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s",
                      timeout=90)) == ["pod/sleeper condition met"]
    assert ok(kubectl(healthy, "apply", "-f", str(manifest))) == [
        "namespace/applied unchanged", "pod/sleeper unchanged", "configmap/settings unchanged"]
    described = ok(kubectl(healthy, "-n", "applied", "describe", "pod", "sleeper"))
    assert "Status:           Running" in described and "Labels:           app=sleeper" in described
    events = described[described.index("Events:"):]
    assert any(line.split()[:2] == ["Normal", "Started"] and "Started container main" in line for line in events)
    listed = ok(kubectl(healthy, "-n", "applied", "get", "events"))
    reason = listed[0].index("REASON")
    assert any(row[reason:].split()[:2] == ["Started", "pod/sleeper"] for row in listed[1:]), listed
    assert ok(kubectl(healthy, "-n", "applied", "logs", "sleeper")) == ["started"]
    extra = tmp_path / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: applied}\n")
    assert ok(kubectl(healthy, "create", "-f", str(extra))) == ["configmap/extra created"]
    again = kubectl(healthy, "create", "-f", str(extra))
    assert again.returncode == 1 and 'configmaps "extra" already exists' in again.stderr
    delete_namespace(healthy, "applied")


def test_apply_server_side_owns_removes_and_conflicts(healthy: SimCluster, tmp_path: Path) -> None:
    manifest = tmp_path / "ssa.yaml"

    def applied(labels: str, data: str, *flags: str) -> subprocess.CompletedProcess[str]:
        manifest.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: default, "
                            f"labels: {{{labels}}}}}\ndata: {{{data}}}\n")
        return kubectl(healthy, "apply", "--server-side", *flags, "-f", str(manifest))

    def get(path: str) -> str:
        return "\n".join(ok(kubectl(healthy, "get", "configmap", "cfg", "-o", f"jsonpath={path}")))
    assert ok(applied("app: x, tier: web", "mode: fast")) == ["configmap/cfg serverside-applied"]
    version = get("{.metadata.resourceVersion}")
    assert ok(applied("app: x, tier: web", "mode: fast")) == ["configmap/cfg serverside-applied"]
    assert get("{.metadata.resourceVersion}") == version                     # nothing changed, nothing written
    ok(applied("app: x", "mode: slow"))
    assert get("{.metadata.labels}") == '{"app":"x"}' and get("{.data.mode}") == "slow"   # tier left: removed
    refused = applied("app: x", "mode: fast", "--field-manager=ci")
    assert refused.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .data.mode' in refused.stderr
    ok(applied("app: x", "mode: fast", "--field-manager=ci", "--force-conflicts"))
    assert get("{.data.mode}") == "fast"
    ok(kubectl(healthy, "delete", "configmap", "cfg"))


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="the sim's Event table puts a priority-0 Name column first; kube-apiserver lists Name last "
                          "at priority 1 (pkg/printers/internalversion/printers.go eventColumnDefinitions), so kubectl "
                          "shows no NAME column")
def test_get_events_prints_the_columns_kube_apiserver_serves(healthy: SimCluster) -> None:
    assert ok(kubectl(healthy, "-n", "kube-system", "get", "events"))[0].split() == [
        "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def test_get_pods_watch_prints_a_pod_as_it_runs(healthy: SimCluster) -> None:
    assert KUBECTL is not None
    ok(kubectl(healthy, "create", "namespace", "watched"))
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(healthy.kubeconfig_path), "-n", "watched", "get", "pods",
                             "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore
    reader.start()
    try:
        ok(kubectl(healthy, "-n", "watched", "run", "w1", "--image=busybox", "--restart=Never", "--command", "--",
                   "sh", "-c", "echo hi"))
        deadline = time.monotonic() + 30
        seen: list[list[str]] = []
        while not any(row[:1] == ["w1"] and row[2:3] == ["Completed"] for row in seen):
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())).split())
        assert seen[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert len([row for row in seen if row[:1] == ["w1"]]) >= 2  # at least one update after the first row
    finally:
        proc.kill()
        proc.wait(timeout=10)
    delete_namespace(healthy, "watched")
