"""Probe pods and fleets against the simulated cluster over HTTP, through the real kubernetes client."""
from __future__ import annotations

from typing import Iterator

import pytest

from pytest_gpucluster.kube import cleanup, errors
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.discovery import Inventory, discover
from pytest_gpucluster.kube.fleets import FleetRunner
from pytest_gpucluster.kube.watching import eventually
from pytest_gpucluster.kube.probes import MANAGED_BY, RUN_LABEL, ProbeContext, ProbeSpec
from pytest_gpucluster.profile import Profile, load_profile
from pytest_gpucluster.session import new_run_id

launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")

SMI = ["sh", "-c", "nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    cluster = launcher.SimCluster("healthy", workdir=tmp_path_factory.mktemp("sim")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cluster(sim: object) -> Iterator[Cluster]:
    client = Cluster.connect(sim.kubeconfig_path)  # type: ignore[attr-defined]
    yield client
    client.close()


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile()


@pytest.fixture(scope="module")
def inventory(cluster: Cluster, profile: Profile) -> Inventory:
    # The device plugins advertise GPUs/EFA a moment after the nodes register, as on a real cluster.
    eventually(cluster, "nodes", None, lambda nodes: sum(
        int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")) for n in nodes.values()) == 16,
        timeout_s=30, description="16 GPUs allocatable")
    return discover(cluster, profile)


@pytest.fixture
def ctx(cluster: Cluster, profile: Profile) -> Iterator[ProbeContext]:
    run_id = new_run_id()
    namespace = f"gpucluster-{run_id}"
    cluster.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id}}})
    context = ProbeContext(namespace=namespace, run_id=run_id, cuda_image="nvidia/cuda:13.0.2-runtime-ubuntu22.04",
                           timeout_s=60, gpu_tolerations=profile.gpu_tolerations())
    yield context
    report = cleanup.teardown_run(cluster, run_id, namespace, delete_namespace=True, verify_timeout_s=10)
    assert report.clean, report.leftovers


def test_discovery_finds_the_scenario_nodes(inventory: Inventory) -> None:
    assert [n.instance_type for n in inventory.gpu_nodes] == ["p5.48xlarge", "p5.48xlarge"]
    assert len(inventory.cpu_nodes) == 2 and len(inventory.efa_nodes) == 2
    gpu = inventory.gpu_nodes[0]
    assert gpu.gpus_allocatable == 8 and gpu.efa_allocatable == 32 and gpu.ready
    assert gpu.nodepool == "gpu" and gpu.provider_id and gpu.id.endswith("/p5.48xlarge")
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu.taints)
    assert inventory.summary_lines()[0].startswith("nodes: 4 total; GPU 2 (p5.48xlarge x2)")


def test_one_probe_runs_to_completion_on_its_node(cluster: Cluster, ctx: ProbeContext, inventory: Inventory) -> None:
    node = inventory.gpu_nodes[0].name
    result = FleetRunner(cluster, ctx).run("one", {node: ProbeSpec("nvidia-smi", SMI, node=node, gpus=8)})[node]
    assert result.ok, result.describe()
    assert result.node == node and result.exit_code == 0
    assert len(result.logs.strip().splitlines()) == 8 and "H100" in result.logs
    assert {"created", "started", "finished"} <= set(result.timings)
    assert any(e.get("reason") == "Scheduled" for e in result.events)


def test_a_fleet_covers_every_gpu_node_with_bounded_requests(sim: object, cluster: Cluster, ctx: ProbeContext,
                                                             inventory: Inventory) -> None:
    specs = {n.name: ProbeSpec("nvidia-smi", SMI, node=n.name, gpus=n.gpus_allocatable) for n in inventory.gpu_nodes}
    before = cluster.request_count
    results = FleetRunner(cluster, ctx).run("fleet", specs)
    used = cluster.request_count - before
    assert set(results) == set(specs)
    assert all(r.ok for r in results.values()), [r.describe() for r in results.values()]
    assert {r.node for r in results.values()} == set(specs)
    # creates + logs per pod, then a constant: one list, a few watch requests, one event list.
    assert used <= 2 * len(specs) + 6, used


