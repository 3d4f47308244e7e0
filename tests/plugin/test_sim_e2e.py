"""End to end through the plugin: --sim starts the simulated cluster, fixtures run probes and fleets, teardown is clean."""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from pytest_gpucluster.sim_contract import child as sim_process
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import Results, SuiteSpec, custom

pytest.importorskip("pytest_gpucluster.sim.launcher", reason="simulated cluster not available yet")

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
# The whole suite on healthy restricted to deploy/rbac.yaml; run once per session (tests/suite_cache.py).
RBAC_ONLY = custom("rbac-only", "rbac:\n  restrict: true\n")

SUITE = """
import pytest
from pytest_gpucluster.kube.probes import ProbeSpec

SMI = ["sh", "-c", "nvidia-smi -L"]


@pytest.fixture
def smi(run_fleet, inventory):
    specs = {n.name: ProbeSpec("nvidia-smi", SMI, node=n.name, gpus=n.expected_gpus) for n in inventory.gpu_nodes}
    return run_fleet("nvidia-smi", specs)


@pytest.mark.gpu
def test_every_gpu_is_visible(gpu_node, smi):
    result = smi[gpu_node.name]
    assert result.ok, result.describe()
    assert result.logs.count("GPU ") == gpu_node.expected_gpus


@pytest.mark.gpu
def test_gpu_probe_ran_on_its_node(gpu_node, smi):
    assert smi[gpu_node.name].node == gpu_node.name


def test_cpu_probe(run_probe, cpu_node):
    result = run_probe(ProbeSpec("echo", ["sh", "-c", "echo hello from $(hostname)"], node=cpu_node.name,
                                 tolerate_gpu=False))
    assert result.ok and "hello" in result.logs, result.describe()


def test_zz_fleet_ran_once_for_all_per_node_tests(cluster, gpucluster_session, inventory):
    pods = cluster.items("pods", gpucluster_session.namespace, label_selector="gpucluster.io/probe=nvidia-smi")
    assert len(pods) == len(inventory.gpu_nodes)
    assert all(p["metadata"]["labels"]["gpucluster.io/run"] == gpucluster_session.run_id for p in pods)
"""


def test_sim_run_parametrizes_by_node_runs_fleets_and_tears_down(pytester: pytest.Pytester,
                                                                 plugin_args: list[str]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*plugin_args, "--sim", "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=7)
    result.stdout.re_match_lines([
        r"gpucluster: v1\.\d+.* at https://127\.0\.0\.1:\d+",
        r"gpucluster: nodes: 4 total; GPU 2 \(p5\.48xlarge x2\); EFA 2; CPU-only 2",
        r".*test_every_gpu_is_visible\[ip-[\d-]+\.us-west-2\.compute\.internal/p5\.48xlarge\].*",
        r".*test_cpu_probe\[ip-[\d-]+\.us-west-2\.compute\.internal/m6i\.2xlarge\].*",
        r"gpucluster: teardown clean: nothing labelled gpucluster\.io/run=\d{8}-\d{6}-[0-9a-f]{4} remains",
    ])


def test_sample_and_selector_are_shown_and_applied(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_nodes="def test_node(gpu_node):\n    pass\n\ndef test_cpu(cpu_node):\n    pass\n")
    result = pytester.runpytest(*plugin_args, "--sim", "--gpucluster-sample", "1",
                                "--gpucluster-nodes", "workload=gpu")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "gpucluster: covered 1 of 2 GPU nodes (selector 'workload=gpu' and sample 1 per instance type): "
        "ip-*/p5.48xlarge"])
    skipped = pytester.runpytest(*plugin_args, "--sim", "-rs", "--gpucluster-nodes", "workload=gpu")
    skipped.stdout.fnmatch_lines(["*no CPU-only nodes matching 'workload=gpu' in the cluster (4 nodes discovered)*"])


def test_pytest_kubernetes_k8s_fixture_points_at_the_same_cluster(pytester: pytest.Pytester,
                                                                  plugin_args: list[str]) -> None:
    shutil.copy(SUITES / "test_custom_example.py", pytester.path / "test_my_checks.py")  # as a user would
    result = pytester.runpytest(*plugin_args, "--sim", "-v")
    # Two tests: pytest-kubernetes deletes the kubeconfig it was given after the first one; the plugin
    # hands it a fresh copy before each test, so the second test still reaches the cluster.
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_every_node_is_ready PASSED*", "*test_no_node_is_cordoned PASSED*"])


