"""SimCluster: start time, kubeconfig, loop access and controller error propagation."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from pytest_gpucluster.sim_contract.handoff import MANIFEST, read_handoff
from pytest_gpucluster.sim.launcher import SimCluster, SimClusterError

ROOT = Path(__file__).resolve().parents[2]


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


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def test_write_handoff_hands_over_kubeconfig_aws_and_the_scenario_profile(tmp_path: Path) -> None:
    with SimCluster("healthy", workdir=tmp_path / "sim") as sim:
        manifest = sim.write_handoff(tmp_path / "handoff")
        handoff = read_handoff(manifest.parent)
        assert manifest.name == MANIFEST and handoff.scenario_name == "healthy"
        assert handoff.server_url == sim.server_url
        assert handoff.kubeconfig_path.read_bytes() == sim.kubeconfig_path.read_bytes()
        assert handoff.aws is not None and handoff.aws.as_env() == sim.aws_env
        assert sim.scenario is not None and handoff.profile_overlay == plain(sim.scenario.profile)


def test_write_handoff_needs_a_started_cluster(tmp_path: Path) -> None:
    with pytest.raises(SimClusterError, match="needs a started cluster"):
        SimCluster(None).write_handoff(tmp_path)


def sim_command(*args: str, module: str = "pytest_gpucluster.sim") -> list[str]:
    return [sys.executable, "-m", module, *args]


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def test_child_mode_prints_the_manifest_serves_and_stops_when_stdin_closes(tmp_path: Path) -> None:
    """How the plugin runs it: one stdout line (the manifest), then serving until its stdin closes."""
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen(sim_command("--child", "--scenario", "healthy", "--handoff", str(tmp_path / "h"),
                                            "--workdir", str(tmp_path / "work")),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=child_env())
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().decode().strip() == str(tmp_path / "h" / MANIFEST)
        handoff = read_handoff(tmp_path / "h")
        nodes = client.CoreV1Api(config.new_client_from_config(str(handoff.kubeconfig_path))).list_node().items
        assert len(nodes) == 4
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()
        assert proc.stdout.read() == b""          # nothing after the one line
        assert (tmp_path / "h" / MANIFEST).exists()   # a folder it was given stays (the plugin removes its workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_child_mode_start_failure_is_the_reason_on_stderr(tmp_path: Path) -> None:
    proc = subprocess.run(sim_command("--child", "--scenario", "no-such-scenario", "--handoff", str(tmp_path / "h")),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=child_env(), timeout=60,
                          check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("gpucluster sim: no-such-scenario: no scenario named 'no-such-scenario'; "
                                  "shipped scenarios: "), proc.stderr
    assert not (tmp_path / "h" / MANIFEST).exists()


def test_gpucluster_sim_prints_its_handoff_folder_and_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen(sim_command("sim", "--scenario", "healthy", "--kubeconfig-out", str(kubeconfig),
                                            module="pytest_gpucluster.cli"),
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        serving, folder_line, kubeconfig_line = (proc.stdout.readline().rstrip() for _ in range(3))
        assert re.fullmatch(r"gpucluster sim: scenario healthy serving https://127\.0\.0\.1:\d+ in \d+ ms, "
                            r"AWS API available \(moto\)", serving), serving
        match = re.fullmatch(r"gpucluster sim: hand-off folder (\S+) \(manifest handoff\.json\)", folder_line)
        assert match, folder_line
        folder = Path(match[1])
        assert read_handoff(folder).kubeconfig_path.read_bytes() == kubeconfig.read_bytes()
        assert kubeconfig_line == (f"gpucluster sim: kubeconfig {kubeconfig}  "
                                   f"(kubectl --kubeconfig {kubeconfig} get nodes)")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, (tmp_path / "stderr").read_text()
        assert rest.splitlines()[-1] == "gpucluster sim: stopped"
        assert not folder.exists()   # its own temporary hand-off folder goes with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
