"""`dcgmi diag` text tables (no `-j`) on the real DCGM 2.x / 3.x / 4.x captures in tests/data/dcgm-diag (SOURCES.md)."""
from __future__ import annotations

import pytest

from pytest_gpucluster.checks.dcgm import dcgm
from pytest_gpucluster.parsers import ParseError, parse, parse_dcgm_diag_text

from ._data import sample


def table(name: str):  # noqa: ANN201 - DcgmDiagResult
    return parse("dcgm-diag", sample("dcgm-diag", name))


def test_2x_no_metadata_pass_all_is_one_result_per_test_for_all_gpus() -> None:
    r = table("gcm-2x-level4-pass-all.txt")
    assert r.dcgm_version is None and r.gpus == {}
    assert r.tests()[:2] == ["Blacklist", "NVML Library"] and "Memtest" in r.tests()
    assert {x.status for x in r.results} == {"pass"} and {x.entity_id for x in r.results} == {None}
    assert {x.category for x in r.results} == {"Deployment", "Integration", "Hardware", "Stress"}
    assert dcgm("n", r, 4, 1.0, 0, None, held=8).status == "pass"   # one result per test covers every GPU


def test_3x_metadata_and_device_ids() -> None:
    r = table("awsome-333-p4de-level2.txt")
    assert (r.dcgm_version, r.driver_version) == ("3.3.3", "535.104.12")
    assert sorted(r.gpus) == list(range(8)) and r.gpus[7]["device_id"] == "20b2"
    assert [(x.test, x.status) for x in r.results if x.category != "Deployment"] == [
        ("PCIe", "pass"), ("GPU Memory", "pass")]


def test_3x_skip_all_in_two_tables_reads_both_and_is_not_shown() -> None:
    r = table("gnosia-339-level3-skip-all-two-tables.txt")
    assert len(r.results) == 30 and len(r.with_status("skip")) == 12
    assert sorted(r.gpus) == [0, 1]
    verdict = dcgm("n", r, 3, 1.0, 0, None, held=2)
    assert verdict.status == "not shown"     # deployment passed, but the hardware tests of level 3 never ran
    assert "PCIe SKIP on all GPUs" in verdict.observed


def test_3x_split_pass_gpus_fail_gpu_with_wrapped_warning() -> None:
    r = table("stas00-3x-gpu-memory-split-excerpt.txt")
    assert [(x.entity_id, x.status) for x in r.results] == [(g, "pass") for g in range(1, 8)] + [(0, "fail")]
    warning = r.with_status("fail")[0].warnings[0]
    assert warning.startswith("GPU 0 Thermal violations totaling 13.3 seconds started at 9.7 seconds into the test")
    assert warning.endswith("fans, and any other components.")
    verdict = dcgm("n", r, 2, 1.0, 0, None, held=8)
    assert verdict.status == "fail" and "GPU Memory FAILED on GPU 0" in verdict.observed


def test_an_error_row_without_its_test_still_fails() -> None:
    r = table("stas00-3x-deployment-error-excerpt.txt")
    (only,) = r.results
    assert (only.entity_id, only.status) == (3, "fail")
    assert only.warnings == ["GPU 3 has uncorrectable memory errors and row remappings are pending"]


def test_4x_per_gpu_rows() -> None:
    r = table("dcgm124-442-a10g-level2-pass.txt")
    assert (r.dcgm_version, r.driver_version, r.gpus[0]["device_id"]) == ("4.4.2", "580.105.08", "2237")
    assert [(x.test, x.entity_id, x.status) for x in r.results] == [
        ("software", 0, "pass"), ("memory", 0, "pass"), ("pcie", 0, "pass")]


@pytest.mark.parametrize("name, gpus", [("dcgm253-423-pcie-fail-internal-error.txt", 4),
                                        ("dcgm253-441-b200-pcie-fail.txt", 8)])
def test_4x_test_that_fails_while_every_gpu_passes_stays_failed(name: str, gpus: int) -> None:
    r = table(name)
    assert len(r.gpus) == gpus and r.gpus[gpus - 1]["device_id"] in ("26b9", "2901")
    (failed,) = r.with_status("fail")
    assert (failed.test, failed.entity_id, failed.category) == ("pcie", None, "Integration")
    assert all(w.startswith("There was an internal error during the test: '") for w in failed.warnings)
    assert "couldn't be parsed: '* Line 1, Column 1   Syntax error: value, object or array expected." \
        in failed.warnings[-1]
    assert len([x for x in r.results if x.test == "pcie" and x.status == "pass"]) == gpus
    assert dcgm("n", r, 2, 1.0, 0, None, held=len(r.gpus) or 4).status == "fail"


def test_unable_to_complete_without_a_table_is_a_runtime_error() -> None:
    r = table("dcgm254-441-unable-to-complete.txt")
    assert r.results == [] and r.runtime_error is not None
    assert r.runtime_error.startswith("Error: Unable to complete diagnostic for entities 0,1,2,3. Return: (-30)")
    assert "Cannot load plugins" in r.runtime_error
    assert dcgm("n", r, 2, 1.0, 0, None, held=len(r.gpus) or 4).status == "fail"


def test_json_still_goes_to_the_json_reader() -> None:
    r = table("gb10-dcgm452-level2-tabs-software-fail.json")
    assert r.dcgm_version == "4.5.2" and r.with_status("fail")[0].error_ids == [29]


@pytest.mark.parametrize("text", ["", "Error: unable to connect to host engine", "+----+\n| a | b |\n+----+"])
def test_not_a_diagnostic_table(text: str) -> None:
    with pytest.raises(ParseError):
        parse_dcgm_diag_text(text)


def test_cli_reads_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_gpucluster.cli import main
    from ._data import DATA

    assert main(["parse", "dcgm-diag", str(DATA / "dcgm-diag" / "stas00-3x-gpu-memory-split-excerpt.txt")]) == 0
    out = capsys.readouterr().out
    assert '"status": "fail"' in out and '"gpu": 0' in out