def test_example_check_fails_on_a_cluster_with_a_cordoned_node(pytester: pytest.Pytester,
                                                               plugin_args: list[str]) -> None:
    shutil.copy(SUITES / "test_custom_example.py", pytester.path / "test_my_checks.py")  # as a user would
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(autouse=True)
        def cordon_one(cluster, inventory):
            cluster.patch("nodes", inventory.cpu_nodes[0].name, {"spec": {"unschedulable": True}})
    """)
    result = pytester.runpytest(*plugin_args, "--sim")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*cordoned nodes (no new pods land there): ip-*"])


def test_suite_calls_stay_inside_deploy_rbac(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    """In RBAC mode the simulated apiserver answers 403 to anything deploy/rbac.yaml does not grant."""
    pytester.makefile(".yaml", rbac_only="extends: healthy\nrbac:\n  restrict: true\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*plugin_args, "--sim=rbac_only.yaml")
    result.assert_outcomes(passed=7)
    assert "Forbidden" not in result.stdout.str() and "forbidden" not in result.stdout.str()
    result.stdout.fnmatch_lines(["gpucluster: teardown clean*"])


def test_calls_outside_rbac_are_forbidden_with_a_pointer_to_the_manifest(pytester: pytest.Pytester,
                                                                         plugin_args: list[str]) -> None:
    pytester.makefile(".yaml", rbac_only="extends: healthy\nrbac:\n  restrict: true\n")
    pytester.makepyfile(test_outside="""
        def test_delete_a_node(cluster, inventory):
            cluster.delete("nodes", inventory.cpu_nodes[0].name)
    """)
    result = pytester.runpytest(*plugin_args, "--sim=rbac_only.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Forbidden: forbidden: delete nodes/ip-* (cluster-scoped) (verb=delete, "
                                 "resource=nodes, namespace=-)*deploy/rbac.yaml*"])


def test_keep_leaves_the_namespace_and_says_so(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_keep="def test_touch(cluster):\n    pass\n")
    result = pytester.runpytest(*plugin_args, "--sim", "--gpucluster-keep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["gpucluster: kept namespace gpucluster-* (--gpucluster-keep)"])


@pytest.mark.suites(RBAC_ONLY)
def test_the_shipped_suites_stay_inside_deploy_rbac(custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    """Every acceptance suite (probes, fleets, NodePools, MPIJobs, AWS) against the RBAC-restricted simulator:
    a call outside deploy/rbac.yaml would fail its test with 403 Forbidden."""
    run = Results(custom_suite_result(RBAC_ONLY))
    outcomes = Counter(c.outcome for c in run.cases)
    assert outcomes["failed"] == 0 and outcomes["error"] == 0, run
    assert outcomes["passed"] >= 20, run
    assert "forbidden" not in (run.stdout + run.run.stderr).lower(), run
    assert any(line.startswith("gpucluster: teardown clean") for line in run.stdout.splitlines()), run


def gone_within(pid: int, timeout_s: float) -> bool:
    """Whether process `pid` has exited (or is already reaped) within timeout_s: waits on a pidfd, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


HANDOFF = """
import os

def test_handoff(cluster, gpucluster_session):
    handoff = gpucluster_session.sim.handoff
    env = gpucluster_session.aws_env
    assert handoff.scenario_name == "healthy" and handoff.kubeconfig_path.parent == handoff.folder
    assert env == handoff.aws.as_env() and env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert [k for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if os.environ.get(k) == env[k]] == []
    assert gpucluster_session.sim.process.pid != os.getpid()
    print("SIM", gpucluster_session.sim.process.pid, env["AWS_ENDPOINT_URL"])
"""


def test_sim_hands_over_through_files_and_leaves_os_environ_alone(pytester: pytest.Pytester,
                                                                  plugin_args: list[str]) -> None:
    """The simulated cluster is a child process; its AWS settings reach the run through the hand-off folder
    (Session.aws_env), never through os.environ; teardown stops the child."""
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    pytester.makepyfile(test_sim_handoff_in_run=HANDOFF)   # a name no module of tests/ has (import file mismatch under xdist)
    result = pytester.runpytest(*plugin_args, "--sim", "-s")
    result.assert_outcomes(passed=1)
    match = re.search(r"SIM (\d+) (http://\S+)", result.stdout.str())   # the test checked the credentials itself
    assert match, result.stdout.str()
    assert {k: v for k, v in os.environ.items() if k.startswith("AWS_")} == before
    assert match[2] not in os.environ.values()
    assert gone_within(int(match[1]), 0), "the simulated cluster's process outlived the run"


def test_sim_start_failure_is_the_childs_reason(tmp_path: Path) -> None:
    with pytest.raises(sim_process.SimStartError, match="no-such-scenario: no scenario named 'no-such-scenario'"):
        sim_process.start("no-such-scenario", tmp_path)


SLOW = """
import time

def test_slow(cluster, gpucluster_session):
    print("SIMPID", gpucluster_session.sim.process.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "SIGKILL"])
def test_the_simulated_cluster_outlives_teardown_and_dies_with_pytest(tmp_path: Path, plugin_args: list[str],
                                                                      how: str) -> None:
    """Ctrl-C reaches pytest's process group, not the simulated cluster (its own session): pytest tears down
    against it, then stops it. A killed pytest cannot stop it: the child sees its stdin close and stops."""
    (tmp_path / "test_slow.py").write_text(SLOW)
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUCLUSTER_RETRY_NO_WAIT="1")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *plugin_args, "-p", "no:cacheprovider", "-s", "--sim",
                             "test_slow.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:   # `test_slow.py SIMPID 1234`: the test's print follows pytest's progress
            lines.append(line)
            if "SIMPID" in line:
                break
        found = re.search(r"SIMPID (\d+)", "".join(lines))
        assert found, "".join(lines)
        sim_pid = int(found[1])
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)   # what the terminal does: the whole foreground process group
        else:
            proc.kill()
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert gone_within(sim_pid, 60), f"the simulated cluster (pid {sim_pid}) outlived pytest ({how})\n{output}"
    if how == "ctrl-c":
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
        assert "gpucluster: teardown clean: nothing labelled gpucluster.io/run=" in output, output
