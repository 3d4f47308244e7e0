"""suites/test_device_plugins.py, test_gpu_visibility.py and test_taints.py end to end against the simulated cluster:
healthy-like scenarios pass; each related fault fails exactly the checks it concerns, on the node it hits, saying why."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[2] / "suites"
MODULES = ("test_device_plugins.py", "test_gpu_visibility.py", "test_taints.py")
# device plugins
PLUGIN, ALLOC, GFD = "test_nvidia_device_plugin_runs_on", "test_gpu_allocatable_matches_profile", \
    "test_gfd_labels_agree_with_node"
OPERATOR, EFA_PLUGIN = "test_gpu_operator_ready_on", "test_efa_device_plugin_runs_on"
# visibility
SMI, FACTS, ONE, NONE, SMOKE = ("test_nvidia_smi_sees_every_gpu", "test_gpu_facts_match_profile",
                                "test_pod_with_one_gpu_sees_exactly_one", "test_pod_without_gpu_sees_none",
                                "test_cuda_smoke")
# taints
TAINT, PENDING, ADMITTED, ERT = ("test_gpu_node_carries_gpu_taint", "test_pod_without_toleration_stays_pending",
                                 "test_pod_with_toleration_is_admitted", "test_gpu_request_toleration_behaviour")
GPU_ON_CPU, CPU_TAINT = "test_gpu_pod_not_placed_on_cpu_node", "test_cpu_node_has_no_gpu_taint"
GPU_CHECKS = {PLUGIN, ALLOC, GFD, OPERATOR, EFA_PLUGIN, SMI, FACTS, ONE, NONE, SMOKE, TAINT, PENDING, ADMITTED, ERT}
CPU_CHECKS = {GPU_ON_CPU, CPU_TAINT}
LIST_H200 = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi" / "list-L-h200-590.txt"   # real `nvidia-smi -L`
BOTH_TAINTS = """cluster:
  gpu_taints:
    - {key: nvidia.com/gpu, effect: NoSchedule}
    - {key: gpu-workload, effect: NoSchedule}
