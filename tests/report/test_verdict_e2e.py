"""The three verdicts end to end on the simulated cluster: required evidence shown (ACCEPTED, exit 0), missing
(INCOMPLETE, exit 6, each item named with why and how), a narrowed run declared with --gpucluster-partial (exit 0),
the same verdict through the nightly job's `gpucluster run`, and a partial run that does not forgive the cluster."""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from pytest_gpucluster.report.summary import INCOMPLETE_EXIT
from tests.reliability.suite_runs import SuiteRun
from tests.suite_cache import Results, SuiteSpec, custom

pytest.importorskip("pytest_gpucluster.sim.launcher", reason="the simulated cluster is not available")

# An Xid fault the run deselects: node health is required, so leaving it out is never ACCEPTED without
# --gpucluster-partial, and a glob (`test_aws.py::*`) does not cover the tests -k took away from its module.
NARROWED = ("-m", "not nccl", "-k", "not test_node_health and not security_group")
NOT_NCCL = custom("xid-errors-narrowed", "", extends="xid-errors", extra=NARROWED)
NOT_NCCL_PARTIAL = custom("xid-errors-narrowed-partial", "", extends="xid-errors", extra=(*NARROWED, "--gpucluster-partial"))
# the same run as tests/e2e/test_suite_nccl.py's (the MPI operator absent, the NCCL module only, partial)
NO_MPI_OPERATOR_PARTIAL = custom("no-mpi-operator", "operators: {mpi_operator: false}\n", "suites/test_nccl.py",
                                 extra=("--gpucluster-partial",))
HEALTH_ITEMS = ["node-health-dcgm", "node-health-xid", "node-health-cuda", "node-health-nvlink", "node-health-ecc",
                "node-health-memory-history", "node-health-pcie", "node-health-clocks", "node-health-power-limit",
                "node-health-persistence", "node-health-topology", "node-health-uniformity", "node-health-vbios"]
RELAXED = custom("single-efa-node-relaxed", "", extends="single-efa-node", profile=(
    "required:\n  nccl-multi-node: {min_nodes: 2}\n  nccl-multi-node-bandwidth: {min_nodes: 2}\n"))
NCCL_ITEMS = ["nccl-single-node", "nccl-single-node-bandwidth", "nccl-multi-node", "nccl-multi-node-bandwidth"]


def summary(run: SuiteRun) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((Results(run).report_folder() / "summary.json").read_text())
    return doc


def coverage(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in doc["coverage"]}


@pytest.mark.suites("healthy")
def test_healthy_is_accepted_with_every_required_item_shown(suite_result: Callable[[str], SuiteRun]) -> None:
    run = suite_result("healthy")
    doc = summary(run)
    assert doc["verdict"] == "ACCEPTED" and doc["partial"] == [] and run.returncode == 0, doc["verdict_reasons"]
    items = coverage(doc)
    assert {"gpu-visibility", "efa", *NCCL_ITEMS, "karpenter", "aws"} <= set(items)
    assert {n: i["status"] for n, i in items.items() if i["status"] != "shown"} == {}
    assert len(items["nccl-multi-node"]["nodes"]) == 2 and len(items["gpu-visibility"]["subjects"]) == 2


