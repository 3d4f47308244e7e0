"""Bad input gets a clear error, not a traceback: each case runs real suites in a subprocess and checks the message."""
from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_gpucluster.report.summary import INCOMPLETE_EXIT
from pytest_gpucluster.sim.launcher import SimCluster

from .conftest import labelled_objects, node_names, sim_target
from .suite_runs import ROOT, env_for_child

# A frame of our own code in pytest's long traceback: `pytest_gpucluster/kube/client.py:68: Forbidden`.
OWN_FRAME = re.compile(r"^(?:/\S+/)?pytest_gpucluster/\S+\.py:\d+: \w+", re.M)
TAINT_CHECK = ("suites/test_taints.py", "-k", "carries_gpu_taint")


def pytest_run(*args: str, timeout_s: float = 120) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
                           "--gpucluster-no-report"], cwd=ROOT, env=env_for_child(), capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def assert_clear(output: str, *expected: str) -> None:
    """Every expected fragment is in the output and no frame of pytest_gpucluster's own code is shown."""
    missing = [e for e in expected if e not in output]
    assert not missing, f"expected {missing} in the output:\n{output[-4000:]}"
    frame = OWN_FRAME.search(output)
    assert "Traceback (most recent call last)" not in output and frame is None, (
        f"a traceback instead of a clear error (first own frame: {frame.group(0) if frame else '-'}):\n"
        f"{output[-4000:]}")


def assert_usage_error(code: int, output: str, *expected: str) -> None:
    """Known before collection: one usage error (exit 4), at most 3 lines, no collection errors, no frames."""
    assert_clear(output, *expected)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == pytest.ExitCode.USAGE_ERROR, f"exit {code}, expected 4:\n{output[-3000:]}"
    assert "ERROR collecting" not in output and len(lines) <= 3, f"{len(lines)} lines:\n{output[-3000:]}"