"""


class SuiteRun:
    """One subprocess run of the three suites: outcome per (test, node id) and the whole output."""

    def __init__(self, pytester: pytest.Pytester, plugin_args: list[str], scenario: str, *extra: str) -> None:
        result = pytester.runpytest_subprocess(*(str(SUITES / m) for m in MODULES), f"--sim={scenario}", "-v", "-rfs",
                                               "-p", "no:cacheprovider", "--noconftest", "--gpucluster-no-report",
                                               *extra, *plugin_args)
        self.text = result.stdout.str()
        self.outcomes = {(test, ident): outcome for test, ident, outcome in re.findall(
            r"::(test_\w+)\[([^\]]+)\] (PASSED|FAILED|SKIPPED|ERROR)", self.text)}

    def of(self, test: str) -> dict[str, str]:
        return {ident: outcome for (t, ident), outcome in self.outcomes.items() if t == test}

    def not_passed(self) -> dict[tuple[str, str], str]:
        return {key: outcome for key, outcome in self.outcomes.items() if outcome != "PASSED"}


def scenario_file(pytester: pytest.Pytester, name: str, body: str) -> str:
    path = pytester.path / f"{name}.yaml"
    path.write_text(f"description: {name}\nextends: healthy\n{body}")
    return str(path)


def fault_node(run: SuiteRun, test: str) -> str:
    """The one node id the test failed on."""
    failed = [ident for ident, outcome in run.of(test).items() if outcome == "FAILED"]
    assert len(failed) == 1, run.text
    return failed[0]


@pytest.mark.parametrize("scenario, itype, skipped", [
    ("healthy", "p5.48xlarge", {OPERATOR}),
    ("g5-single-efa", "g5.48xlarge", {OPERATOR}),
    ("api-flaky", "p5.48xlarge", {OPERATOR}),
    ("auto-mode", "p5.48xlarge", {OPERATOR, GFD}),   # no GFD on Auto Mode; plugins judged by allocatable
])
def test_every_check_passes(pytester: pytest.Pytester, plugin_args: list[str], scenario: str, itype: str,
                            skipped: set[str]) -> None:
    extra: tuple[str, ...] = ()
    if scenario == "auto-mode":   # Auto Mode NodePools taint with gpu-workload: the profile must say so
        profile = pytester.path / "both-taints.yaml"
        profile.write_text(BOTH_TAINTS)
        extra = ("--gpucluster-profile", str(profile))
    run = SuiteRun(pytester, plugin_args, scenario, *extra)
    assert {t for t, _ in run.outcomes} == GPU_CHECKS | CPU_CHECKS, run.text
    gpu_ids = {ident for (t, ident) in run.outcomes if t in GPU_CHECKS}
    assert len(gpu_ids) == 2 and all(i.endswith(f"/{itype}") for i in gpu_ids), run.text
    assert {t for (t, _), outcome in run.outcomes.items() if outcome != "PASSED"} == skipped, run.text
    assert "teardown clean: nothing labelled" in run.text


def test_gpu_missing_fails_the_count_only(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "gpu-missing")
    node = fault_node(run, SMI)
    assert run.not_passed() == {(SMI, node): "FAILED", **{(OPERATOR, i): "SKIPPED" for i in run.of(OPERATOR)}}, \
        run.text
    assert f"GPU count mismatch on {node}: expected 8 (profile), allocatable 8, nvidia-smi saw 7" in run.text


def test_driver_unreachable_fails_smi_and_cuda(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "driver-unreachable")
    node = fault_node(run, SMI)
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing == {(SMI, node), (SMOKE, node)}, run.text
    assert run.of(FACTS)[node] == run.of(ONE)[node] == "SKIPPED", run.text
    assert f"NVIDIA driver unreachable on {node}" in run.text
    assert "couldn't communicate with the NVIDIA driver" in run.text
    assert "torch.cuda.is_available() is False" in run.text


def test_device_plugin_not_ready_fails_plugin_and_count(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "device-plugin-not-ready")
    node = fault_node(run, PLUGIN)
    assert run.of(SMI)[node] == "FAILED", run.text
    # A crash-looping plugin is Ready for moments between crashes: allocatable may be caught at 8 then.
    assert run.of(ALLOC)[node] in ("FAILED", "PASSED"), run.text
    assert {run.of(t)[node] for t in (FACTS, ONE, SMOKE)} == {"SKIPPED"}, run.text
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing - {(ALLOC, node)} == {(PLUGIN, node), (SMI, node)}, run.text
    assert f"NVIDIA device plugin not ready on {node}" in run.text and "CrashLoopBackOff" in run.text


def test_never_ready_plugin_fails_allocatable_too(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    scenario = scenario_file(pytester, "plugin-never-ready",
                             "faults:\n  - {kind: device-plugin-not-ready, nodes: [1], behaviour: never-ready}\n")
    run = SuiteRun(pytester, plugin_args, scenario)
    node = fault_node(run, PLUGIN)
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing == {(PLUGIN, node), (ALLOC, node), (SMI, node)}, run.text
    assert f"GPU count mismatch on {node}: expected nvidia.com/gpu allocatable 8" in run.text


def test_taint_missing_fails_the_taint_checks(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "taint-missing")
    node = fault_node(run, TAINT)
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing == {(TAINT, node), (PENDING, node)}, run.text
    assert f"Missing GPU taint on {node}: expected one of nvidia.com/gpu:NoSchedule" in run.text
    assert f"Taint not enforced on {node}" in run.text


def test_efa_plugin_untolerated_fails_the_efa_plugin_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "efa-plugin-untolerated")
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert {t for t, _ in failing} == {EFA_PLUGIN} and len(failing) == 2, run.text
    assert "does not tolerate the node's taint(s) nvidia.com/gpu:NoSchedule" in run.text


def test_auto_mode_with_the_default_profile_reports_the_other_taint(pytester: pytest.Pytester,
                                                                    plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "auto-mode")
    failing = {t for (t, _), outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing == {TAINT, ADMITTED}, run.text
    assert "observed gpu-workload=true:NoSchedule" in run.text and "set cluster.gpu_taints" in run.text


def test_gpu_leak_fails_the_no_gpu_isolation_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    # The nodes' `nvidia-smi -L` always lists a GPU, as with NVIDIA_VISIBLE_DEVICES=all honoured by the runtime.
    scenario = scenario_file(pytester, "gpu-leak", """nodes:
  - instance_type: p5.48xlarge
    count: 2
    zone: us-west-2a
    nodepool: gpu
    labels: {workload: gpu}
    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
    tool_output: {"nvidia-smi list": "%s"}
  - instance_type: m6i.2xlarge
    count: 2
    zone: us-west-2a
    labels: {workload: system}
""" % LIST_H200)
    run = SuiteRun(pytester, plugin_args, scenario)
    failing = {t for (t, _), outcome in run.not_passed().items() if outcome == "FAILED"}
    assert failing == {NONE}, run.text
    assert "GPU leak on" in run.text and "a pod requesting no nvidia.com/gpu should see no GPU; observed 1" in run.text


def test_gpu_taint_on_cpu_nodes_fails_the_cpu_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    scenario = scenario_file(pytester, "cpu-tainted", """nodes:
  - instance_type: p5.48xlarge
    count: 2
    zone: us-west-2a
    nodepool: gpu
    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
  - instance_type: m6i.2xlarge
    count: 2
    zone: us-west-2a
    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
""")
    run = SuiteRun(pytester, plugin_args, scenario)
    failing = {key for key, outcome in run.not_passed().items() if outcome == "FAILED"}
    assert {t for t, _ in failing} == {CPU_TAINT} and len(failing) == 2, run.text
    assert "GPU taint on CPU-only node" in run.text


def test_gpu_operator_not_ready_fails_the_operator_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    scenario = scenario_file(pytester, "operator-not-ready", "operators:\n  nvidia_device_plugin: gpu-operator\n"
                                                              "  gpu_operator: {installed: true, state: notReady}\n")
    run = SuiteRun(pytester, plugin_args, scenario)
    assert set(run.of(OPERATOR).values()) == {"FAILED"}, run.text
    assert "ClusterPolicy cluster-policy status.state='notReady'" in run.text
    assert set(run.of(PLUGIN).values()) == {"PASSED"}, run.text   # found in the gpu-operator namespace