@pytest.mark.suites(NOT_NCCL, NOT_NCCL_PARTIAL)
def test_deselected_node_health_under_an_xid_fault_is_incomplete_unless_partial(
        custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    """`pytest suites --sim xid-errors -m "not nccl" -k "not test_node_health and not security_group"` exits 6:
    node health is required and was deselected (the Xid on the node is never seen), and the AWS items miss the
    security-group tests although the other AWS tests ran."""
    run = custom_suite_result(NOT_NCCL)
    doc = summary(run)
    assert doc["verdict"] == "INCOMPLETE" and run.returncode == INCOMPLETE_EXIT, (doc["verdict_reasons"], run.tail())
    missing = [i["name"] for i in doc["coverage"] if i["status"] == "missing"]
    assert missing == [*NCCL_ITEMS, "aws", "aws-efa", *HEALTH_ITEMS], missing
    assert {m["test"] for m in coverage(doc)["aws"]["missing"]} == {
        "test_aws.py::test_security_group_selector_finds_tagged_groups"}
    assert {m["test"] for m in coverage(doc)["aws-efa"]["missing"]} == {
        "test_aws.py::test_efa_security_group_allows_itself"}
    assert all("deselected (-m/-k)" in r for r in doc["verdict_reasons"]), doc["verdict_reasons"]
    assert "gpucluster verdict: INCOMPLETE" in run.stdout and f"exit {INCOMPLETE_EXIT}: required evidence" in run.stdout
    partial = custom_suite_result(NOT_NCCL_PARTIAL)
    doc = summary(partial)
    assert doc["verdict"] == "ACCEPTED" and doc["partial"] == missing and partial.returncode == 0, partial.tail()
    assert "gpucluster verdict: ACCEPTED (partial: nccl-single-node" in partial.stdout
    page = (Results(partial).report_folder() / "report.html").read_text()
    assert "ACCEPTED (partial: nccl-single-node" in page and "gc-incomplete" in page


@pytest.mark.suites("mpi-operator-absent")
def test_gpucluster_run_on_mpi_operator_absent_is_incomplete_naming_the_operator(
        suite_result: Callable[[str], SuiteRun]) -> None:
    """The nightly job's entry point (`gpucluster run --sim=mpi-operator-absent`: the suites folder is the rootdir,
    test ids lose their `suites/` part) judges the required evidence as `pytest suites` does: INCOMPLETE, exit 6."""
    run = suite_result("mpi-operator-absent")
    assert run.args[1:4] == ["-m", "pytest_gpucluster.cli", "run"], run.args      # fault_matrix.yaml: via
    doc = summary(run)
    assert doc["verdict"] == "INCOMPLETE" and run.returncode == INCOMPLETE_EXIT, run.tail()
    assert not doc["checks"][0]["nodeid"].startswith("suites/")
    items = coverage(doc)
    assert [n for n, i in items.items() if i["status"] != "shown"] == ["nccl-multi-node", "nccl-multi-node-bandwidth"]
    reason = items["nccl-multi-node"]["missing"][0]["reason"]
    assert "the MPI operator is not installed" in reason and "kubectl apply --server-side -f https://" in reason
    assert any("MPI operator" in r and "mpi-operator.yaml" in r for r in doc["verdict_reasons"])


@pytest.mark.suites("single-efa-node", RELAXED)
def test_one_efa_node_per_type_is_incomplete_unless_the_profile_relaxes_it(
        suite_result: Callable[[str], SuiteRun], custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    run = suite_result("single-efa-node")
    doc = summary(run)
    assert doc["verdict"] == "INCOMPLETE" and run.returncode == INCOMPLETE_EXIT, run.tail()
    multi = coverage(doc)["nccl-multi-node"]
    assert multi["status"] == "missing" and multi["missing"][0]["reason"].startswith("only 1 p5.48xlarge node")
    assert "min_nodes: 2" in multi["missing"][0]["how"]
    relaxed = custom_suite_result(RELAXED)
    doc = summary(relaxed)
    assert doc["verdict"] == "ACCEPTED" and relaxed.returncode == 0, (doc["verdict_reasons"], relaxed.tail())
    assert coverage(doc)["nccl-multi-node"]["status"] == "not applicable"


@pytest.mark.suites(NO_MPI_OPERATOR_PARTIAL)
def test_partial_does_not_forgive_the_missing_mpi_operator(custom_suite_result: Callable[[SuiteSpec], SuiteRun]) -> None:
    """--gpucluster-partial forgives the modules left out (only test_nccl.py ran), not the multi-node evidence the
    cluster could not give: still INCOMPLETE, exit 6, naming the operator."""
    run = custom_suite_result(NO_MPI_OPERATOR_PARTIAL)
    doc = summary(run)
    assert doc["verdict"] == "INCOMPLETE" and run.returncode == INCOMPLETE_EXIT, (doc["verdict_reasons"], run.tail())
    assert any("the MPI operator is not installed" in r for r in doc["verdict_reasons"]), doc["verdict_reasons"]
    assert not any(r.startswith("gpu-visibility") for r in doc["verdict_reasons"])      # left out: forgiven


def test_a_node_that_enters_transition_during_the_run_is_listed_in_the_fingerprint(
        suite_result: Callable[[str], SuiteRun]) -> None:
    """node-disrupted-during-run: the g6e node is cordoned and tainted karpenter.sh/disrupted after the run started
    (after discovery printed its header): summary.json's fingerprint and the report's fingerprint table list it with
    why, beside its checks shown as not shown."""
    run = suite_result("node-disrupted-during-run")
    folder = Results(run).report_folder()
    doc: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    moving = doc["fingerprint"].get("in_transition") or {}
    assert list(moving) == ["ip-10-0-58-42.us-west-2.compute.internal"], moving
    assert "karpenter.sh/disrupted" in moving["ip-10-0-58-42.us-west-2.compute.internal"]
    html = (folder / "report.html").read_text()
    assert "in transition (checks not shown)" in html and "ip-10-0-58-42.us-west-2.compute.internal (" in html

