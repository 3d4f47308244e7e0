"""The report plugin end to end on a fake suite: report.html, summary.json, JUnit, redaction, verdict."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from .fake_suite import FAKE_SUITE  # tests/report/fake_suite.py (rootdir-relative import)


def test_report_folder_has_html_summary_and_junit(run_suite):
    run = run_suite(FAKE_SUITE)
    run.result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert run.dir is not None
    assert {p.name for p in run.dir.iterdir()} >= {"report.html", "summary.json", "junit.xml"}
    run.result.stdout.fnmatch_lines(["*gpucluster verdict: NOT ACCEPTED*", "*1 check(s) failed*"])


def test_summary_records_verdict_counts_and_measurements(run_suite):
    doc = run_suite(FAKE_SUITE).summary
    assert doc["schema_version"] == 1
    assert doc["verdict"] == "NOT ACCEPTED"
    assert doc["counts"]["passed"] == 1 and doc["counts"]["failed"] == 1 and doc["counts"]["skipped"] == 1
    assert doc["skips"] == [{"nodeid": "test_suite.py::test_efa", "reason": "no EFA nodes in this cluster"}]
    checks = {c["name"]: c for c in doc["checks"]}
    busbw = checks["test_nccl_busbw"]["measurements"][0]
    assert busbw == {"name": "busbw", "value": 180.0, "unit": "GB/s", "threshold": 300.0, "op": ">=",
                     "source": "profile p5.48xlarge nccl.min_busbw", "pass": False}
    assert checks["test_nccl_busbw"]["outcome"] == "failed"
    assert "below floor" in checks["test_nccl_busbw"]["message"]
    assert doc["fingerprint"]["components"] == {"cuda": ["13.0"], "driver": ["580.105.08"]}


def test_html_shows_verdict_criteria_evidence_and_inline_plot(run_suite):
    html = run_suite(FAKE_SUITE).html
    assert "NOT ACCEPTED" in html
    assert "Acceptance criteria applied" in html
    assert "no EFA nodes in this cluster" in html
    # per-test evidence travels in pytest-html's JSON blob (HTML-escaped)
    assert "&lt;svg" in html and "FailedScheduling" in html and "KubeletReady" in html
    assert "Driver Version: 580.105.08" in html


def test_secrets_never_reach_the_report(run_suite):
    run = run_suite(FAKE_SUITE)
    for text in (run.html, (run.dir / "summary.json").read_text(), (run.dir / "junit.xml").read_text()):
        for secret in ("sk-live-abcdefghijklmnop", "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ",
                       "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
            assert secret not in text
    assert "[REDACTED]" in run.html


def test_junit_properties_carry_key_figures(run_suite):
    run = run_suite(FAKE_SUITE)
    tree = ET.parse(run.dir / "junit.xml")
    props = {(tc.get("name"), p.get("name")): p.get("value")
             for tc in tree.iter("testcase") for p in tc.iter("property")}
    assert props[("test_nccl_busbw", "busbw")] == "180 GB/s (>= 300: FAIL)"
    assert props[("test_gpus_visible", "gpus")] == "8 count (== 8: pass)"


def test_all_passing_run_is_accepted(run_suite):
    run = run_suite("def test_ok(evidence):\n    evidence.measure('busbw', 350, 'GB/s', threshold=300)\n")
    assert run.summary["verdict"] == "ACCEPTED"
    assert "ACCEPTED" in run.html and "NOT ACCEPTED" not in run.html


def test_interrupted_run_still_writes_a_partial_report(run_suite):
    run = run_suite(
        "def test_first(evidence):\n    evidence.measure('gpus', 8, 'count')\n"
        "def test_second():\n    raise KeyboardInterrupt\n"
        "def test_third():\n    pass\n")
    doc = run.summary
    assert doc["interrupted"] is True
    assert doc["verdict"] == "NOT ACCEPTED"
    assert "the run was interrupted: this report is partial" in doc["verdict_reasons"]
    assert doc["counts"]["not_run"] >= 1
    assert "PARTIAL" in run.html


NODE_SUITE = '''
import pytest
from dataclasses import dataclass

@dataclass(frozen=True)
class Node:
    name: str
    instance_type: str

NODES = [Node("ip-10-0-1-1", "p5.48xlarge"), Node("ip-10-0-1-2", "p5.48xlarge")]

@pytest.mark.parametrize("gpu_node", NODES, ids=lambda n: f"{n.name}/{n.instance_type}")
def test_busbw(gpu_node, evidence):
    value = 380.0 if gpu_node.name.endswith("1") else 310.0
    evidence.measure("busbw", value, "GB/s", threshold=300, source="profile")
    evidence.headline("nccl", where=gpu_node.name, instance_type=gpu_node.instance_type, nodes=1, gpus_per_node=8,
                      busbw=[(1048576, 40.0), (1073741824, value)])
    evidence.headline("nccl", ceiling_gbs=None)

@dataclass(frozen=True)
class Group:
    instance_type: str
    nodes: tuple

@pytest.mark.parametrize("group", [Group("p5.48xlarge", tuple(NODES))], ids=["pair/p5.48xlarge"])
def test_pair(group):
    pass
'''


def test_checks_carry_node_and_instance_type_and_criteria_fold_per_type(run_suite):
    run = run_suite(NODE_SUITE)
    checks = run.summary["checks"]
    assert [(c["node"], c["instance_type"]) for c in checks] == [("ip-10-0-1-1", "p5.48xlarge"),
                                                                  ("ip-10-0-1-2", "p5.48xlarge"),
                                                                  ("ip-10-0-1-1+ip-10-0-1-2", "p5.48xlarge")]
    assert "310 \u2026 380 GB/s (n=2)" in run.html and "2/2 pass" in run.html


def test_report_is_complete_under_xdist(run_suite):
    pytest.importorskip("xdist")
    run = run_suite(NODE_SUITE, "-n", "2")
    doc = run.summary
    assert doc["counts"]["passed"] == 3
    assert all(c["instance_type"] == "p5.48xlarge" for c in doc["checks"])
    assert sum(1 for c in doc["checks"] if c["measurements"]) == 2
    assert "310 \u2026 380 GB/s (n=2)" in run.html
    # the headline channel travels from the workers: summary.json has it, the headline plot draws it
    assert sorted(c["headline"]["nccl"]["busbw"][-1][1] for c in doc["checks"] if "headline" in c) == [310.0, 380.0]
    assert "NCCL all_reduce bus bandwidth, p5.48xlarge, one node: 2 run(s)" in run.html


def test_headline_channel_is_in_summary_json_and_not_in_the_checks_evidence(run_suite):
    run = run_suite(NODE_SUITE)
    checks = {c["node"]: c for c in run.summary["checks"]}
    assert checks["ip-10-0-1-1"]["headline"] == {"nccl": {
        "where": "ip-10-0-1-1", "instance_type": "p5.48xlarge", "nodes": 1, "gpus_per_node": 8,
        "busbw": [[1048576, 40.0], [1073741824, 380.0]], "ceiling_gbs": None}}
    assert "headline" not in checks["ip-10-0-1-1+ip-10-0-1-2"]     # absent when the check gave none
    assert "headline" not in checks["ip-10-0-1-1"]["facts"]
    assert "gpus_per_node" not in run.html and "1073741824" not in run.html   # no facts row, no table of it
    assert "[1073741824, 380.0]" in (run.dir / "summary.json").read_text()    # a point per line, not four


def test_summary_json_puts_number_arrays_on_one_line_and_leaves_strings_alone(tmp_path):
    from pytest_gpucluster.report.summary import write_summary

    doc = {"text": "[\n  1,\n  2\n]", "curve": [[8, 0.0], [2147483648, 478.9]], "mixed": [1, "a"], "none": [],
           "negative": [-1.5e-06, 2]}
    text = write_summary(tmp_path / "summary.json", doc).read_text()
    assert json.loads(text) == doc
    assert "[8, 0.0],\n" in text and "[-1.5e-06, 2]" in text and '"mixed": [\n    1,\n    "a"\n  ]' in text


def test_summary_follows_the_shipped_json_schema(run_suite):
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_gpucluster.report.summary import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text())
    for source in (FAKE_SUITE, NODE_SUITE):
        jsonschema.validate(run_suite(source).summary, schema)
    broken = run_suite(NODE_SUITE).summary
    broken["checks"][0]["measurements"][0]["op"] = "=>"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_a_failed_criterion_fails_the_test_that_recorded_it(run_suite):
    """A threshold measurement that fails cannot sit inside a passed test (issue 19: EFA plugin allocatable)."""
    run = run_suite("def test_records_but_asserts_nothing(evidence):\n"
                    "    evidence.measure('vpc.amazonaws.com/efa allocatable', 0, 'interfaces', threshold=32, op='>=',\n"
                    "                     source='profile p5.48xlarge efa')\n"
                    "def test_met(evidence):\n    evidence.measure('gpus', 8, 'GPUs', threshold=8, op='==')\n")
    run.result.assert_outcomes(passed=1, failed=1)
    run.result.stdout.fnmatch_lines(["*criterion not met although the test passed: vpc.amazonaws.com/efa allocatable "
                                     "= 0 interfaces, required >= 32 (profile p5.48xlarge efa)*"])
    assert run.summary["verdict"] == "NOT ACCEPTED"
