"""suites/test_aws.py end to end against the simulated cluster (--sim): healthy passes, each aws-* fault fails its check."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "test_aws.py"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytest_gpucluster.sim.seed") is None,
                                reason="the simulated cluster has no seeding yet (pytest_gpucluster.sim.seed)")

EFA_SUPPORT = "test_instance_type_supports_efa"
EFA_SG = "test_efa_security_group_allows_itself"
SUBNETS = "test_subnet_selector_finds_tagged_subnets"
GROUPS = "test_security_group_selector_finds_tagged_groups"
ALL = {EFA_SUPPORT, EFA_SG, "test_gpu_instance_is_running", SUBNETS, GROUPS, "test_node_role_exists"}


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real suites/test_aws.py, copied into the pytester dir; the subprocess imports the checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_aws=SUITE.read_text())
    return "test_aws.py"


def _run(pytester: pytest.Pytester, plugin_args: list[str], scenario: str) -> tuple[dict[str, set[str]], str]:
    result = pytester.runpytest_subprocess("test_aws.py", f"--sim={scenario}", "-v", "-rf", "-p", "no:cacheprovider",
                                           "--gpucluster-no-report", *plugin_args)
    text = result.stdout.str()
    outcomes: dict[str, set[str]] = {}
    for test, outcome in re.findall(r"::(test_\w+)\[[^\]]*\] (PASSED|FAILED|SKIPPED|ERROR)", text):
        outcomes.setdefault(test, set()).add(outcome)
    return outcomes, text


@pytest.mark.usefixtures("suite")
def test_healthy_passes_every_aws_check(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    outcomes, text = _run(pytester, plugin_args, "healthy")
    assert outcomes == {name: {"PASSED"} for name in ALL}, text


@pytest.mark.parametrize("scenario, failing, message", [
    ("aws-sg-no-self-rule", {EFA_SG}, "self inbound no, self outbound no"),
    ("aws-no-efa-support", {EFA_SUPPORT}, "EC2 says p5.48xlarge does not support EFA"),
    ("aws-missing-discovery-tags", {SUBNETS, GROUPS}, "{karpenter.sh/discovery=gpucluster-sim} -> nothing"),
])
@pytest.mark.usefixtures("suite")
def test_fault_fails_its_check_only(pytester: pytest.Pytester, plugin_args: list[str], scenario: str,
                                    failing: set[str], message: str) -> None:
    outcomes, text = _run(pytester, plugin_args, scenario)
    assert {name for name, seen in outcomes.items() if "FAILED" in seen} == failing, text
    assert all(seen == {"PASSED"} for name, seen in outcomes.items() if name not in failing), text
    assert message in text


@pytest.mark.usefixtures("suite")
def test_no_aws_account_skips_the_module_with_one_reason(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    scenario = pytester.path / "no-aws.yaml"
    scenario.write_text("description: healthy without an AWS account\nextends: healthy\naws: {enabled: false}\n")
    result = pytester.runpytest_subprocess("test_aws.py", f"--sim={scenario}", "-rs", "-p", "no:cacheprovider",
                                           "--gpucluster-no-report", *plugin_args)
    text = result.stdout.str()
    reasons = set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d*:? ?(.*)", text))
    assert reasons == {"AWS checks skipped: the simulated scenario has no AWS account (its aws: section is not enabled)"}, text
    assert "Traceback" not in text and result.parseoutcomes().get("passed", 0) == 0