def kubeconfig(path: Path, server: str, *, token: str = "t", ca_data: str | None = None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    cluster.update({"certificate-authority-data": ca_data} if ca_data else {"insecure-skip-tls-verify": True})
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_missing_kubeconfig(tmp_path: Path) -> None:
    code, out, _ = pytest_run(*TAINT_CHECK, "--kubeconfig", str(tmp_path / "nope.yaml"))
    assert_usage_error(code, out, f"--kubeconfig {tmp_path / 'nope.yaml'}: file not found",
                       "pass the kubeconfig that kubectl uses, or --sim")


def test_unreadable_kubeconfig(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    code, out, _ = pytest_run(*TAINT_CHECK, "--kubeconfig", str(broken))
    assert_usage_error(code, out, f"cannot load kubeconfig {broken}", "line 3")


def test_unknown_context(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kc.yaml", f"https://127.0.0.1:{closed_port()}")
    code, out, _ = pytest_run(*TAINT_CHECK, "--kubeconfig", str(config), "--context", "prod-east")
    assert_usage_error(code, out, f"cannot load kubeconfig {config} (context prod-east)", "prod-east")


def test_unreachable_server_fails_within_seconds_naming_the_url(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    code, out, seconds = pytest_run(*TAINT_CHECK, "--kubeconfig", str(kubeconfig(tmp_path / "kc.yaml", url)))
    assert_usage_error(code, out, f"cannot reach the Kubernetes API at {url}", "Connection refused")
    assert seconds < 20, f"took {seconds:.1f} s to give up on an unreachable server (interpreter start included)"


def test_expired_credentials_401(live_sim: SimCluster, tmp_path: Path) -> None:
    good = yaml.safe_load(live_sim.kubeconfig_path.read_text())
    ca = good["clusters"][0]["cluster"]["certificate-authority-data"]
    config = kubeconfig(tmp_path / "kc.yaml", live_sim.server_url, token="expired-token", ca_data=ca)
    code, out, _ = pytest_run(*TAINT_CHECK, "--kubeconfig", str(config))
    assert_usage_error(code, out, f"unauthorized at {live_sim.server_url}", "credentials expired or invalid",
                       "aws eks update-kubeconfig")


def _rbac_without(tmp_path: Path, resource: str, verb: str) -> Path:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))
    for doc in docs:
        if doc and doc.get("kind") == "ClusterRole":
            for rule in doc["rules"]:
                if resource in rule.get("resources", []):
                    rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    path = tmp_path / "rbac-without.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_forbidden_403_names_the_permission_and_rbac_manifest(tmp_path: Path) -> None:
    (tmp_path / "sim").mkdir()
    with SimCluster("healthy", workdir=tmp_path / "sim", rbac=_rbac_without(tmp_path, "pods", "create")) as sim:
        code, out, _ = pytest_run("suites/test_taints.py", "-k", "toleration_is_admitted", *sim_target(sim))
    assert code != 0
    assert_clear(out, "forbidden: create pods", "verb=create, resource=pods",
                 'cannot create resource "pods"', "deploy/rbac.yaml")


def test_forbidden_node_list_at_discovery_is_one_usage_error(tmp_path: Path) -> None:
    """403 on the first discovery call (listing nodes) is known before collection: one line, exit 4."""
    (tmp_path / "sim").mkdir()
    with SimCluster("healthy", workdir=tmp_path / "sim", rbac=_rbac_without(tmp_path, "nodes", "list")) as sim:
        code, out, _ = pytest_run(*TAINT_CHECK, *sim_target(sim))
    assert_usage_error(code, out, "forbidden: list nodes", "deploy/rbac.yaml")


def test_bare_kubeconfig_option_in_a_checkout_collects_the_suites_only(tmp_path: Path) -> None:
    """`pytest --kubeconfig PATH` (a space, not `=`): pytest takes PATH for a test path while it looks for the
    rootdir; the plugin still collects suites/ (not tests/) and the connection problem is one usage error."""
    url = f"https://127.0.0.1:{closed_port()}"
    code, out, _ = pytest_run("--kubeconfig", str(kubeconfig(tmp_path / "kc.yaml", url)))
    assert_usage_error(code, out, f"cannot reach the Kubernetes API at {url}")


def test_unknown_profile_key_names_file_line_and_key(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("instances:\n  p5.48xlarge:\n    gpus: 8\n    gpu_memroy_mib: 81559\n")
    code, out, _ = pytest_run(*TAINT_CHECK, "--sim=healthy", "--gpucluster-profile", str(profile))
    assert_usage_error(code, out, f"{profile}:4: instances.p5.48xlarge.gpu_memroy_mib: unknown key 'gpu_memroy_mib'",
                       "gpu_memory_mib")


def test_malformed_profile_names_file_and_line(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("instances:\n  p5.48xlarge:\n    gpus: [8\n")
    code, out, _ = pytest_run(*TAINT_CHECK, "--sim=healthy", "--gpucluster-profile", str(profile))
    assert_usage_error(code, out, f"{profile}:4: invalid YAML in acceptance profile")


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    code, out, _ = pytest_run(*TAINT_CHECK, "--sim=no-such-scenario")
    assert_usage_error(code, out, "no scenario named 'no-such-scenario'", "shipped scenarios: ", "healthy")


def test_unpullable_image_reports_errimagepull_with_the_image(live_sim: SimCluster) -> None:
    image = "nvidia/cuda:does-not-exist"
    code, out, seconds = pytest_run("suites/test_gpu_visibility.py", "-k", "sees_every_gpu", "-rA",
                                    "--gpucluster-cuda-image", image, "--gpucluster-timeout", "60",
                                    *sim_target(live_sim))
    assert code == pytest.ExitCode.TESTS_FAILED
    assert_clear(out, "reason ErrImagePull", f"cannot pull image {image}", "gpucluster: teardown clean")
    assert seconds < 45, f"an unpullable image took {seconds:.0f} s to report: it must not wait for the deadline"
    assert not labelled_objects(live_sim)


def test_node_that_disappears_mid_run(live_sim: SimCluster) -> None:
    """Delete a GPU node the moment the fleet's probe pod for it is created: a node that leaves the cluster is in
    transition (as a Karpenter scale-down or a replaced node), so its check is not shown naming the node and why,
    never failed nor passed; the run is INCOMPLETE (exit 6: the node's required evidence is missing, which
    --gpucluster-partial does not forgive), within the probe timeout; the other node's check passes; teardown is
    clean."""
    victim, survivor = node_names(live_sim, "p5.48xlarge")[:2]

    def on_commit(etype: str, key: str, obj: dict) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        if key == "pods" and etype == "ADDED" and "gpucluster.io/run" in labels and victim in str(obj["spec"]):
            asyncio.get_running_loop().call_soon(remove_victim)

    def remove_victim() -> None:
        assert live_sim.store is not None  # noqa: S101 - running
        if any(n["metadata"]["name"] == victim for n in live_sim.store.iter_objects("nodes")):
            live_sim.store.delete("nodes", None, victim)

    assert live_sim.store is not None
    unsubscribe = live_sim.call(live_sim.store.subscribe, on_commit)
    try:
        code, out, seconds = pytest_run("suites/test_gpu_visibility.py", "-k", "sees_every_gpu", "-rA",
                                        "--gpucluster-timeout", "10", *sim_target(live_sim))
    finally:
        live_sim.call(unsubscribe)
    assert code == INCOMPLETE_EXIT, out[-3000:]
    assert f"FAILED suites/test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu[{victim}" not in out, out[-3000:]
    assert f"PASSED suites/test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu[{survivor}/p5.48xlarge]" in out
    assert_clear(out, f"{victim}/p5.48xlarge is in transition (left the cluster)", "gpucluster verdict: INCOMPLETE",
                 "gpucluster: teardown clean")
    assert seconds < 60, f"took {seconds:.0f} s with a 10 s probe timeout"
    assert not labelled_objects(live_sim)
