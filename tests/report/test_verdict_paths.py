"""ACCEPTED is earned on every path (plain data and small pytester runs): deselection beside a glob, xfail, partial
runs, no GPU node, an altered requirement set, teardown leftovers, lost evidence in compare, the exit codes."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.report.compare import compare
from pytest_gpucluster.report.coverage import (MISSING, NO_GPU_NODE, NOT_APPLICABLE, SHOWN, Outcome, judge_coverage,
                                               requirement_changes, requirement_line)
from pytest_gpucluster.report.grid import KNOWN, NOT_SHOWN, build_rows
from pytest_gpucluster.report.headline import headline_block
from pytest_gpucluster.report.html import verdict_block
from pytest_gpucluster.report.summary import ACCEPTED, INCOMPLETE, NOT_ACCEPTED, CheckResult, verdict

SUITES = Path(__file__).resolve().parents[2] / "suites"
A, B = "ip-a", "ip-b"
NODES = [{"name": A, "instance_type": "p5.48xlarge", "gpu": True, "efa": True, "gpus": 8, "floors": [1, 2]},
         {"name": B, "instance_type": "p5.48xlarge", "gpu": True, "efa": True, "gpus": 8, "floors": [1, 2]}]
XID = "test_node_health.py::test_no_xid_errors"
AWS = {"aws": {"scope": "cluster", "tests": ["test_aws.py::*"]}}
HEALTH = {"node-health-xid": {"scope": "node", "tests": [XID]}}
REFUSED = ("cannot judge: the cluster refused a privileged pod reading /dev/kmsg: forbidden: create pods ... "
           "violates PodSecurity \"baseline:latest\": privileged")


def on(test: str, node: str | None, outcome: str = "passed", reason: str | None = None) -> Outcome:
    module, function = test.split("::")
    where = f"[{node}/p5.48xlarge]" if node else "[gpu]"
    return Outcome.of(f"{module}::{function}{where}", outcome, "p5.48xlarge" if node else None, node, (), reason)


def aws_ran(*functions: str) -> list[Outcome]:
    return [on(f"test_aws.py::{f}", None) for f in functions]


def judged(required: dict[str, Any], outcomes: list[Outcome], nodes: list[dict[str, Any]] = NODES,
           deselected: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    return judge_coverage(required, nodes, outcomes, deselected)


def test_a_deselected_test_is_missing_although_the_glob_matches_others_of_its_module() -> None:
    cov = judged(AWS, aws_ran("test_node_role_exists", "test_gpu_instance_is_running"),
                 deselected=(("test_aws.py", "test_efa_security_group_allows_itself"),))
    item = cov[0]
    assert item["status"] == MISSING, item
    assert item["missing"] == [{"subject": "cluster", "test": "test_aws.py::test_efa_security_group_allows_itself",
                                "reason": "deselected (-m/-k)", "how": item["missing"][0]["how"], "narrowed": True}]
    assert verdict({"passed": 2}, False, cov)[0] == INCOMPLETE
    assert verdict({"passed": 2}, False, cov, partial=True)[0] == ACCEPTED      # deliberate: partial forgives it


def test_a_refused_kernel_log_reader_is_missing_and_partial_does_not_forgive_it() -> None:
    cov = judged(HEALTH, [on(XID, A, "skipped", REFUSED), on(XID, B, "skipped", REFUSED)])
    assert cov[0]["status"] == MISSING and not cov[0]["missing"][0]["narrowed"]
    for partial in (False, True):
        result, reasons = verdict({"passed": 10, "skipped": 2}, False, cov, partial=partial)
        assert result == INCOMPLETE and "refused a privileged pod" in reasons[0], (partial, reasons)
    assert "forgives only what the run left out on purpose" in verdict({"passed": 1}, False, cov, partial=True)[1][-1]


MPI_SKIP = "multi-node NCCL skipped: the MPI operator is not installed (no MPIJob/v2beta1 API)"


@pytest.mark.parametrize("cause", ["MPI operator absent", "ECC unreadable", "image pull failure",
                                   "AWS credentials rejected", "probe Forbidden"])
def test_partial_never_forgives_a_skip_the_cluster_caused(cause: str) -> None:
    cov = judged(HEALTH, [on(XID, A), on(XID, B, "skipped", f"cannot judge: {cause}")])
    result, reasons = verdict({"passed": 1, "skipped": 1}, False, cov, partial=True)
    assert result == INCOMPLETE and cause in reasons[0]


def test_partial_forgives_deselection_node_selection_and_modules_not_selected() -> None:
    deselected = judged(HEALTH, [], deselected=(("test_node_health.py", "test_no_xid_errors"),))
    unselected = judged(HEALTH, [on(XID, A)], nodes=[NODES[0], dict(NODES[1], selected=False)])
    not_collected = judged(HEALTH, aws_ran("test_node_role_exists"))
    for cov in (deselected, unselected, not_collected):
        assert all(m["narrowed"] for m in cov[0]["missing"]), cov
        assert verdict({"passed": 1}, False, cov)[0] == INCOMPLETE
        result, reasons = verdict({"passed": 1}, False, cov, partial=True)
        assert result == ACCEPTED and reasons[0].startswith("partial run (--gpucluster-partial): node-health-xid")
    assert "was not part of the run" in not_collected[0]["missing"][0]["reason"]


def test_a_known_failure_is_not_shown() -> None:
    cov = judged(HEALTH, [on(XID, A), on(XID, B, "xfailed")])
    assert cov[0]["status"] == MISSING and cov[0]["missing"][0]["subject"] == B
    assert "known failure (xfail)" in cov[0]["missing"][0]["reason"]
    assert verdict({"passed": 1, "xfailed": 1}, False, cov)[0] == INCOMPLETE


def _check(nodeid: str, node: str, outcome: str) -> CheckResult:
    return CheckResult(nodeid=nodeid, outcome=outcome, node=node, instance_type="p5.48xlarge", nodes=[node])


def test_grid_and_health_strip_draw_a_known_failure_apart_from_a_pass() -> None:
    checks = [_check(f"suites/{XID}[{A}/p5.48xlarge]", A, "passed"),
              _check(f"suites/{XID}[{B}/p5.48xlarge]", B, "xfailed")]
    rows = {r.node: r for r in build_rows(checks)[0]}
    assert rows[B].cells["node health"].state == KNOWN and rows[B].state == NOT_SHOWN
    assert rows[A].state != NOT_SHOWN
    assert "known failure" in headline_block(checks, {})


def test_banner_counts_known_failures() -> None:
    doc = {"run_id": "20261123-020000-abcd", "verdict": INCOMPLETE, "verdict_reasons": [], "partial": [],
           "counts": {"passed": 5, "xfailed": 2, "xpassed": 1}, "coverage": [], "checks": []}
    html = verdict_block(doc)
    assert "2 known failures (xfailed)" in html and "1 known failures passed (xpassed)" in html


def test_a_cluster_without_gpu_nodes_is_incomplete() -> None:
    cpu = [{"name": "c", "instance_type": "m6i.2xlarge", "gpu": False, "efa": False}]
    required = load_profile().data["required"]
    cov = judged(required, aws_ran("test_node_role_exists"), nodes=cpu)
    gpu_items = [i for i in cov if i["name"] == "gpu-visibility"]
    assert gpu_items[0]["status"] == MISSING and gpu_items[0]["missing"][0]["reason"] == NO_GPU_NODE
    assert {i["status"] for i in cov if i["name"] == "efa"} == {NOT_APPLICABLE}   # no EFA is not a fault
    result, reasons = verdict({"passed": 1}, False, cov)
    assert result == INCOMPLETE and any(NO_GPU_NODE in r for r in reasons)


def test_an_empty_or_altered_requirement_set_is_named_with_its_profile(tmp_path: Path) -> None:
    user = tmp_path / "lax.yaml"
    user.write_text("required:\n  nccl-multi-node: null\n  aws: {scope: cluster, tests: [test_aws.py::test_node_role_exists]}\n")
    profile = load_profile(user)
    changes = requirement_changes(profile.shipped_required, profile.data["required"], profile.required_from)
    assert changes["altered"] and changes["removed"] == ["nccl-multi-node"] and changes["changed"] == ["aws"]
    line = requirement_line(changes)
    assert line is not None and str(user) in line and "removed nccl-multi-node" in line
    empty = {name: None for name in profile.shipped_required}
    line = requirement_line(requirement_changes(profile.shipped_required, empty, [str(user)]))
    assert line is not None and line.startswith("nothing is required") and str(user) in line
    shipped = load_profile()
    assert requirement_line(requirement_changes(shipped.shipped_required, shipped.data["required"])) is None
    doc = {"run_id": "20261123-020000-abcd", "verdict": ACCEPTED, "verdict_reasons": [], "partial": [],
           "counts": {"passed": 5}, "coverage": [], "checks": [], "requirements": changes}
    assert 'id="gc-required-altered"' in verdict_block(doc) and "lax.yaml" in verdict_block(doc)


def test_teardown_leftovers_are_not_accepted() -> None:
    result, reasons = verdict({"passed": 5}, False, [], leftovers=["pods/gpucluster-x/probe-1"])
    assert result == NOT_ACCEPTED and "pods/gpucluster-x/probe-1" in reasons[0]


def _suite_functions() -> dict[str, set[str]]:
    out = {}
    for path in SUITES.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        out[path.name] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return out


# Tests a cluster may lack by design (the profile's `required:` header says why each is left out)
NOT_REQUIRED = {"test_device_plugins.py::test_gpu_operator_ready_on", "test_device_plugins.py::test_gfd_labels_agree_with_node",
                "test_karpenter.py::test_gpu_node_provisioning_latency", "test_custom_example.py::*",
                "test_nccl.py::test_bus_bandwidth_over_every_efa_node_of_a_type",
                "test_nccl.py::test_node_passes_nccl_across_nodes"}


def test_the_default_requirements_cover_every_shipped_check() -> None:
    from fnmatch import fnmatchcase
    required = [t for item in load_profile().data["required"].values() if item for t in item["tests"]]
    functions = _suite_functions()
    for test in required:
        module, _, function = test.partition("::")
        assert any(fnmatchcase(f, function) for f in functions.get(module, ())), f"{test} is not a test of suites/"
    uncovered = [f"{m}::{f}" for m, fs in functions.items() for f in sorted(fs)
                 if not any(fnmatchcase(f"{m}::{f}", t) for t in [*required, *NOT_REQUIRED])]
    assert uncovered == [], f"shipped checks no `required:` item asks for: {uncovered}"


def _doc(checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema_version": 1, "run_id": "20261123-020000-abcd", "verdict": ACCEPTED, "counts": {}, "checks": checks}


@pytest.mark.parametrize("now", ["skipped", "xfailed", None])
def test_compare_flags_a_check_that_passed_and_now_shows_nothing(now: str | None) -> None:
    check = {"nodeid": f"suites/{XID}[{A}/p5.48xlarge]", "node": A, "outcome": "passed", "measurements": []}
    new = _doc([] if now is None else [dict(check, outcome=now)])
    found = compare(_doc([check]), new)
    assert [(r.check, r.old) for r in found] == [(f"suites/{XID}[*/p5.48xlarge]", "passed")], found
    assert found[0].kind == ("disappeared" if now is None else "lost")


def test_required_items_shown_in_a_healthy_default_run_have_their_population() -> None:
    g5 = [{"name": "g", "instance_type": "g5.48xlarge", "gpu": True, "efa": True, "gpus": 8, "nvlink": False}]
    nvlink = {"n": {"scope": "node", "only": ["nvlink"], "tests": ["test_node_health.py::test_nvlink_and_fabric_ready"]}}
    assert judged(nvlink, [], nodes=g5)[0]["status"] == NOT_APPLICABLE        # PCIe-only GPUs: no NVLink to show
    ok = judged(nvlink, [on("test_node_health.py::test_nvlink_and_fabric_ready", A)],
                nodes=[dict(NODES[0], nvlink=True)])
    assert ok[0]["status"] == SHOWN
    cpu = {"c": {"scope": "node", "nodes": "cpu", "tests": ["test_taints.py::test_cpu_node_has_no_gpu_taint"]}}
    assert judged(cpu, [], nodes=NODES)[0]["status"] == NOT_APPLICABLE        # no CPU node: nothing to require


# -- exit codes through pytest (report plugin only, a report asked for) ------------------------------------------
def test_an_all_skipped_run_is_not_accepted_and_exits_1(run_suite: Any) -> None:
    run = run_suite("import pytest\n\n@pytest.mark.skip(reason='no AWS credentials')\ndef test_a():\n    pass\n")
    assert run.summary["verdict"] == NOT_ACCEPTED and run.result.ret == 1


def test_a_known_failure_that_passes_is_not_accepted_and_exits_1(run_suite: Any) -> None:
    run = run_suite("import pytest\n\ndef test_ok():\n    pass\n\n"
                    "@pytest.mark.xfail(reason='known', strict=False)\ndef test_x():\n    pass\n")
    assert run.summary["verdict"] == NOT_ACCEPTED and run.summary["counts"]["xpassed"] == 1 and run.result.ret == 1


LEAVES_OBJECTS = '''
import pytest
from pytest_gpucluster.kube import cleanup
from pytest_gpucluster.session import SESSION_KEY

class Cluster:
    def close(self):
        pass

def pytest_sessionstart(session):
    run = session.config.stash[SESSION_KEY]
    run._cluster = Cluster()   # as if connected; the teardown below is what a cluster refusing deletes would give
    cleanup.teardown_run = lambda *a, **k: cleanup.TeardownReport(leftovers=["pods/gpucluster-x/probe-1"])
'''


def test_teardown_leftovers_reach_summary_json_and_the_exit_code(pytester: pytest.Pytester,
                                                                  plugin_args: list[str]) -> None:
    pytester.makeconftest(LEAVES_OBJECTS)
    pytester.makepyfile(test_one="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess(*plugin_args, "--gpucluster-report-dir", "reports", "-p", "no:cacheprovider")
    summary = json.loads(next(pytester.path.glob("reports/*/summary.json")).read_text())
    assert summary["teardown_leftovers"] == ["pods/gpucluster-x/probe-1"], result.stdout.str()
    assert summary["verdict"] == NOT_ACCEPTED and result.ret == 1
    result.stdout.fnmatch_lines(["*TEARDOWN LEFT 1 OBJECTS BEHIND*"])


def test_readme_exit_code_table_names_an_existing_test_per_row() -> None:
    root = SUITES.parent
    rows = [line for line in (root / "README.md").read_text().splitlines() if line[:4] in {f"| {n} " for n in range(7)}]
    assert {int(r.split("|")[1]) for r in rows} == {0, 1, 2, 3, 4, 6}, rows
    for row in rows:
        nodeid = row.rstrip(" |").rsplit("`", 2)[-2]
        path, _, function = nodeid.partition("::")
        tree = ast.parse((root / path).read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in names, f"README's exit-code row names {nodeid}, which does not exist"
