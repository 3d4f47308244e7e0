"""A failure seen on a cluster becomes a scenario: `gpucluster sim --from-report` builds one from the bundle of a
node-health fault's run (the fault matrix's own run, shared: dcgm-diag-fail, whose recorded `dcgmi diag` fails, and
xid-errors, whose recorded kernel logs hold the Xids), and the node-health suite run against it fails the same check
for the same nodes, from the recorded outputs alone (the built scenario has no fault)."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from pytest_gpucluster.sim.scenario import load_scenario
from tests.bundle.test_rejudge import folder_of
from tests.reliability.suite_runs import BAD, ROOT, SuiteRun, env_for_child, run_suites

MODULE = "test_node_health"


def from_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_gpucluster.cli", "sim", "--from-report", *args], cwd=ROOT,
                          env=env_for_child(), capture_output=True, text=True, timeout=120)


def failed(run: SuiteRun) -> set[str]:
    return {c.name for c in run.cases if c.module.endswith(MODULE) and c.outcome in BAD}


@pytest.mark.parametrize("fault, check, tool", [("dcgm-diag-fail", "test_dcgm_diagnostics_pass", "dcgmi diag"),
                                                ("xid-errors", "test_no_xid_errors", "dmesg")])
def test_a_recorded_failure_fails_again_on_the_scenario_built_from_its_bundle(
        suite_result: Callable[[str], SuiteRun], tmp_path: Path, fault: str, check: str, tool: str) -> None:
    recorded = suite_result(fault)
    want = failed(recorded)
    assert want and all(name.startswith(f"{check}[") for name in want), recorded.tail()
    out = tmp_path / "replayed.yaml"
    done = from_report(str(folder_of(recorded)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    raw = yaml.safe_load(out.read_text())
    assert "faults" not in raw                       # what fails is what the node printed, not a simulated fault
    scenario = load_scenario(out)
    # the cluster as the run found it: its unfiltered NodePool list, the hardened runtime its isolation probes saw
    assert {p.name for p in scenario.nodepools} == {"gpu", "default"}
    assert scenario.operators.nvidia_runtime.device_list_strategy == "volume-mounts"
    assert "nccl-tests name each rank's host" in done.stderr       # said, not replayed under another pod's name
    outputs = {n: o for g in scenario.nodes for n, o in g.node_outputs.items()}
    for name in want:
        assert tool in outputs[name.split("[", 1)[1].split("/", 1)[0]].tool_output   # the recorded node, by name
    replayed = run_suites(str(out), tmp_path / "run", f"suites/{MODULE}.py",
                          extra=("--gpucluster-timeout=20", "--gpucluster-partial"))
    assert replayed.cases, replayed.tail()
    assert failed(replayed) == want, replayed.tail()


def test_a_folder_without_a_recording_is_one_line_and_exit_4(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / "missing"):
        done = from_report(str(folder))
        assert done.returncode == 4
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"gpucluster sim: --from-report {folder}: ")


def test_a_recording_without_a_node_list_is_one_line_and_exit_4(tmp_path: Path) -> None:
    (tmp_path / "recording").mkdir()
    with gzip.open(tmp_path / "recording" / "index.json.gz", "wt", encoding="utf-8") as fh:
        json.dump({"schema_version": 1, "kind": "pytest-gpucluster-recording", "run_id": "r1", "calls": []}, fh)
    done = from_report(str(tmp_path), "--out", str(tmp_path / "s.yaml"))
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert "holds no node list (GET /api/v1/nodes): nothing to build a cluster from" in done.stderr
    assert not (tmp_path / "s.yaml").exists()
