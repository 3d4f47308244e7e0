"""Severity is the profile's: each check's tier (blocking / advisory), advisory failures as WARN that leave the
verdict and the exit code alone, the multi-tenant switch of the GPU-leak check, validation and `profile show`."""
from __future__ import annotations

import ast
import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.cli import main
from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.report.compare import compare
from pytest_gpucluster.report.grid import PASS, WARN, build_rows, grid_block
from pytest_gpucluster.report.headline import headline_block
from pytest_gpucluster.report.html import verdict_block
from pytest_gpucluster.report.runinfo import RunInfo
from pytest_gpucluster.report.summary import ACCEPTED, NOT_ACCEPTED, CheckResult, build_summary, verdict_line
from pytest_gpucluster.tiers import ADVISORY, BLOCKING, UNLISTED_REASON, Tiers

SUITES = Path(__file__).resolve().parents[2] / "suites"
LEAK = "test_gpu_visibility.py::test_pod_without_gpu_sees_none"
SMI = "test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu"


def test_every_shipped_check_has_a_tier_and_a_reason_in_the_default_profile() -> None:
    tiers = load_profile().data["tiers"]
    for path in sorted(SUITES.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                keys = [k for k in tiers if k.partition("::")[0] == path.name
                        and fnmatchcase(node.name, k.partition("::")[2])]
                assert keys, f"{path.name}::{node.name} has no entry in the profile's tiers:"
                assert tiers[keys[0]]["tier"] in (BLOCKING, ADVISORY) and tiers[keys[0]]["reason"].strip()


def test_the_gpu_leak_is_advisory_unless_the_cluster_is_multi_tenant(tmp_path: Path) -> None:
    shipped = load_profile()
    assert shipped.data["cluster"]["multi_tenant"] is False
    leak = shipped.tiers.of("test_gpu_visibility.py", "test_pod_without_gpu_sees_none")
    assert (leak.tier, leak.default) == (ADVISORY, ADVISORY) and "AL2023" in leak.reason
    assert shipped.tiers.of("test_gpu_visibility.py", "test_nvidia_smi_sees_every_gpu").tier == BLOCKING
    mine = shipped.tiers.of("test_mine.py", "test_x")
    assert (mine.tier, mine.reason) == (BLOCKING, UNLISTED_REASON)
    user = tmp_path / "shared.yaml"
    user.write_text("cluster:\n  multi_tenant: true\n")
    leak = load_profile(user).tiers.of("test_gpu_visibility.py", "test_pod_without_gpu_sees_none")
    assert (leak.tier, leak.default) == (BLOCKING, BLOCKING)          # the shipped default for a multi-tenant cluster


def test_a_user_profile_changes_a_tier_and_the_change_is_marked(tmp_path: Path) -> None:
    user = tmp_path / "strict.yaml"
    user.write_text(f"tiers:\n  {LEAK}: {{tier: blocking}}\n"
                    "  test_mine.py::test_*: {tier: advisory, reason: our own soft checks}\n")
    tiers = load_profile(user).tiers
    leak = tiers.of("test_gpu_visibility.py", "test_pod_without_gpu_sees_none")
    assert (leak.tier, leak.default, leak.changed_by_profile) == (BLOCKING, ADVISORY, True)
    assert "AL2023" in leak.reason                                    # the shipped reason stays with the entry
    assert tiers.of("test_mine.py", "test_soft").tier == ADVISORY


@pytest.mark.parametrize("body, message", [
    (f"{LEAK}: {{tier: optional}}", rf"tiers\.{LEAK}\.tier: expected blocking or advisory, got 'optional'"),
    (f"{LEAK}: {{when_multi_tenant: never}}", rf"tiers\.{LEAK}\.when_multi_tenant: expected blocking or advisory"),
    (f"{LEAK}: {{tier: advisory, reason: ''}}", rf"tiers\.{LEAK}\.reason: expected a sentence"),
    (f"{LEAK}: {{teir: advisory}}", rf"tiers\.{LEAK}\.teir: unknown key 'teir'"),
    ("gpu_visibility::leak: {tier: advisory, reason: x}", r"tiers\.gpu_visibility::leak: expected `test_module.py::"),
])
def test_a_bad_tier_entry_is_a_usage_error_with_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    user = tmp_path / "p.yaml"
    user.write_text(f"tiers:\n  {body}\n")
    with pytest.raises(pytest.UsageError, match=r"p\.yaml:2: " + message.replace("::", "::")):
        load_profile(user)


def test_a_new_tier_entry_needs_its_tier_and_reason(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("tiers:\n  test_mine.py::test_x: {tier: advisory}\n")
    with pytest.raises(pytest.UsageError, match=r"p\.yaml: tiers: a new entry needs `tier` and `reason`: "
                                                r"test_mine\.py::test_x"):
        load_profile(user)


def _checks(leak: str = "failed") -> list[CheckResult]:
    out = []
    for node in ("ip-a", "ip-b"):
        for test, outcome in ((SMI, "passed"), (LEAK, leak if node == "ip-b" else "passed")):
            module, function = test.split("::")
            out.append(CheckResult(f"suites/{module}::{function}[{node}/p5.48xlarge]", outcome=outcome, node=node,
                                   instance_type="p5.48xlarge", nodes=[node]))
    return out


def _summary(checks: list[CheckResult], multi_tenant: bool = False) -> dict[str, Any]:
    profile = load_profile()
    info = RunInfo(run_id="20261123-020000-abcd", tiers=Tiers(profile.data["tiers"], multi_tenant=multi_tenant))
    return build_summary(info, checks, started="2026-11-23T02:00:00Z", finished="2026-11-23T02:10:00Z",
                         duration_s=600.0, tool_version="0", judge_required=False)


def test_an_advisory_failure_is_a_warn_that_keeps_the_verdict() -> None:
    doc = _summary(_checks())
    assert doc["verdict"] == ACCEPTED and doc["counts"]["warned"] == 1 and doc["counts"]["failed"] == 0
    warned = [c for c in doc["checks"] if c["outcome"] == "warned"]
    assert [c["name"] for c in warned] == ["test_pod_without_gpu_sees_none[ip-b/p5.48xlarge]"]
    tiers = {c["name"].split("[")[0]: c["tier"] for c in doc["checks"]}
    assert tiers == {"test_nvidia_smi_sees_every_gpu": BLOCKING, "test_pod_without_gpu_sees_none": ADVISORY}
    warning = doc["warnings"][0]
    assert warning["nodeids"][0].endswith("[ip-b/p5.48xlarge]") and "AL2023" in warning["reason"]
    assert warning["check"] == f"suites/{LEAK}" and warning["count"] == 1
    assert verdict_line(doc) == "ACCEPTED (1 advisory warning)"
    banner = verdict_block(doc)
    assert "gc-accepted" in banner and "1 advisory warnings (WARN)" in banner and 'id="gc-warnings"' in banner
    blocked = _summary(_checks(), multi_tenant=True)
    assert blocked["verdict"] == NOT_ACCEPTED and blocked["counts"]["failed"] == 1 and not blocked["warnings"]


def test_the_grid_and_health_strip_show_warn() -> None:
    checks = _checks("warned")
    rows = {r.node: r for r in build_rows(checks)[0]}
    assert rows["ip-b"].cells["isolation"].state == WARN and rows["ip-b"].state == WARN
    assert rows["ip-a"].state == PASS
    html = grid_block(checks, lambda c, n: "#", lambda n: None)
    assert 'class="gc-w"' in html and "advisory" in html
    health = [CheckResult(f"suites/test_node_health.py::test_clocks_not_throttled[{n}/p5.48xlarge]", outcome=o,
                          node=n, instance_type="p5.48xlarge", nodes=[n]) for n, o in (("a", "passed"), ("b", "warned"))]
    assert "warn" in headline_block(health, {})


def test_compare_does_not_gate_on_a_new_warning_but_on_a_warning_that_now_blocks() -> None:
    def doc(outcome: str) -> dict[str, Any]:
        return {"schema_version": 1, "run_id": "20261123-020000-abcd", "verdict": ACCEPTED, "counts": {},
                "checks": [{"nodeid": f"suites/{LEAK}[a/p5.48xlarge]", "node": "a", "outcome": outcome,
                            "measurements": []}]}
    assert compare(doc("passed"), doc("warned")) == []
    assert [r.kind for r in compare(doc("warned"), doc("failed"))] == ["flipped"]


def test_profile_show_prints_each_checks_tier_default_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    assert main(["profile", "show"]) == 0
    out = capsys.readouterr().out
    assert "cluster.multi_tenant: false" in out
    assert (f"  {LEAK}: advisory (default advisory; blocking when cluster.multi_tenant is true)    # "
            "the stock EKS AL2023 setup leaks") in out
    assert f"  {SMI}: blocking (default blocking)    # a GPU the driver does not show cannot train" in out
    user = tmp_path / "strict.yaml"
    user.write_text(f"tiers:\n  {LEAK}: {{tier: blocking}}\n")
    assert main(["profile", "show", "--profile", str(user)]) == 0
    assert f"  {LEAK}: blocking (default advisory, changed by your profile;" in capsys.readouterr().out


LEAKING_SUITE = {"test_gpu_visibility": "def test_pod_without_gpu_sees_none():\n    assert False, 'GPU leak'\n\n"
                                        "def test_nvidia_smi_sees_every_gpu():\n    pass\n"}


@pytest.mark.parametrize("multi_tenant, verdict, code", [(False, ACCEPTED, 0), (True, NOT_ACCEPTED, 1)])
def test_an_advisory_failure_exits_0_and_a_blocking_one_1(pytester: pytest.Pytester, plugin_args: list[str],
                                                        multi_tenant: bool, verdict: str, code: int) -> None:
    pytester.makepyfile(**LEAKING_SUITE)
    pytester.makefile(".yaml", profile=f"cluster:\n  multi_tenant: {str(multi_tenant).lower()}\n")
    result = pytester.runpytest_subprocess(*plugin_args, "--gpucluster-report-dir", "reports", "-p", "no:cacheprovider",
                                           "--gpucluster-profile", "profile.yaml")
    summary = json.loads(next(pytester.path.glob("reports/*/summary.json")).read_text())
    assert (summary["verdict"], result.ret) == (verdict, code), result.stdout.str()
    assert summary["counts"]["warned" if code == 0 else "failed"] == 1
