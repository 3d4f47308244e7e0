"""suites/test_karpenter.py end to end against the simulated cluster: config checks pass and fail, the measured
timeline matches the scenario's configured delays (within 1 s per phase), stalls and budgets fail with reasons."""
from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.sim.scenario import load_scenario

SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_karpenter.py"
CAN_LAUNCH, NODECLASS = "test_gpu_nodepool_can_launch", "test_gpu_nodeclass_resolves_and_is_ready"
TAINTS, LIMITS = "test_gpu_nodepool_taints_match_profile", "test_gpu_nodepool_limits_leave_room"
LATENCY = "test_gpu_node_provisioning_latency"
CONFIG = {CAN_LAUNCH, NODECLASS, TAINTS, LIMITS}
# Budgets scaled to the simulator's seconds (the default profile's are minutes, for real EC2 launches).
SIM_BUDGETS = "{launched: 5, registered: 10, initialized: 15, total: 30}"
PROFILE = f"defaults:\n  provisioning_budget_s: {SIM_BUDGETS}\nfamilies:\n  p5:\n    provisioning_budget_s: {SIM_BUDGETS}\n"
HEALTHY_POOL = """  - name: gpu
    nodeclass: gpu
    instance_types: {types}
    labels: {{workload: gpu}}
    taints: [{{key: {taint}, effect: NoSchedule}}]
    limits: {{nvidia.com/gpu: "{limit}"}}
    weight: 10
"""


def scenario_file(pytester: pytest.Pytester, name: str, body: str) -> str:
    path = pytester.path / f"{name}.yaml"
    path.write_text(f"description: {name}\nextends: healthy\n{body}")
    return str(path)


def pools(types: str = "[p5.48xlarge, g5.48xlarge]", taint: str | None = "nvidia.com/gpu", limit: str = "64") -> str:
    text = "nodepools:\n" + HEALTHY_POOL.format(types=types, taint=taint, limit=limit)
    return text if taint else text.replace("[{key: None, effect: NoSchedule}]", "[]")


class SuiteRun:
    """One subprocess run of the suite: outcome per (test, id), the output, and summary.json's checks."""

    def __init__(self, pytester: pytest.Pytester, plugin_args: list[str], scenario: str, *extra: str,
                 profile: str = PROFILE) -> None:
        (pytester.path / "profile.yaml").write_text(profile)
        reports = pytester.path / "reports"
        result = pytester.runpytest_subprocess(
            str(SUITE), f"--sim={scenario}", "-v", "-rfs", "-p", "no:cacheprovider",
            f"--gpucluster-profile={pytester.path / 'profile.yaml'}", f"--gpucluster-report-dir={reports}",
            *plugin_args, *extra)
        self.text = result.stdout.str()
        self.outcomes: dict[tuple[str, str], str] = {}
        for test, ident, outcome in re.findall(r"::(test_\w+)\[([^\]]+)\] (PASSED|FAILED|SKIPPED|ERROR)",
                                               self.text):
            self.outcomes[(test, ident)] = outcome
        summaries = glob.glob(str(reports / "*" / "summary.json"))
        self.checks = {c["name"]: c for c in json.loads(Path(summaries[0]).read_text())["checks"]} if summaries else {}

    def of(self, test: str) -> dict[str, str]:
        return {ident: outcome for (name, ident), outcome in self.outcomes.items() if name == test}

    def failed(self) -> set[str]:
        return {test for (test, _), outcome in self.outcomes.items() if outcome == "FAILED"}

    def measured(self, test_id: str) -> dict[str, float]:
        return {m["name"]: m["value"] for m in self.checks[test_id]["measurements"]}


def assert_phases_match(measured: dict[str, float], configured: dict[str, float]) -> list[str]:
    """Each configured phase vs the suite's watch and the cluster's timestamps: within 1 s. Returns the table."""
    rows = []
    for phase, want in configured.items():
        for clock in ("watch", "cluster"):
            got = measured[f"{phase} ({clock})"]
            rows.append(f"{phase:<34} configured {want:5.2f}s  {clock:<7} {got:6.3f}s  error {got - want:+.3f}s")
            assert abs(got - want) <= 1.0, "\n".join(rows)
    return rows


def configured_phases(scenario: str) -> dict[str, float]:
    spec = load_scenario(scenario)
    delays: dict[str, Any] = dict(vars(spec.karpenter))
    for fault in spec.faults_for("karpenter-slow"):
        delays[str(fault.params.get("phase", "register"))] = float(fault.params.get("seconds", 60))
    return {"NodeClaim created -> Launched": delays["launch"], "Launched -> Registered": delays["register"],
            "Registered -> Node Ready": delays["initialize"], "Initialized -> NodeClaim Ready": delays["ready"]}


@pytest.mark.parametrize("scenario", ["healthy", "g5-single-efa", "api-flaky"])
def test_timeline_matches_the_configured_delays(pytester: pytest.Pytester, plugin_args: list[str],
                                                scenario: str) -> None:
    run = SuiteRun(pytester, plugin_args, scenario)
    itype = "g5.48xlarge" if scenario == "g5-single-efa" else "p5.48xlarge"
    assert {t for t, _ in run.outcomes} == CONFIG | {LATENCY}, run.text
    assert set(run.outcomes.values()) == {"PASSED"}, run.text
    assert all(ident == f"gpu/{itype}" for _, ident in run.outcomes), run.outcomes
    measured = run.measured(f"{LATENCY}[gpu/{itype}]")
    rows = assert_phases_match(measured, configured_phases(scenario))
    print("\n".join(rows))   # the comparison, for the note (pytest -s)
    assert 0 < measured["budget total: pod created -> container started"] <= 30
    assert "teardown clean: nothing labelled" in run.text


