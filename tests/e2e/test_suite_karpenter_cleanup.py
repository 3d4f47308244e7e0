"""The costly Karpenter test leaves nothing behind: after a finished run and after a killed run (SIGKILL) followed by
the teardown-by-run-label that `gpucluster cleanup` performs, no NodePool, NodeClaim, node or pod of the run remains
on the simulated cluster (checked from outside the run). A run interrupted (SIGINT/SIGTERM) mid-launch is covered by
tests/reliability/test_interrupts.py (phase `karpenter`: no object of the run, nodes included, is left)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pytest_gpucluster.kube import cleanup
from pytest_gpucluster.kube.client import Cluster
from pytest_gpucluster.kube.probes import MANAGED_BY, RUN_LABEL
from pytest_gpucluster.kube.watching import eventually

launcher = pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available")

SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_karpenter.py"
MANAGED = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
BUDGETS = "{launched: 5, registered: 10, initialized: 15, total: 30}"
PROFILE = f"defaults:\n  provisioning_budget_s: {BUDGETS}\nfamilies:\n  p5:\n    provisioning_budget_s: {BUDGETS}\n"


@pytest.fixture
def cluster(sim: object) -> Iterator[Cluster]:
    client = Cluster.connect(sim.kubeconfig_path)  # type: ignore[attr-defined]
    yield client
    client.close()


def ours(cluster: Cluster) -> list[str]:
    """Everything labelled as ours, anywhere: NodePools, NodeClaims, nodes, pods."""
    found = []
    for kind in ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "nodes", "pods"):
        found += [f"{kind}/{o['metadata']['name']}" for o in cluster.items(kind, label_selector=MANAGED)]
    return found


@pytest.mark.parametrize("how", ["finished", "SIGKILL"])
# karpenter-slow: registration takes 20 s, a wide window to interrupt a launch in flight
@pytest.mark.sim_scenario("karpenter-slow")
def test_nothing_of_the_run_remains(sim: object, cluster: Cluster, tmp_path: Path, plugin_args: list[str],
                                    how: str) -> None:
    nodes_before = {n["metadata"]["name"] for n in cluster.items("nodes")}
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    cmd = [sys.executable, "-m", "pytest", str(SUITE), f"--kubeconfig={sim.kubeconfig_path}",  # type: ignore[attr-defined]
           "--gpucluster-costly", "-k", "test_gpu_node_provisioning_latency", "-p", "no:cacheprovider",
           "--gpucluster-no-report", f"--gpucluster-profile={profile}", "-q", *plugin_args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if how != "finished":
            claims = eventually(cluster, "nodeclaims.karpenter.sh", None, lambda objs: any(
                c.get("type") == "Launched" and c.get("status") == "True"
                for o in objs.values() for c in (o.get("status") or {}).get("conditions") or []),
                timeout_s=60, description="a launched NodeClaim of the run", label_selector=MANAGED)
            run_id = next(iter(claims.values()))["metadata"]["labels"][RUN_LABEL]
            proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "finished":
        assert "1 failed" in output and "registered 2" in output, output   # karpenter-slow breaks the budget
        assert "teardown clean: nothing labelled" in output, output
    else:
        assert proc.returncode == -signal.SIGKILL
        assert ours(cluster), "a killed run leaves its objects until a teardown by its run label"
        report = cleanup.teardown_run(cluster, run_id, f"gpucluster-{run_id}", delete_namespace=True,
                                      verify_timeout_s=30)
        assert report.clean, report.leftovers
        assert any(d.startswith("nodepools.karpenter.sh/gc-probe-") for d in report.deleted), report.deleted
    eventually(cluster, "nodes", None, lambda objs: set(objs) == nodes_before, timeout_s=30,
               description="the cluster's nodes as before the run")
    assert ours(cluster) == []
