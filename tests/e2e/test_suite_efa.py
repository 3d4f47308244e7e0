"""suites/test_efa.py end to end against the simulated cluster: healthy-like scenarios pass every check on every
EFA node; each EFA fault fails exactly the checks it should, on the node it hits, with a message saying why.
Shipped scenarios are read from the session's one suite run per scenario (shared with the fault matrix)."""
from __future__ import annotations

from typing import Callable

import pytest

from tests.suite_cache import FAILED, PASSED, SKIPPED, Results, SuiteSpec, custom

MODULE = "test_efa"
ALLOC, FI_INFO = "test_efa_allocatable_matches_profile", "test_fi_info_lists_every_efa_device"
DEV_IB, MEMLOCK = "test_infiniband_devices_mounted_in_pod", "test_locked_memory_unlimited_in_pod"
CHECKS = {ALLOC, FI_INFO, DEV_IB, MEMLOCK}
MEMLOCK_64K = custom("memlock-64k", "faults:\n  - {kind: memlock-limited, nodes: [0], limit_kb: 64}\n",
                     f"suites/{MODULE}.py")
NO_EFA = custom("no-efa", "nodes:\n  - {instance_type: g5.2xlarge, count: 1, zone: us-west-2a, nodepool: gpu,\n"
                "     taints: [{key: nvidia.com/gpu, effect: NoSchedule}]}\n"
                "  - {instance_type: m6i.2xlarge, count: 1, zone: us-west-2a}\n", f"suites/{MODULE}.py")


def failing(run: Results) -> dict[str, set[str]]:
    """node id -> the checks that did not pass on it."""
    out: dict[str, set[str]] = {}
    for (test, ident), outcome in run.outcomes.items():
        if outcome != PASSED:
            out.setdefault(ident, set()).add(test)
    return out


@pytest.mark.parametrize("scenario, itype", [("healthy", "p5.48xlarge"), ("g5-single-efa", "g5.48xlarge"),
                                             ("auto-mode", "p5.48xlarge"), ("api-flaky", "p5.48xlarge"),
                                             ("plugin-restarted-once", "p5.48xlarge")])
def test_every_efa_check_passes_on_every_efa_node(shipped: Callable[[str], Results], scenario: str,
                                                  itype: str) -> None:
    run = shipped(scenario)
    assert len(run.nodes()) == 2 and all(ident.endswith(f"/{itype}") for ident in run.nodes()), run
    assert {test for test, _ in run.outcomes} == CHECKS, run
    assert set(run.outcomes.values()) == {PASSED}, run
    assert "teardown clean: nothing labelled" in run.stdout, run


@pytest.mark.parametrize("scenario, failing_checks, messages", [
    ("efa-absent", {ALLOC, FI_INFO, DEV_IB},
     ["expected vpc.amazonaws.com/efa allocatable 32 (profile p5.48xlarge efa); observed allocatable 0",
      "No EFA provider in a pod on", "observed fi_getinfo -61 (No data available) with 0 vpc.amazonaws.com/efa requested",
      "the EFA device plugin is not running on it"]),
    ("efa-allocatable-low", {ALLOC, FI_INFO, DEV_IB},
     ["observed allocatable 4, capacity", "4 distinct EFA domain(s)", "where the profile expects 32 (4 requested)",
      "fewer interfaces attached than the instance type supports", "observed 4 (uverbs0"]),
], ids=["efa-absent", "efa-allocatable-low"])
def test_node_fault_fails_its_checks_on_that_node_only(shipped: Callable[[str], Results], scenario: str,
                                                       failing_checks: set[str], messages: list[str]) -> None:
    run = shipped(scenario)
    bad = failing(run)
    assert len(run.nodes()) == 2 and len(bad) == 1, run
    assert next(iter(bad.values())) == failing_checks, run
    failures = run.messages(FAILED)
    for message in messages:
        assert message in failures, f"{message!r} not in the failures\n{run}"


@pytest.mark.suites("efa-plugin-untolerated")
def test_untolerated_efa_plugin_fails_every_efa_node(shipped: Callable[[str], Results]) -> None:
    run = shipped("efa-plugin-untolerated")
    assert failing(run) == {ident: {ALLOC, FI_INFO, DEV_IB} for ident in run.nodes()}, run
    assert "does its DaemonSet tolerate the node's GPU taint?" in run.messages(FAILED), run
    fi_info = run.messages_of(FI_INFO)
    assert len(fi_info) == 2 and all("observed fi_getinfo -61" in m for m in fi_info), run   # one per node


@pytest.mark.suites(MEMLOCK_64K)
def test_limited_memlock_fails_the_memlock_check(custom_run: Callable[[SuiteSpec], Results]) -> None:
    run = custom_run(MEMLOCK_64K)
    assert list(failing(run).values()) == [{MEMLOCK}], run
    memlock = run.messages(FAILED)
    assert "expected `ulimit -l` = unlimited in an EFA pod" in memlock and "observed 64 KiB" in memlock, run


@pytest.mark.suites(NO_EFA)
def test_no_efa_nodes_skips_with_the_reason(custom_run: Callable[[SuiteSpec], Results]) -> None:
    run = custom_run(NO_EFA)
    assert run.outcomes == {(test, "no-efa-nodes"): SKIPPED for test in CHECKS}, run
    assert any("no EFA nodes in the cluster (2 nodes discovered)" in r for r in run.skip_reasons()), run
