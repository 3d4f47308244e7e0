"""suites/test_aws.py end to end against the simulated cluster (--sim): healthy passes, each aws-* fault fails its check.
Shipped scenarios are read from the session's one suite run per scenario (shared with the fault matrix)."""
from __future__ import annotations

import importlib.util
from typing import Callable

import pytest

from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import FAILED, PASSED, SKIPPED, Results, SuiteSpec, custom

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytest_gpucluster.sim.seed") is None,
                                reason="the simulated cluster has no seeding yet (pytest_gpucluster.sim.seed)")

MODULE = "test_aws"
EFA_SUPPORT = "test_instance_type_supports_efa"
EFA_SG = "test_efa_security_group_allows_itself"
SUBNETS = "test_subnet_selector_finds_tagged_subnets"
GROUPS = "test_security_group_selector_finds_tagged_groups"
NO_AWS = custom("no-aws", "aws: {enabled: false}\n", f"suites/{MODULE}.py")   # healthy without an AWS account
ALL = {EFA_SUPPORT, EFA_SG, "test_gpu_instance_is_running", SUBNETS, GROUPS, "test_node_role_exists"}


def outcomes(run: Results) -> dict[str, set[str]]:
    """test function -> the outcomes of its cases."""
    out: dict[str, set[str]] = {}
    for (test, _), outcome in run.outcomes.items():
        out.setdefault(test, set()).add(outcome)
    return out


@pytest.mark.suites("healthy")
def test_healthy_passes_every_aws_check(shipped: Callable[[str], Results]) -> None:
    run = shipped("healthy")
    assert outcomes(run) == {name: {PASSED} for name in ALL}, run


@pytest.mark.parametrize("scenario, failing, message", [
    ("aws-sg-no-self-rule", {EFA_SG}, "self inbound no, self outbound no"),
    ("aws-no-efa-support", {EFA_SUPPORT}, "EC2 says p5.48xlarge does not support EFA"),
    ("aws-missing-discovery-tags", {SUBNETS, GROUPS}, "{karpenter.sh/discovery=gpucluster-sim} -> nothing"),
])
def test_fault_fails_its_check_only(shipped: Callable[[str], Results], scenario: str, failing: set[str],
                                    message: str) -> None:
    run = shipped(scenario)
    seen = outcomes(run)
    assert {name for name, o in seen.items() if FAILED in o} == failing, run
    assert all(o == {PASSED} for name, o in seen.items() if name not in failing), run
    assert message in run.messages(FAILED), run


@pytest.mark.suites(NO_AWS)
def test_no_aws_account_skips_the_module_with_one_reason(custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    run = Results(custom_suite_result(NO_AWS), MODULE)
    assert run.cases and set(run.outcomes.values()) == {SKIPPED}, run
    assert run.skip_reasons() == {
        "AWS checks skipped: the simulated scenario has no AWS account (its aws: section is not enabled)"}, run
    assert "Traceback" not in run.stdout + run.run.stderr, run
