"""suites/test_efa.py end to end against the simulated cluster: healthy-like scenarios pass every check on every
EFA node; each EFA fault fails exactly the checks it should, on the node it hits, with a message saying why."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_efa.py"
ALLOC, FI_INFO = "test_efa_allocatable_matches_profile", "test_fi_info_lists_every_efa_device"
DEV_IB, MEMLOCK = "test_infiniband_devices_mounted_in_pod", "test_locked_memory_unlimited_in_pod"
CHECKS = {ALLOC, FI_INFO, DEV_IB, MEMLOCK}


class SuiteRun:
    """One subprocess run of the EFA suite: outcome per (test, node id) and the whole output."""

    def __init__(self, pytester: pytest.Pytester, plugin_args: list[str], scenario: str) -> None:
        result = pytester.runpytest_subprocess(str(SUITE), f"--sim={scenario}", "-v", "-rfs", "-p", "no:cacheprovider",
                                               "--gpucluster-no-report", *plugin_args)
        self.text = result.stdout.str()
        self.outcomes = {(test, ident): outcome for test, ident, outcome in re.findall(
            r"::(test_\w+)\[([^\]]+)\] (PASSED|FAILED|SKIPPED|ERROR)", self.text)}

    def nodes(self) -> set[str]:
        return {ident for _, ident in self.outcomes}

    def failing(self) -> dict[str, set[str]]:
        """node id -> the checks that failed on it."""
        out: dict[str, set[str]] = {}
        for (test, ident), outcome in self.outcomes.items():
            if outcome != "PASSED":
                out.setdefault(ident, set()).add(test)
        return out


def scenario_file(pytester: pytest.Pytester, name: str, body: str) -> str:
    path = pytester.path / f"{name}.yaml"
    path.write_text(f"description: {name}\nextends: healthy\n{body}")
    return str(path)


@pytest.mark.parametrize("scenario, itype", [("healthy", "p5.48xlarge"), ("g5-single-efa", "g5.48xlarge"),
                                             ("auto-mode", "p5.48xlarge"), ("api-flaky", "p5.48xlarge")])
def test_every_efa_check_passes_on_every_efa_node(pytester: pytest.Pytester, plugin_args: list[str], scenario: str,
                                                  itype: str) -> None:
    run = SuiteRun(pytester, plugin_args, scenario)
    assert len(run.nodes()) == 2 and all(ident.endswith(f"/{itype}") for ident in run.nodes()), run.text
    assert {test for test, _ in run.outcomes} == CHECKS, run.text
    assert set(run.outcomes.values()) == {"PASSED"}, run.text
    assert "teardown clean: nothing labelled" in run.text


@pytest.mark.parametrize("scenario, failing, messages", [
    ("efa-absent", {ALLOC, FI_INFO, DEV_IB},
     ["expected vpc.amazonaws.com/efa allocatable 32 (profile p5.48xlarge efa), observed allocatable 0",
      "No EFA provider in a pod on", "observed fi_getinfo -61 (No data available) with 0 vpc.amazonaws.com/efa requested",
      "the EFA device plugin is not running on it"]),
    ("efa-allocatable-low", {ALLOC, FI_INFO, DEV_IB},
     ["observed allocatable 4, capacity", "4 distinct EFA domain(s)", "where the profile expects 32 (4 requested)",
      "fewer interfaces attached than the instance type supports", "observed 4 (uverbs0"]),
], ids=["efa-absent", "efa-allocatable-low"])
def test_node_fault_fails_its_checks_on_that_node_only(pytester: pytest.Pytester, plugin_args: list[str],
                                                       scenario: str, failing: set[str], messages: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, scenario)
    bad = run.failing()
    assert len(run.nodes()) == 2 and len(bad) == 1, run.text
    assert next(iter(bad.values())) == failing, run.text
    for message in messages:
        assert message in run.text, message


def test_untolerated_efa_plugin_fails_every_efa_node(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "efa-plugin-untolerated")
    assert run.failing() == {ident: {ALLOC, FI_INFO, DEV_IB} for ident in run.nodes()}, run.text
    assert "does its DaemonSet tolerate the node's GPU taint?" in run.text
    assert run.text.count("observed fi_getinfo -61") == 2


def test_limited_memlock_fails_the_memlock_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    path = scenario_file(pytester, "memlock-64k", "faults:\n  - {kind: memlock-limited, nodes: [0], limit_kb: 64}\n")
    run = SuiteRun(pytester, plugin_args, path)
    assert list(run.failing().values()) == [{MEMLOCK}], run.text
    assert "expected `ulimit -l` = unlimited in an EFA pod" in run.text and "observed 64 KiB" in run.text


def test_no_efa_nodes_skips_with_the_reason(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    body = ("nodes:\n  - {instance_type: g5.2xlarge, count: 1, zone: us-west-2a, nodepool: gpu,\n"
            "     taints: [{key: nvidia.com/gpu, effect: NoSchedule}]}\n"
            "  - {instance_type: m6i.2xlarge, count: 1, zone: us-west-2a}\n")
    run = SuiteRun(pytester, plugin_args, scenario_file(pytester, "no-efa", body))
    assert run.outcomes == {(test, "no-efa-nodes"): "SKIPPED" for test in CHECKS}, run.text
    assert "no EFA nodes in the cluster (2 nodes discovered)" in run.text