def test_auto_mode_passes_with_its_gpu_workload_taint(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "auto-mode")
    assert run.of(LATENCY) == {"gpu/p5.48xlarge": "PASSED"}, run.text
    assert set(run.outcomes.values()) == {"PASSED"} and len(run.outcomes) == 5, run.text
    print("\n".join(assert_phases_match(run.measured(f"{LATENCY}[gpu/p5.48xlarge]"), configured_phases("auto-mode"))))


def test_slow_registration_fails_the_budget_naming_the_phase(pytester: pytest.Pytester,
                                                             plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "karpenter-slow")
    assert run.failed() == {LATENCY}, run.text
    assert re.search(r"registered 2\d\.\ds > 10s \(NodeClaim created -> Registered; slowest phase: "
                     r"boot and register (19|2\d)\.\ds\)", run.text), run.text
    print("\n".join(assert_phases_match(run.measured(f"{LATENCY}[gpu/p5.48xlarge]"),
                                         configured_phases("karpenter-slow"))))


def test_no_capacity_fails_with_the_launch_error(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, "karpenter-no-capacity")
    assert run.failed() == {LATENCY}, run.text
    assert "stalled: NodeClaim never Launched: InsufficientCapacityError" in run.text
    assert "InsufficientInstanceCapacity: We currently do not have sufficient p5.48xlarge capacity" in run.text
    assert re.search(r"scale-down: still present \d", run.text) is None, run.text


def test_taint_the_nodepool_adds_fails_config_and_stalls_the_pod(pytester: pytest.Pytester,
                                                                 plugin_args: list[str]) -> None:
    path = scenario_file(pytester, "taint-unknown", pools(taint="example.com/dedicated"))
    run = SuiteRun(pytester, plugin_args, path)
    assert run.failed() == {TAINTS, LATENCY}, run.text
    assert ("adds example.com/dedicated:NoSchedule, which GPU pods tolerating only the profile's taints stay Pending"
            in run.text)
    assert "stalled: pod pending on a taint the NodePool adds: Karpenter says `Failed to schedule pod" in run.text


def test_gpus_never_allocatable_stall_registered_but_not_initialized(pytester: pytest.Pytester,
                                                                     plugin_args: list[str]) -> None:
    path = scenario_file(pytester, "no-device-plugin", "operators:\n  nvidia_device_plugin: none\n")
    tight = "{launched: 5, registered: 10, initialized: 6, total: 8}"
    profile = f"defaults:\n  provisioning_budget_s: {tight}\nfamilies:\n  p5:\n    provisioning_budget_s: {tight}\n"
    run = SuiteRun(pytester, plugin_args, path, "-k", LATENCY, profile=profile)
    assert run.failed() == {LATENCY}, run.text
    assert "Registered but never Initialized: the node shows nvidia.com/gpu allocatable" in run.text
    assert "the NVIDIA device plugin never made its GPUs allocatable" in run.text
    assert re.search(r"initialized \d+\.\ds > 6s \(NodeClaim created -> Initialized; not reached: stuck "
                     r"\d+\.\ds after (Node Ready|Registered)\)", run.text), run.text


@pytest.mark.parametrize("name, body, failing, message", [
    ("nodeclass-not-ready", "nodeclasses:\n  - name: default\n  - {name: gpu, ready: false}\n", {NODECLASS},
     "EC2NodeClass gpu of NodePool gpu (for p5.48xlarge) is not Ready: expected Ready=True, observed False SubnetsNotFound"),
    ("limits-full", pools(limit="16"), {LIMITS},
     "NodePool gpu has no room for another p5.48xlarge: nvidia.com/gpu: 16 in use + 8 > limit 16"),
    ("untainted-pool", pools(taint=None), {TAINTS},
     "none of the profile's GPU taints (non-GPU pods could land on GPU nodes)"),
], ids=["nodeclass-not-ready", "limits-full", "untainted-pool"])
def test_config_fault_fails_its_check_only(pytester: pytest.Pytester, plugin_args: list[str], name: str, body: str,
                                           failing: set[str], message: str) -> None:
    run = SuiteRun(pytester, plugin_args, scenario_file(pytester, name, body), "-k", "not latency")
    assert run.failed() == failing, run.text
    assert set(run.of(next(iter(CONFIG - failing))).values()) == {"PASSED"}, run.text
    assert message in run.text


def test_no_nodepool_for_the_gpu_type_fails_and_skips_the_rest(pytester: pytest.Pytester,
                                                               plugin_args: list[str]) -> None:
    run = SuiteRun(pytester, plugin_args, scenario_file(pytester, "g5-only-pool", pools(types="[g5.48xlarge]")))
    assert run.of(CAN_LAUNCH) == {"no-nodepool/p5.48xlarge": "FAILED"}, run.text
    assert "No NodePool can launch p5.48xlarge" in run.text
    assert "gpu: requirement node.kubernetes.io/instance-type In ['g5.48xlarge']" in run.text
    for test in (NODECLASS, TAINTS, LIMITS):
        assert run.of(test) == {"no-nodepool/p5.48xlarge": "SKIPPED"}, run.text
