"""The fault matrix's rows, judged on plain JUnit cases: must-fail tests by name, cascades with a reason, every
other test passing; the row format as fault_matrix.yaml writes it (old per-module keys read and ignored)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .suite_runs import GPUCLUSTER_RUN, Case, CasePattern, judge_row, load_matrix, row_options, row_paths

NODE, OTHER = "ip-10-0-52-239.us-west-2.compute.internal", "ip-10-0-52-2.us-west-2.compute.internal"


def case(test: str, node: str, outcome: str = "passed") -> Case:
    module, function = test.split("::")
    return Case(module.removesuffix(".py"), f"{function}[{node}/p5.48xlarge]", outcome, f"{outcome}: {test}")


def matrix(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text("scenarios:\n" + body)
    return path


XID_ROW = """  xid-errors:
    verdict: NOT ACCEPTED
    must_fail_tests: ["test_node_health.py::test_no_xid_errors[ip-10-0-52-239.*]"]
    why: Xid 79 on one node; only the Xid check sees it
"""
HEALTH = ["test_node_health.py::test_no_xid_errors", "test_node_health.py::test_dcgm_diagnostics_pass",
          "test_node_health.py::test_ecc_and_row_remapping_clean"]


def xid_run(**outcomes: str) -> list[Case]:
    """Every health check on both nodes: the Xid check fails on NODE; `check=outcome` overrides one on NODE."""
    cases = []
    for test in HEALTH:
        function = test.split("::")[1]
        default = "failed" if function == "test_no_xid_errors" else "passed"
        cases += [case(test, NODE, outcomes.get(function, default)), case(test, OTHER)]
    return cases


def test_a_health_scenario_passes_when_only_its_own_check_fails(tmp_path: Path) -> None:
    row = load_matrix(matrix(tmp_path, XID_ROW))["xid-errors"]
    assert judge_row(row, xid_run()) == []


def test_a_health_scenario_that_fails_another_check_fails_its_row(tmp_path: Path) -> None:
    row = load_matrix(matrix(tmp_path, XID_ROW))["xid-errors"]
    problems = judge_row(row, xid_run(test_dcgm_diagnostics_pass="failed"))
    assert len(problems) == 1 and problems[0].startswith(
        f"test_node_health::test_dcgm_diagnostics_pass[{NODE}/p5.48xlarge] FAILED under xid-errors, and the row "
        "neither requires it"), problems
    assert judge_row(row, xid_run(test_ecc_and_row_remapping_clean="error")) != []


def test_a_must_fail_test_that_passes_or_did_not_run_fails_the_row(tmp_path: Path) -> None:
    row = load_matrix(matrix(tmp_path, XID_ROW))["xid-errors"]
    passed = judge_row(row, xid_run(test_no_xid_errors="passed"))
    assert len(passed) == 1 and "the check cannot see this fault" in passed[0]
    skipped = judge_row(row, xid_run(test_no_xid_errors="skipped"))
    assert len(skipped) == 1 and "skipped" in skipped[0]
    absent = judge_row(row, [c for c in xid_run() if c.function != "test_no_xid_errors"])
    assert absent == ["test_node_health.py::test_no_xid_errors[ip-10-0-52-239.*] must fail under xid-errors (Xid 79 "
                      "on one node; only the Xid check sees it), but no such test ran"]


def test_a_cascade_allows_a_failure_and_needs_a_reason(tmp_path: Path) -> None:
    body = XID_ROW + '    cascade: {"test_node_health.py::test_dcgm_*[ip-10-0-52-239.*]": "DCGM reads the same GPU"}\n'
    row = load_matrix(matrix(tmp_path, body))["xid-errors"]
    assert judge_row(row, xid_run(test_dcgm_diagnostics_pass="failed")) == []
    assert judge_row(row, xid_run()) == []                       # a cascade may also pass
    with pytest.raises(ValueError, match=r"scenarios\.xid-errors\.cascade: expected a mapping of test pattern -> why"):
        load_matrix(matrix(tmp_path, XID_ROW + '    cascade: {"test_nccl.py::*": ""}\n'))


def test_patterns_name_module_function_and_parameters() -> None:
    pattern = CasePattern.parse("test_nccl.py::*_across_nodes*[*ip-10-0-52-239.*]")
    pair = Case("test_nccl", f"test_all_reduce_is_correct_across_nodes[{OTHER}+{NODE}/p5.48xlarge]", "failed")
    assert pattern.matches(pair) and not pattern.matches(Case("test_nccl", "test_x_on_one_node[a/p5]", "failed"))
    assert CasePattern.parse("test_aws.py::test_node_role_exists").matches(Case("test_aws", "test_node_role_exists[gpu]",
                                                                                 "failed"))
    for bad in ("test_nccl::test_x", "suites/test_nccl.py::test_x", "test_nccl.py::"):
        with pytest.raises(ValueError, match="not a test pattern"):
            CasePattern.parse(bad)


def test_old_per_module_keys_are_read_and_ignored(tmp_path: Path) -> None:
    both = XID_ROW + "    must_fail: [test_node_health]\n    must_pass: [test_gpu_visibility]\n"
    assert load_matrix(matrix(tmp_path, both))["xid-errors"].verdict == "NOT ACCEPTED"
    only_old = "  x:\n    must_fail: [test_node_health]\n    must_pass: all\n    why: old\n"
    with pytest.raises(ValueError, match=r"scenarios\.x: a row needs `verdict` and `must_fail_tests`"):
        load_matrix(matrix(tmp_path, only_old))
    with pytest.raises(ValueError, match=r"scenarios\.xid-errors: unknown keys \['must_fial'\]"):
        load_matrix(matrix(tmp_path, XID_ROW + "    must_fial: []\n"))


def test_a_narrowed_row_runs_its_modules_with_partial_and_names_only_them(tmp_path: Path) -> None:
    body = ("  nccl-margin:\n    verdict: NOT ACCEPTED\n    modules: [test_nccl.py]\n    via: gpucluster run\n"
            "    must_fail_tests: [test_nccl.py::test_bus_bandwidth_on_one_node_meets_floor]\n    why: low margin\n")
    row = load_matrix(matrix(tmp_path, body))["nccl-margin"]
    assert row_paths(row) == ("suites/test_nccl.py",) and row_options(row) == ("--gpucluster-partial",)
    assert row.via == GPUCLUSTER_RUN
    whole = load_matrix(matrix(tmp_path, XID_ROW))["xid-errors"]
    assert row_paths(whole) == () and row_options(whole) == ()
    outside = body.replace("test_nccl.py::test_bus", "test_efa.py::test_bus")
    with pytest.raises(ValueError, match=r"name modules the narrowed run \(\['test_nccl.py'\]\) does not run"):
        load_matrix(matrix(tmp_path, outside))
