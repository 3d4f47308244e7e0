"""suites/test_device_plugins.py, test_gpu_visibility.py and test_taints.py end to end against the simulated cluster:
healthy-like scenarios pass; each related fault fails exactly the checks it concerns, on the node it hits, saying why.
Shipped scenarios are read from the session's one suite run per scenario (shared with the fault matrix)."""
from __future__ import annotations

from typing import Callable

import pytest

from tests.suite_cache import FAILED, PASSED, SKIPPED, Results, SuiteSpec, custom

MODULES = ("test_device_plugins", "test_gpu_visibility", "test_taints")
PATHS = tuple(f"suites/{m}.py" for m in MODULES)
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
# A profile that expects only the NVIDIA taint, also on Auto Mode (by default an Auto Mode node's GPU taint is the
# one its NodePool declares, here gpu-workload): the user's profile is merged over the scenario's.
NVIDIA_TAINT_ONLY = """cluster:
  gpu_taints:
    - {key: nvidia.com/gpu, effect: NoSchedule}
  flavours:
    auto-mode: {gpu_taint_from_nodepool: false}
"""
NEVER_READY = custom("plugin-never-ready", "faults:\n  - {kind: device-plugin-not-ready, nodes: [1], "
                     "behaviour: never-ready}\n", *PATHS)
AUTO_MODE_NVIDIA_ONLY = custom("auto-mode-nvidia-taint-only", "", *PATHS, extends="auto-mode",
                               profile=NVIDIA_TAINT_ONLY)
CPU_TAINTED = custom("cpu-tainted", """nodes:
  - instance_type: p5.48xlarge
    count: 2
    zone: us-west-2a
    nodepool: gpu
    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
  - instance_type: m6i.2xlarge
    count: 2
    zone: us-west-2a
    taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
""", *PATHS)
# Its test judges two checks of test_device_plugins.py only.
OPERATOR_NOT_READY = custom("operator-not-ready", "operators:\n  nvidia_device_plugin: gpu-operator\n"
                                                  "  gpu_operator: {installed: true, state: notReady}\n", PATHS[0])

Shipped = Callable[[str], Results]
Custom = Callable[[SuiteSpec], Results]


def fault_node(run: Results, test: str) -> str:
    """The one node id the test failed on."""
    failed = [ident for ident, outcome in run.of(test).items() if outcome == FAILED]
    assert len(failed) == 1, run
    return failed[0]


def failing_keys(run: Results) -> set[tuple[str, str]]:
    return {key for key, outcome in run.not_passed().items() if outcome == FAILED}


@pytest.mark.parametrize("scenario, itype, skipped", [
    ("healthy", "p5.48xlarge", {OPERATOR}),
    ("g5-single-efa", "g5.48xlarge", {OPERATOR}),
    ("api-flaky", "p5.48xlarge", {OPERATOR}),
    # every NVIDIA device-plugin pod restarted once at boot, 2 h ago: outside the 10-minute window, healthy
    ("plugin-restarted-once", "p5.48xlarge", {OPERATOR}),
    # no GFD on Auto Mode; plugins judged by allocatable. Its gpu-workload taint comes from the scenario's profile.
    ("auto-mode", "p5.48xlarge", {OPERATOR, GFD}),
])
def test_every_check_passes(shipped: Shipped, scenario: str, itype: str, skipped: set[str]) -> None:
    run = shipped(scenario)
    assert {t for t, _ in run.outcomes} == GPU_CHECKS | CPU_CHECKS, run
    gpu_ids = {ident for (t, ident) in run.outcomes if t in GPU_CHECKS}
    assert len(gpu_ids) == 2 and all(i.endswith(f"/{itype}") for i in gpu_ids), run
    assert {t for (t, _), outcome in run.outcomes.items() if outcome != PASSED} == skipped, run
    assert {outcome for (t, _), outcome in run.outcomes.items() if t in skipped} == {SKIPPED}, run
    assert "teardown clean: nothing labelled" in run.stdout, run


@pytest.mark.suites("gpu-missing")
def test_gpu_missing_fails_the_count_only(shipped: Shipped) -> None:
    run = shipped("gpu-missing")
    node = fault_node(run, SMI)
    assert run.not_passed() == {(SMI, node): FAILED, **{(OPERATOR, i): SKIPPED for i in run.of(OPERATOR)}}, run
    assert f"GPU count mismatch on {node}: expected 8 (profile); observed allocatable 8, nvidia-smi saw 7" in \
        "".join(run.messages_of(SMI, node)), run


@pytest.mark.suites("driver-unreachable")
def test_driver_unreachable_fails_smi_and_cuda(shipped: Shipped) -> None:
    run = shipped("driver-unreachable")
    node = fault_node(run, SMI)
    assert failing_keys(run) == {(SMI, node), (SMOKE, node)}, run
    assert run.of(FACTS)[node] == run.of(ONE)[node] == SKIPPED, run
    smi, smoke = "".join(run.messages_of(SMI, node)), "".join(run.messages_of(SMOKE, node))
    assert f"NVIDIA driver unreachable on {node}" in smi, run
    assert "couldn't communicate with the NVIDIA driver" in smi, run
    assert "Failed to allocate device vector A (error code no CUDA-capable device is detected)!" in smoke, run


