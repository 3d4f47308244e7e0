"""Required evidence and the three verdicts, on plain data: report/coverage.py and report/summary.verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_gpucluster.profile import load_profile
from pytest_gpucluster.report.compare import compare
from pytest_gpucluster.report.coverage import MISSING, NOT_APPLICABLE, SHOWN, Outcome, judge_coverage, nodes_missing
from pytest_gpucluster.report.grid import NOT_SHOWN, PASS, Cell, Row, node_state
from pytest_gpucluster.report.html import coverage_block, verdict_block
from pytest_gpucluster.report.summary import ACCEPTED, INCOMPLETE, NOT_ACCEPTED, verdict, verdict_line

VIS = "test_gpu_visibility.py::test_nvidia_smi_sees_every_gpu"
NCCL1 = "test_nccl.py::test_all_reduce_is_correct_on_one_node"
MULTI = "test_nccl.py::test_all_reduce_is_correct_across_nodes"
REQUIRED: dict[str, Any] = {
    "visibility": {"scope": "node", "tests": [VIS]},
    "nccl-single-node": {"scope": "type", "only": ["multi-gpu"], "tests": [NCCL1]},
    "nccl-multi-node": {"scope": "group", "nodes": "efa", "tests": [MULTI]},
    "aws": {"scope": "cluster", "tests": ["test_aws.py::*"]},
}
A, B = "ip-a", "ip-b"
NODES = [{"name": A, "instance_type": "p5.48xlarge", "gpu": True, "efa": True, "gpus": 8, "floors": [1, 2]},
         {"name": B, "instance_type": "p5.48xlarge", "gpu": True, "efa": True, "gpus": 8, "floors": [1, 2]},
         {"name": "cpu", "instance_type": "m6i.2xlarge", "gpu": False, "efa": False}]
MPI_SKIP = ("multi-node NCCL skipped: the MPI operator is not installed (no MPIJob/v2beta1 API); install the Kubeflow "
            "MPI operator (v2beta1): kubectl apply --server-side -f https://.../mpi-operator.yaml")


def out(test: str, outcome: str = "passed", node: str | None = A, itype: str | None = "p5.48xlarge",
        reason: str | None = None) -> Outcome:
    module, function = test.split("::")
    return Outcome.of(f"suites/{module}::{function}[{node}/{itype}]", outcome, itype, node, (), reason)


def healthy() -> list[Outcome]:
    return [out(VIS, node=A), out(VIS, node=B), out(NCCL1), out(MULTI, node=f"{A}+{B}"),
            out("test_aws.py::test_node_role_exists", node=None, itype=None)]


def items(outcomes: list[Outcome], required: dict[str, Any] = REQUIRED, nodes: list[dict[str, Any]] = NODES,
          deselected: tuple[tuple[str, str], ...] = ()) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in judge_coverage(required, nodes, outcomes, deselected)}


def counts(**kw: int) -> dict[str, int]:
    return {"passed": 5, **kw}


def test_everything_shown_is_accepted_and_names_the_nodes_covered() -> None:
    cov = items(healthy())
    assert {i["status"] for i in cov.values()} == {SHOWN}
    assert cov["visibility"]["subjects"] == [A, B] and cov["nccl-multi-node"]["nodes"] == [A, B]
    assert cov["nccl-single-node"]["subjects"] == ["p5.48xlarge"] and cov["aws"]["subjects"] == ["cluster"]
    assert verdict(counts(), False, list(cov.values())) == (ACCEPTED, [])


def test_a_failed_required_check_is_not_accepted() -> None:
    cov = items([out(VIS, node=A), out(VIS, "failed", node=B), *healthy()[2:]])
    assert cov["visibility"]["status"] == "failed" and cov["visibility"]["failed"] == [B]
    result, reasons = verdict(counts(failed=1), False, list(cov.values()))
    assert result == NOT_ACCEPTED and "required evidence failed: visibility" in reasons


def test_a_skipped_required_check_is_incomplete_with_its_reason() -> None:
    cov = items([*healthy()[:3], out(MULTI, "skipped", node=f"{A}+{B}", reason=MPI_SKIP), healthy()[4]])
    item = cov["nccl-multi-node"]
    assert item["status"] == MISSING and item["missing"][0]["subject"] == "p5.48xlarge"
    result, reasons = verdict(counts(skipped=1), False, list(cov.values()))
    assert result == INCOMPLETE
    assert reasons == [f"nccl-multi-node not shown on p5.48xlarge: {MPI_SKIP}"]
    assert "kubectl apply --server-side" in reasons[0]


def test_deselected_tests_are_incomplete_unless_partial() -> None:
    cov = list(items([o for o in healthy() if o.module != "test_nccl.py"],
                     deselected=(("test_nccl.py", "test_all_reduce_is_correct_on_one_node"),
                                 ("test_nccl.py", "test_all_reduce_is_correct_across_nodes"))).values())
    result, reasons = verdict(counts(), False, cov)
    assert result == INCOMPLETE and len(reasons) == 2
    assert reasons[0].startswith("nccl-single-node not shown on p5.48xlarge: deselected (-m/-k); run the whole suite")
    result, reasons = verdict(counts(), False, cov, partial=True)
    assert result == ACCEPTED
    assert reasons[0] == "partial run (--gpucluster-partial): nccl-single-node, nccl-multi-node not shown"
    assert "--gpucluster-partial if" not in reasons[1]          # the fix is not repeated to a partial run
    doc = {"verdict": result, "partial": ["nccl-single-node", "nccl-multi-node"]}
    assert verdict_line(doc) == "ACCEPTED (partial: nccl-single-node, nccl-multi-node not shown)"


def test_a_module_that_never_ran_is_named() -> None:
    cov = items([o for o in healthy() if o.module != "test_aws.py"])
    assert cov["aws"]["missing"][0]["reason"].startswith("not run (test_aws.py was not part of the run")


def test_a_node_outside_the_sample_is_missing_with_the_option_named() -> None:
    nodes = [dict(NODES[0]), dict(NODES[1], selected=False), NODES[2]]
    cov = items([o for o in healthy() if B not in o.nodes or "+" in "".join(o.nodes)], nodes=nodes)
    miss = cov["visibility"]["missing"]
    assert [m["subject"] for m in miss] == [B] and "--gpucluster-sample" in miss[0]["reason"]
    assert nodes_missing(list(cov.values())) == frozenset({B})


def test_a_node_the_test_skipped_on_is_missing_while_others_pass() -> None:
    cov = items([out(VIS, node=A), out(VIS, "skipped", node=B, reason="cannot judge: no output"), *healthy()[2:]])
    assert cov["visibility"]["missing"] == [{"subject": B, "test": VIS, "reason": "cannot judge: no output", "how": "",
                                             "narrowed": False}]


def test_conditions_select_the_instance_types() -> None:
    nodes = [*NODES, {"name": "g", "instance_type": "g5.xlarge", "gpu": True, "efa": False, "gpus": 1, "floors": []}]
    required = {**REQUIRED, "bw": {"scope": "type", "only": ["floor-1"], "tests": [NCCL1]}}
    cov = items([*healthy(), out(VIS, node="g", itype="g5.xlarge")], required=required, nodes=nodes)
    assert cov["nccl-single-node"]["subjects"] == ["p5.48xlarge"]      # 1 GPU: no single-node all-reduce
    assert cov["bw"]["subjects"] == ["p5.48xlarge"]                    # g5.xlarge has no 1-node floor
    assert cov["visibility"]["subjects"] == [A, B, "g"]


def test_one_efa_node_of_a_type_leaves_multi_node_missing_unless_relaxed() -> None:
    one = [NODES[0], NODES[2]]
    why = "no EFA node group: fewer than 2 EFA nodes of one instance type"
    skipped = Outcome.of("suites/test_nccl.py::test_all_reduce_is_correct_across_nodes[no-efa-node-group]",
                         "skipped", None, None, (), why)
    cov = items([out(VIS), out(NCCL1), skipped, healthy()[4]], nodes=one)
    miss = cov["nccl-multi-node"]["missing"]
    assert cov["nccl-multi-node"]["status"] == MISSING and miss[0]["reason"].startswith("only 1 p5.48xlarge node")
    assert "min_nodes: 2" in miss[0]["how"]
    relaxed = {**REQUIRED, "nccl-multi-node": {**REQUIRED["nccl-multi-node"], "min_nodes": 2}}
    cov = items([out(VIS), out(NCCL1), skipped, healthy()[4]], required=relaxed, nodes=one)
    assert cov["nccl-multi-node"]["status"] == NOT_APPLICABLE
    assert verdict(counts(), False, list(cov.values()))[0] == ACCEPTED
    dropped = items([out(VIS), out(NCCL1), skipped, healthy()[4]], required={**REQUIRED, "nccl-multi-node": None},
                    nodes=one)
    assert "nccl-multi-node" not in dropped


def test_single_skipped_case_without_a_node_gives_its_reason() -> None:
    why = "no EFA node group: the EFA nodes are in different zones"
    skipped = Outcome.of("suites/test_nccl.py::test_all_reduce_is_correct_across_nodes[no-efa-node-group]",
                         "skipped", None, None, (), why)
    cov = items([*healthy()[:3], skipped, healthy()[4]])
    assert cov["nccl-multi-node"]["missing"][0]["reason"] == why


def test_no_efa_nodes_make_efa_items_not_applicable() -> None:
    nodes = [dict(n, efa=False) for n in NODES]
    cov = items([o for o in healthy() if "across" not in o.function], nodes=nodes)
    assert cov["nccl-multi-node"]["status"] == NOT_APPLICABLE and cov["nccl-multi-node"]["note"]


def test_verdict_keeps_its_not_accepted_reasons() -> None:
    assert verdict({"passed": 0}, False) == (NOT_ACCEPTED, ["no check passed: nothing was verified"])
    assert verdict(counts(), True)[0] == NOT_ACCEPTED
    assert verdict(counts(xpassed=1), False)[0] == NOT_ACCEPTED
    assert verdict(counts(), False, []) == (ACCEPTED, [])        # no required section: no coverage to judge


def test_grid_marks_a_node_without_required_evidence_incomplete() -> None:
    row = Row(B, "p5.48xlarge", "us-west-2a", {"visibility": Cell(PASS)})
    assert node_state(row, frozenset()) == PASS
    assert node_state(row, frozenset(), frozenset({B})) == NOT_SHOWN


def _doc(result: str, cov: list[dict[str, Any]], partial: list[str] | None = None) -> dict[str, Any]:
    return {"run_id": "20261123-020000-abcd", "verdict": result, "verdict_reasons": [], "partial": partial or [],
            "counts": {"passed": 5}, "coverage": cov, "checks": [], "schema_version": 1}


def test_html_banner_and_coverage_table() -> None:
    cov = list(items([*healthy()[:3], out(MULTI, "skipped", node=f"{A}+{B}", reason=MPI_SKIP), healthy()[4]]).values())
    html = verdict_block(_doc(INCOMPLETE, cov))
    assert "gc-incomplete" in html and "<h2>INCOMPLETE" in html and 'id="gc-coverage"' in html
    assert "MPI operator is not installed" in coverage_block(cov)
    partial = verdict_block(_doc(ACCEPTED, cov, ["nccl-multi-node"]))
    assert "gc-incomplete" in partial and "ACCEPTED (partial: nccl-multi-node not shown)" in partial
    assert "gc-accepted" in verdict_block(_doc(ACCEPTED, list(items(healthy()).values())))


def test_compare_flags_required_evidence_that_went_missing() -> None:
    old = _doc(ACCEPTED, list(items(healthy()).values()))
    new = _doc(INCOMPLETE, list(items([*healthy()[:3], out(MULTI, "skipped", node=f"{A}+{B}", reason=MPI_SKIP),
                                       healthy()[4]]).values()))
    found = [r for r in compare(old, new) if r.kind == "required"]
    assert [(r.check, r.old, r.new) for r in found] == [("nccl-multi-node", "shown", "missing")]
    assert "MPI operator" in found[0].change
    assert not [r for r in compare(old, old) if r.kind == "required"]
    assert not [r for r in compare(old, {k: v for k, v in new.items() if k != "coverage"}) if r.kind == "required"]


def test_default_profile_requires_the_areas_of_issue_15() -> None:
    required = load_profile().data["required"]
    assert {"gpu-visibility", "efa", "nccl-single-node", "nccl-single-node-bandwidth", "nccl-multi-node",
            "nccl-multi-node-bandwidth", "karpenter", "aws"} <= set(required)
    assert required["nccl-multi-node"]["scope"] == "group"
    assert required["nccl-single-node-bandwidth"]["only"] == ["floor-1"]


def test_user_profile_relaxes_or_extends_required(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("required:\n  nccl-multi-node: {min_nodes: 2}\n  karpenter: null\n"
                    "  taints: {scope: node, tests: [test_taints.py::test_gpu_node_carries_gpu_taint]}\n")
    required = load_profile(user).data["required"]
    assert required["nccl-multi-node"]["min_nodes"] == 2 and required["nccl-multi-node"]["scope"] == "group"
    assert required["karpenter"] is None and required["taints"]["scope"] == "node"


@pytest.mark.parametrize("body, message", [
    ("x: {scope: everywhere, tests: [test_a.py::test_b]}", "required.x.scope: expected node | type | group | cluster"),
    ("x: {tests: test_a.py}", "required.x.tests: expected a list of `test_module.py::test_function`"),
    ("x: {tests: [test_a.py::t], only: [cheap]}",
     "required.x.only: expected a list of multi-gpu, floor-1, floor-multi"),
    ("x: {tests: [test_a.py::t], min_nodes: 0}", "required.x.min_nodes: expected a positive integer"),
    ("x: {tests: [test_a.py::t], scopes: node}", "required.x.scopes: unknown key 'scopes'"),
])
def test_bad_required_item_is_a_usage_error_with_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    user = tmp_path / "p.yaml"
    user.write_text(f"required:\n  {body}\n")
    with pytest.raises(pytest.UsageError, match=r"p\.yaml:2: " + message.replace(".", r"\.").replace("|", r"\|")
                       .replace("[", r"\[").replace("(", r"\(")):
        load_profile(user)


def test_a_new_required_item_without_tests_is_a_usage_error(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("required:\n  mine: {scope: node}\n")
    with pytest.raises(pytest.UsageError, match=r"p\.yaml: required\.mine: a new required item needs `tests`"):
        load_profile(user)
