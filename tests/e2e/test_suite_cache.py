"""tests/suite_cache.py: the cache layout the fault matrix shares, reading a finished run, finding a test's runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.suite_cache import MATRIX_EXTRA, Results, SuiteSpec, custom, specs_of, suite_run

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="suites.test_efa" name="test_fi_info_lists_every_efa_device[n1/p5.48xlarge]">
<properties><property name="efa devices" value="32 devices pass"/></properties></testcase>
<testcase classname="suites.test_efa" name="test_fi_info_lists_every_efa_device[n2/p5.48xlarge]">
<failure message="AssertionError: No EFA provider in a pod on n2">long text</failure></testcase>
<testcase classname="suites.test_aws" name="test_node_role_exists[gpu]"><skipped message="no AWS"/></testcase>
</testsuite></testsuites>"""


def finished(out: Path) -> None:
    """What a finished run leaves: junit.xml and run.json."""
    out.mkdir(parents=True)
    (out / "junit.xml").write_text(JUNIT)
    (out / "run.json").write_text(json.dumps({"args": ["python", "-m", "pytest", "suites"], "returncode": 1,
                                              "stdout": "gpucluster: teardown clean", "stderr": "", "seconds": 1.5}))


def test_shipped_runs_are_the_fault_matrix_entries(tmp_path: Path) -> None:
    assert SuiteSpec("healthy").out_dir(tmp_path) == tmp_path / "fault-matrix" / "healthy"
    assert SuiteSpec("healthy").arguments(tmp_path) == ("healthy", list(MATRIX_EXTRA))
    assert MATRIX_EXTRA == ("--gpucluster-timeout=20",)   # tests/reliability/test_fault_matrix.py PROBE_TIMEOUT_S


def test_custom_runs_differ_by_text_paths_options_and_profile(tmp_path: Path) -> None:
    base = custom("x", "faults: []\n", "suites/test_efa.py")
    variants = [custom("x", "faults: [] \n", "suites/test_efa.py"), custom("x", "faults: []\n"),
                custom("x", "faults: []\n", "suites/test_efa.py", extra=("-k", "memlock")),
                custom("x", "faults: []\n", "suites/test_efa.py", profile="defaults: {}\n")]
    dirs = {spec.out_dir(tmp_path) for spec in [base, *variants]}
    assert len(dirs) == 5 and all(d.parent == tmp_path / "custom-suites" for d in dirs)
    assert base.out_dir(tmp_path) == custom("x", "faults: []\n", "suites/test_efa.py").out_dir(tmp_path)
    out = base.out_dir(tmp_path)
    out.mkdir(parents=True)
    target, options = custom("x", "faults: []\n", profile="defaults: {}\n").arguments(out)
    assert Path(target).read_text() == "description: x\nextends: healthy\nfaults: []\n"
    assert options == [*MATRIX_EXTRA, f"--gpucluster-profile={out / 'profile.yaml'}"]


def test_a_finished_run_is_read_not_run_again(tmp_path: Path) -> None:
    finished(tmp_path / "fault-matrix" / "healthy")
    run = suite_run(tmp_path, SuiteSpec("healthy"))       # would start pytest (and fail to find it) otherwise
    assert run.returncode == 1 and run.seconds == 1.5
    efa = Results(run, "test_efa")
    assert efa.outcomes == {("test_fi_info_lists_every_efa_device", "n1/p5.48xlarge"): "passed",
                            ("test_fi_info_lists_every_efa_device", "n2/p5.48xlarge"): "failed"}
    assert efa.failing() == {("test_fi_info_lists_every_efa_device", "n2/p5.48xlarge")}
    assert "No EFA provider in a pod on n2" in efa.messages()
    assert efa.properties()[("test_fi_info_lists_every_efa_device", "n1/p5.48xlarge")] == {
        "efa devices": "32 devices pass"}
    assert Results(run, "test_aws").skip_reasons() == {"no AWS"}
    assert "FAILED  suites.test_efa" not in str(efa) and "FAILED  test_efa::" in str(efa)


class FakeItem:
    """The parts of a collected item specs_of reads (a real marked test would start its runs in this session)."""

    def __init__(self, marks: list[pytest.Mark], params: dict[str, object], fixturenames: list[str]) -> None:
        self.marks, self.callspec, self.fixturenames = marks, type("CallSpec", (), {"params": params})(), fixturenames

    def iter_markers(self, name: str) -> list[pytest.Mark]:
        return [m for m in self.marks if m.name == name]


def test_marks_and_parameters_name_the_runs_a_test_reads() -> None:
    spec = custom("y", "faults: []\n")
    item = FakeItem([pytest.mark.suites("gpu-missing", spec).mark], {"scenario": "healthy", "other": spec},
                    ["suite_result", "request"])
    assert specs_of(item) == [SuiteSpec("gpu-missing"), spec, spec, SuiteSpec("healthy")]  # type: ignore[arg-type]
    assert specs_of(FakeItem([], {"scenario": "healthy"}, ["request"])) == []  # type: ignore[arg-type]
