"""suites/test_karpenter.py end to end against the simulated cluster: config checks pass and fail, the measured
timeline matches the scenario's configured delays (within 1 s per phase), stalls and budgets fail with reasons.
Shipped scenarios are read from the session's one suite run per scenario (shared with the fault matrix), judged by
the seconds-sized provisioning budgets healthy.yaml's profile section gives every simulated scenario."""
from __future__ import annotations

import re
from typing import Any, Callable

import pytest

from pytest_gpucluster.sim.scenario import load_scenario
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import FAILED, PASSED, SKIPPED, Results, SuiteSpec, custom

MODULE = "test_karpenter"
CAN_LAUNCH, NODECLASS = "test_gpu_nodepool_can_launch", "test_gpu_nodeclass_resolves_and_is_ready"
TAINTS, LIMITS = "test_gpu_nodepool_taints_match_profile", "test_gpu_nodepool_limits_leave_room"
LATENCY = "test_gpu_node_provisioning_latency"
CONFIG = {CAN_LAUNCH, NODECLASS, TAINTS, LIMITS}
HEALTHY_POOL = """  - name: gpu
    nodeclass: gpu
    instance_types: {types}
    labels: {{workload: gpu}}
    taints: [{{key: {taint}, effect: NoSchedule}}]
    limits: {{nvidia.com/gpu: "{limit}"}}
    weight: 10
"""


def pools(types: str = "[p5.48xlarge, g5.48xlarge]", taint: str | None = "nvidia.com/gpu", limit: str = "64") -> str:
    text = "nodepools:\n" + HEALTHY_POOL.format(types=types, taint=taint, limit=limit)
    return text if taint else text.replace("[{key: None, effect: NoSchedule}]", "[]")


@pytest.fixture
def shipped(suite_result: Callable[[str], SuiteRun]) -> Callable[[str], Results]:
    return lambda scenario: Results(suite_result(scenario), MODULE)


def karpenter(name: str, body: str, *extra: str, profile: str | None = None) -> SuiteSpec:
    """The Karpenter suite against healthy plus body."""
    return custom(name, body, f"suites/{MODULE}.py", extra=extra, profile=profile)


TIGHT = "{launched: 5, registered: 10, initialized: 6, total: 8}"
TAINT_UNKNOWN = karpenter("taint-unknown", pools(taint="example.com/dedicated"))
NO_DEVICE_PLUGIN = karpenter("no-device-plugin", "operators:\n  nvidia_device_plugin: none\n", "-k", LATENCY,
                             profile=f"defaults:\n  provisioning_budget_s: {TIGHT}\nfamilies:\n  p5:\n"
                                     f"    provisioning_budget_s: {TIGHT}\n")
G5_ONLY_POOL = karpenter("g5-only-pool", pools(types="[g5.48xlarge]"))


