"""DCGM judge on plain data from the real `dcgmi diag -j` captures (checks/dcgm.py): a pass needs every test of the
level on every GPU the pod held."""
from __future__ import annotations

import dataclasses

from pytest_gpucluster.checks.dcgm import canonical, dcgm
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.parsers import parse_dcgm_diag
from pytest_gpucluster.parsers.dcgm_diag import DcgmDiagResult
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu

from tests.parsers._data import sample

S = "ip-10-0-3-17/p5.48xlarge"
DCGM_OK = ('{"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [{"name": "software", '
           '"results": [{"entity_id": 0, "status": "Pass"}, {"entity_id": 1, "status": "Pass"}]}]}, {"category": '
           '"Hardware", "tests": [{"name": "memory", "results": [{"entity_group": "GPU", "entity_id": 0, "status": '
           '"Pass"}, {"entity_group": "GPU", "entity_id": 1, "status": "Warn", "warnings": [{"warning": "slow"}]}]}]},'
           ' {"category": "Integration", "tests": [{"name": "pcie", "results": [{"entity_id": 0, "status": "Pass"}, '
           '{"entity_id": 1, "status": "Pass"}]}]}]}}')


def passing(name: str) -> DcgmDiagResult:
    """A real capture with its software result (persistence mode off on that GB10) turned into a pass: the shape of
    the run is the capture's, only the one failure is taken out."""
    parsed = parse_dcgm_diag(sample("dcgm-diag", name))
    parsed.results = [dataclasses.replace(r, status="pass", warnings=[]) if r.test == "software" else r
                      for r in parsed.results]
    return parsed


def test_pass_needs_every_test_of_the_level_on_every_gpu() -> None:
    v = dcgm(S, parse_dcgm_diag(DCGM_OK), 2, 95.2, 226, None, held=2)     # a warning explains dcgmi's exit 226
    assert v.ok and v.criteria[0].value == 95.2 and "memory on GPU 1: slow" in v.facts["DCGM warnings"][0]
    assert "3 tests (software, memory, pcie)" in v.observed


def test_skipped_hardware_tests_are_not_shown_with_dcgms_reason() -> None:
    """Real level-2 run where memory and pcie were Skip: the old judge passed it on the software result alone."""
    v = dcgm(S, passing("gb10-dcgm423-level2-skips-reindented.json"), 2, 20.0, 0, None, held=1)
    assert v.status is Status.NOT_SHOWN
    assert "memory SKIP on GPU 0: DCGM gave no reason" in v.message and "pcie SKIP on GPU 0" in v.message


def test_results_for_one_gpu_of_eight_are_not_shown() -> None:
    v = dcgm(S, passing("gb10-dcgm452-level2-tabs-software-fail.json"), 2, 60.0, 0, None, held=8)
    assert v.status is Status.NOT_SHOWN
    assert "software has no result for GPU 1, GPU 2, GPU 3, GPU 4, GPU 5, GPU 6, GPU 7" in v.message
    assert dcgm(S, passing("gb10-dcgm452-level2-tabs-software-fail.json"), 2, 60.0, 0, None, held=1).ok


def test_a_level_test_missing_from_the_result_is_not_shown() -> None:
    level1 = passing("gb10-dcgm423-level1-reindented.json")
    assert dcgm(S, level1, 1, 5.0, 0, None, held=1).ok
    v = dcgm(S, level1, 2, 5.0, 0, None, held=1)          # asked for level 2, got only the level-1 checks
    assert v.status is Status.NOT_SHOWN and "memory did not run" in v.message and "pcie did not run" in v.message


def test_nonzero_exit_with_every_test_passing_is_a_contradiction() -> None:
    clean = passing("gb10-dcgm452-level2-tabs-software-fail.json")
    v = dcgm(S, clean, 2, 60.0, 226, None, held=1)
    assert v.status is Status.FAIL and "exit code 226 while the JSON lists no failure" in v.message


def test_failure_names_gpu_test_and_dcgms_message() -> None:
    gpus = {0: SmiGpu(bus_id="00000000:53:00.0", uuid="GPU-00000000")}
    v = dcgm(S, parse_dcgm_diag(sample("dcgm-diag", "gb10-dcgm452-level2-tabs-software-fail.json")), 2, 30.0, 226,
             None, 1, gpus)
    assert v.status is Status.FAIL
    assert "software FAILED on GPU 0 (GPU-00000000, bus 00000000:53:00.0)" in v.message
    assert "Persistence mode for GPU 0 is disabled" in v.message and "error id 29" in v.message


def test_no_output_and_runtime_error_fail() -> None:
    v = dcgm(S, None, 2, None, 235, "not dcgm-diag output: no JSON document", held=8)
    assert v.status is Status.FAIL and "no JSON document" in v.message and "exit code 235" in v.message
    runtime = parse_dcgm_diag('{"DCGM Diagnostic": {"runtime_error": "NVVS error", "test_categories": []}}')
    assert dcgm(S, runtime, 2, 1.0, 226, None, held=8).status is Status.FAIL


def test_3x_deployment_checks_count_as_software() -> None:
    text = ('{"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [{"name": "Denylist", '
            '"results": [{"gpu_ids": "0,1", "status": "PASS"}]}]}]}}')
    parsed = parse_dcgm_diag(text)
    assert canonical(parsed.results[0]) == "software"
    assert dcgm(S, parsed, 1, 3.0, 0, None, held=2).ok