@pytest.mark.suites("device-plugin-not-ready")
def test_device_plugin_not_ready_fails_plugin_and_count(shipped: Shipped) -> None:
    run = shipped("device-plugin-not-ready")
    node = fault_node(run, PLUGIN)
    assert run.of(SMI)[node] == FAILED, run
    # A crash-looping plugin is Ready for moments between crashes: allocatable may be caught at 8 then.
    assert run.of(ALLOC)[node] in (FAILED, PASSED), run
    assert {run.of(t)[node] for t in (FACTS, ONE, SMOKE)} == {SKIPPED}, run
    assert failing_keys(run) - {(ALLOC, node)} == {(PLUGIN, node), (SMI, node)}, run
    plugin = "".join(run.messages_of(PLUGIN, node))
    assert f"NVIDIA device plugin not ready on {node}" in plugin and "CrashLoopBackOff" in plugin, run


@pytest.mark.suites(NEVER_READY)
def test_never_ready_plugin_fails_allocatable_too(custom_run: Custom) -> None:
    run = custom_run(NEVER_READY)
    node = fault_node(run, PLUGIN)
    assert failing_keys(run) == {(PLUGIN, node), (ALLOC, node), (SMI, node)}, run
    assert f"GPU count mismatch on {node}: expected nvidia.com/gpu allocatable 8" in \
        "".join(run.messages_of(ALLOC, node)), run


@pytest.mark.suites("taint-missing")
def test_taint_missing_fails_the_taint_checks(shipped: Shipped) -> None:
    run = shipped("taint-missing")
    node = fault_node(run, TAINT)
    assert failing_keys(run) == {(TAINT, node), (PENDING, node)}, run
    assert f"Missing GPU taint on {node}: expected one of nvidia.com/gpu:NoSchedule" in \
        "".join(run.messages_of(TAINT, node)), run
    assert f"Taint not enforced on {node}" in "".join(run.messages_of(PENDING, node)), run


@pytest.mark.suites("efa-plugin-untolerated")
def test_efa_plugin_untolerated_fails_the_efa_plugin_check(shipped: Shipped) -> None:
    run = shipped("efa-plugin-untolerated")
    failing = failing_keys(run)
    assert {t for t, _ in failing} == {EFA_PLUGIN} and len(failing) == 2, run
    for message in run.messages_of(EFA_PLUGIN):
        assert "does not tolerate the node's taint(s) nvidia.com/gpu:NoSchedule" in message, run


@pytest.mark.suites(AUTO_MODE_NVIDIA_ONLY)
def test_auto_mode_with_a_profile_expecting_only_the_nvidia_taint_reports_the_other(custom_run: Custom) -> None:
    run = custom_run(AUTO_MODE_NVIDIA_ONLY)
    assert {t for t, _ in failing_keys(run)} == {TAINT, ADMITTED}, run
    taint = run.messages(FAILED)
    assert "observed gpu-workload=true:NoSchedule" in taint and "set cluster.gpu_taints" in taint, run


@pytest.mark.suites("gpu-isolation-leak")
def test_upstream_runtime_defaults_fail_only_the_no_gpu_isolation_check(shipped: Shipped) -> None:
    """Issue 14: deviceListStrategy envvar + the toolkit accepting NVIDIA_VISIBLE_DEVICES unprivileged: a pod of the
    CUDA image (NVIDIA_VISIBLE_DEVICES=all) without a GPU request sees all 8 GPUs; every other check passes."""
    run = shipped("gpu-isolation-leak")
    assert {t for t, _ in failing_keys(run)} == {NONE} and len(failing_keys(run)) == 2, run
    leak = run.messages(FAILED)
    assert "GPU leak on" in leak and "in a pod requesting no nvidia.com/gpu; observed 8" in leak, run
    assert "NVIDIA_VISIBLE_DEVICES=all" in leak and "deviceListStrategy: volume-mounts" in leak, run
    assert "accept-nvidia-visible-devices-envvar-when-unprivileged = false" in leak, run
    assert {o for (t, _), o in run.outcomes.items() if t == SMOKE} == {PASSED}, run


@pytest.mark.suites(CPU_TAINTED)
def test_gpu_taint_on_cpu_nodes_fails_the_cpu_check(custom_run: Custom) -> None:
    run = custom_run(CPU_TAINTED)
    failing = failing_keys(run)
    assert {t for t, _ in failing} == {CPU_TAINT} and len(failing) == 2, run
    assert "GPU taint on CPU-only node" in run.messages(FAILED), run


@pytest.mark.suites(OPERATOR_NOT_READY)
def test_gpu_operator_not_ready_fails_the_operator_check(custom_run: Custom) -> None:
    run = custom_run(OPERATOR_NOT_READY)
    assert set(run.of(OPERATOR).values()) == {FAILED}, run
    assert "ClusterPolicy cluster-policy status.state='notReady'" in run.messages(FAILED), run
    assert set(run.of(PLUGIN).values()) == {PASSED}, run   # found in the gpu-operator namespace