@pytest.fixture
def custom_run(custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> Callable[[SuiteSpec], Results]:
    return lambda spec: Results(custom_suite_result(spec), MODULE)


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
def test_timeline_matches_the_configured_delays(shipped: Callable[[str], Results], scenario: str) -> None:
    run = shipped(scenario)
    itype = "g5.48xlarge" if scenario == "g5-single-efa" else "p5.48xlarge"
    assert {t for t, _ in run.outcomes} == CONFIG | {LATENCY}, run
    assert set(run.outcomes.values()) == {PASSED}, run
    assert all(ident == f"gpu/{itype}" for _, ident in run.outcomes), run.outcomes
    measured = run.measured(f"{LATENCY}[gpu/{itype}]")
    rows = assert_phases_match(measured, configured_phases(scenario))
    print("\n".join(rows))   # the comparison, for the note (pytest -s)
    assert 0 < measured["budget total: pod created -> container started"] <= 30
    assert "teardown clean: nothing labelled" in run.stdout, run


@pytest.mark.suites("auto-mode")
def test_auto_mode_passes_with_its_gpu_workload_taint(shipped: Callable[[str], Results]) -> None:
    run = shipped("auto-mode")
    assert run.of(LATENCY) == {"gpu/p5.48xlarge": PASSED}, run
    assert set(run.outcomes.values()) == {PASSED} and len(run.outcomes) == 5, run
    print("\n".join(assert_phases_match(run.measured(f"{LATENCY}[gpu/p5.48xlarge]"), configured_phases("auto-mode"))))


@pytest.mark.suites("karpenter-slow")
def test_slow_registration_fails_the_budget_naming_the_phase(shipped: Callable[[str], Results]) -> None:
    run = shipped("karpenter-slow")
    assert run.failed_tests() == {LATENCY}, run
    assert re.search(r"registered 2\d\.\ds > 10s \(NodeClaim created -> Registered; slowest phase: "
                     r"boot and register (19|2\d)\.\ds\)", run.messages(FAILED)), run
    print("\n".join(assert_phases_match(run.measured(f"{LATENCY}[gpu/p5.48xlarge]"),
                                         configured_phases("karpenter-slow"))))


@pytest.mark.suites("karpenter-no-capacity")
def test_no_capacity_fails_with_the_launch_error(shipped: Callable[[str], Results]) -> None:
    run = shipped("karpenter-no-capacity")
    assert run.failed_tests() == {LATENCY}, run
    failure = run.messages(FAILED)
    assert "stalled: NodeClaim never Launched: InsufficientCapacityError" in failure, run
    assert "InsufficientInstanceCapacity: We currently do not have sufficient p5.48xlarge capacity" in failure, run
    assert re.search(r"scale-down: still present \d", failure + run.stdout) is None, run


@pytest.mark.suites(TAINT_UNKNOWN)
def test_taint_the_nodepool_adds_fails_config_and_stalls_the_pod(custom_run: Callable[[SuiteSpec], Results]) -> None:
    run = custom_run(TAINT_UNKNOWN)
    assert run.failed_tests() == {TAINTS, LATENCY}, run
    failures = run.messages(FAILED)
    assert ("adds example.com/dedicated:NoSchedule, which GPU pods tolerating only the profile's taints stay Pending"
            in failures), run
    assert "stalled: pod pending on a taint the NodePool adds: Karpenter says `Failed to schedule pod" in failures, run


@pytest.mark.suites(NO_DEVICE_PLUGIN)
def test_gpus_never_allocatable_stall_registered_but_not_initialized(
        custom_run: Callable[[SuiteSpec], Results]) -> None:
    run = custom_run(NO_DEVICE_PLUGIN)
    assert run.failed_tests() == {LATENCY}, run
    failure = run.messages(FAILED)
    assert "Registered but never Initialized: the node shows nvidia.com/gpu allocatable" in failure, run
    assert "the NVIDIA device plugin never made its GPUs allocatable" in failure, run
    assert re.search(r"initialized \d+\.\ds > 6s \(NodeClaim created -> Initialized; not reached: stuck "
                     r"\d+\.\ds after (Node Ready|Registered)\)", failure), run


@pytest.mark.parametrize("spec, failing, message", [
    (karpenter("nodeclass-not-ready", "nodeclasses:\n  - name: default\n  - {name: gpu, ready: false}\n",
               "-k", "not latency"), {NODECLASS},
     "EC2NodeClass gpu of NodePool gpu (for p5.48xlarge) is not Ready: expected Ready=True; observed False SubnetsNotFound"),
    (karpenter("limits-full", pools(limit="16"), "-k", "not latency"), {LIMITS},
     "NodePool gpu has no room for another p5.48xlarge: expected room for one more node within spec.limits; "
     "observed nvidia.com/gpu: 16 in use + 8 > limit 16"),
    (karpenter("untainted-pool", pools(taint=None), "-k", "not latency"), {TAINTS},
     "none of the profile's GPU taints (non-GPU pods could land on GPU nodes)"),
], ids=["nodeclass-not-ready", "limits-full", "untainted-pool"])
def test_config_fault_fails_its_check_only(custom_run: Callable[[SuiteSpec], Results], spec: SuiteSpec,
                                           failing: set[str], message: str) -> None:
    run = custom_run(spec)
    assert run.failed_tests() == failing, run
    assert set(run.of(next(iter(CONFIG - failing))).values()) == {PASSED}, run
    assert message in run.messages(FAILED), run


@pytest.mark.suites(G5_ONLY_POOL)
def test_no_nodepool_for_the_gpu_type_fails_and_skips_the_rest(custom_run: Callable[[SuiteSpec], Results]) -> None:
    run = custom_run(G5_ONLY_POOL)
    assert run.of(CAN_LAUNCH) == {"no-nodepool/p5.48xlarge": FAILED}, run
    failure = run.messages(FAILED)
    assert "No NodePool can launch p5.48xlarge" in failure, run
    assert "gpu: requirement node.kubernetes.io/instance-type In ['g5.48xlarge']" in failure, run
    for test in (NODECLASS, TAINTS, LIMITS):
        assert run.of(test) == {"no-nodepool/p5.48xlarge": SKIPPED}, run
