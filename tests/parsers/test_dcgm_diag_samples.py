"""`dcgmi diag -j` parser on the real DCGM 4.x captures in tests/data/dcgm-diag (see its SOURCES.md)."""
from __future__ import annotations

import pytest

from pytest_gpucluster.parsers import ParseError, parse, parse_dcgm_diag

from ._data import sample


def test_level2_dcgmi_layout_tabs_software_fails_hardware_passes() -> None:
    r = parse_dcgm_diag(sample("dcgm-diag", "gb10-dcgm452-level2-tabs-software-fail.json"))
    assert (r.dcgm_version, r.driver_version) == ("4.5.2", "580.82.09")
    assert [(x.test, x.entity_id, x.status) for x in r.results] == [
        ("software", 0, "fail"), ("memory", 0, "pass"), ("pcie", 0, "pass")]
    software = r.results[0]
    assert software.error_ids == [29] and "Persistence mode for GPU 0 is disabled" in software.warnings[0]
    assert r.results[2].info[0].startswith("GPU to Host bandwidth")
    assert r.gpus == {0: {"device_id": "2e12", "serial": "<<<NOT_SUPPORTED>>>"}}


def test_level1_reindented_capture() -> None:
    r = parse_dcgm_diag(sample("dcgm-diag", "gb10-dcgm423-level1-reindented.json"))
    assert r.dcgm_version == "4.2.3" and r.tests() == ["software"]
    assert r.with_status("fail")[0].category == "Deployment"


def test_skipped_plugins_are_skips_not_passes() -> None:
    r = parse_dcgm_diag(sample("dcgm-diag", "gb10-dcgm423-level2-skips-reindented.json"))
    assert [x.status for x in r.with_status("skip")] == ["skip", "skip"]
    assert not r.with_status("pass")


def test_banner_before_the_document_and_3x_gpu_ids() -> None:
    text = 'Successfully ran diagnostic for group.\n{"DCGM GPU Diagnostic": {"test_categories": [{"category": ' \
           '"Deployment", "tests": [{"name": "Denylist", "results": [{"gpu_ids": "0,1", "status": "PASS"}]}]}]}}'
    r = parse_dcgm_diag(text)
    assert [(x.entity_id, x.status) for x in r.results] == [(0, "pass"), (1, "pass")]


@pytest.mark.parametrize("text", ["", "Error: unable to connect to host engine", "{not json", '{"other": 1}'])
def test_not_dcgm_output(text: str) -> None:
    with pytest.raises(ParseError):
        parse("dcgm-diag", text)


def test_unknown_status_is_not_a_pass() -> None:
    r = parse_dcgm_diag('{"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [{"name": "m", '
                        '"results": [{"entity_id": 0, "status": "Inconclusive"}]}]}]}}')
    assert r.results[0].status == "unknown:inconclusive" and r.with_status("unknown")
