"""SimCluster: start time, kubeconfig, loop access and controller error propagation."""
from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from pytest_gpucluster.sim.launcher import SimCluster, SimClusterError


def test_empty_cluster_starts_well_under_a_second_and_writes_kubeconfig(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with SimCluster(None, workdir=tmp_path) as sim:
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0, f"start took {elapsed:.3f}s"
        kc = yaml.safe_load(sim.kubeconfig_path.read_text())
        assert stat.S_IMODE(sim.kubeconfig_path.stat().st_mode) == 0o600
        assert kc["current-context"] == "sim-empty"
        cluster = kc["clusters"][0]["cluster"]
        assert cluster["server"] == sim.server_url and sim.server_url.startswith("https://127.0.0.1:")
        assert cluster["certificate-authority-data"] and kc["users"][0]["user"]["token"]
        names = [n.metadata.name for n in client.CoreV1Api(
            config.new_client_from_config(str(sim.kubeconfig_path))).list_namespace().items]
        assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
        assert sim.aws_env == {}
    assert sim.errors() == []


def test_call_runs_on_the_loop_and_stats_count(tmp_path: Path) -> None:
    with SimCluster(None) as sim:
        sim.call(sim.store.create, "nodes", {"metadata": {"name": "n1"}})
        assert sim.stats()["nodes"] == 1
    with pytest.raises(SimClusterError, match="not running"):
        sim.call(lambda: None)


class Exploding:
    name = "exploding"

    async def run(self) -> None:
        raise RuntimeError("controller blew up")


def test_stop_reraises_a_controller_error() -> None:
    sim = SimCluster(None)
    sim.add_controller(Exploding())
    sim.start()
    time.sleep(0.05)
    with pytest.raises(SimClusterError, match="controller:exploding failed: RuntimeError: controller blew up"):
        sim.stop()


def test_missing_rbac_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SimClusterError, match="does not exist"):
        SimCluster(None, rbac=tmp_path / "nope.yaml").start()