def test_unschedulable_probe_reports_the_scheduler_message(cluster: Cluster, ctx: ProbeContext,
                                                           inventory: Inventory) -> None:
    node = inventory.gpu_nodes[0].name
    spec = ProbeSpec("too-many-gpus", SMI, node=node, gpus=64, timeout_s=3)
    result = FleetRunner(cluster, ctx).run("unsched", {node: spec})[node]
    assert not result.ok and result.reason == "Unschedulable"
    assert result.pending_reason and "nvidia.com/gpu" in result.pending_reason
    assert cluster.get_or_none("pods", result.pod, ctx.namespace) is None   # stuck pods are removed at once


def test_gpu_taint_without_toleration_keeps_the_probe_off_gpu_nodes(cluster: Cluster, ctx: ProbeContext,
                                                                    inventory: Inventory) -> None:
    node = inventory.gpu_nodes[0].name
    spec = ProbeSpec("untolerated", ["sh", "-c", "true"], node=node, tolerate_gpu=False, timeout_s=3)
    result = FleetRunner(cluster, ctx).run("taint", {node: spec})[node]
    assert result.reason == "Unschedulable" and "taint" in (result.pending_reason or "")


def test_image_pull_failure_is_reported_at_once_naming_the_image(cluster: Cluster, ctx: ProbeContext,
                                                                 inventory: Inventory) -> None:
    node = inventory.cpu_nodes[0].name
    spec = ProbeSpec("bad-image", ["sh", "-c", "true"], node=node, image="example.com/does-not-exist:1",
                     timeout_s=30)
    result = FleetRunner(cluster, ctx).run("pull", {node: spec})[node]
    assert result.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "example.com/does-not-exist:1" in (result.message or "")
    assert result.timings.get("created") is not None


def test_failing_command_keeps_exit_code_and_logs(cluster: Cluster, ctx: ProbeContext, inventory: Inventory) -> None:
    node = inventory.cpu_nodes[0].name
    spec = ProbeSpec("fails", ["sh", "-c", "echo about to fail; exit 3"], node=node, tolerate_gpu=False)
    result = FleetRunner(cluster, ctx).run("fails", {node: spec})[node]
    assert result.phase == "Failed" and result.exit_code == 3 and "about to fail" in result.logs


def test_creates_are_idempotent(cluster: Cluster, ctx: ProbeContext) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "gc-idempotent", "labels": {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: ctx.run_id}}, "data": {"a": "1"}}
    first = cluster.create("configmaps", body, ctx.namespace)
    second = cluster.create("configmaps", body, ctx.namespace)
    assert first["metadata"]["uid"] == second["metadata"]["uid"]
    with pytest.raises(errors.AlreadyExists):
        cluster.create("configmaps", body, ctx.namespace, exist_ok=False)


def test_teardown_deletes_by_label_and_verifies(cluster: Cluster, profile: Profile, inventory: Inventory) -> None:
    run_id = new_run_id()
    namespace = f"gpucluster-{run_id}"
    cluster.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id}}})
    ctx = ProbeContext(namespace, run_id, "nvidia/cuda:13.0.2-runtime-ubuntu22.04", 30, profile.gpu_tolerations(),
                       keep=True)
    node = inventory.cpu_nodes[0].name
    FleetRunner(cluster, ctx).run("leave", {node: ProbeSpec("sleeper", ["sh", "-c", "sleep 30"], node=node,
                                                            timeout_s=1)})
    assert cluster.items("pods", namespace, label_selector=cleanup.run_selector(run_id))   # kept (keep=True)
    report = cleanup.teardown_run(cluster, run_id, namespace, delete_namespace=True, verify_timeout_s=10)
    assert report.clean, report.leftovers
    assert f"namespaces/{namespace}" in report.deleted
    assert not cluster.items("pods", namespace, label_selector=cleanup.run_selector(run_id))
