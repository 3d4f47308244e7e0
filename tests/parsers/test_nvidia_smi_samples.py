"""Every nvidia-smi sample in tests/data: the facts a reader sees in it."""
from __future__ import annotations

import pytest

from pytest_gpucluster.parsers import parse_nvidia_smi

from ._data import DATA, sample


def smi(name: str):
    return parse_nvidia_smi(sample("nvidia-smi", name))


def test_every_sample_is_covered_below() -> None:
    names = {p.name for p in (DATA / "nvidia-smi").iterdir()} - {"SOURCES.md"}
    assert names == set(COVERED)


def test_dgx_a100_pending_mig_star_and_hand_edited_processes() -> None:
    r = smi("a100-40gb-x8-450-dgx-mig-pending-disabled-star-handedited-procs.txt")
    assert (r.format, r.driver_version, r.cuda_version) == ("table", "450.102.04", "11.0")
    assert [g.index for g in r.gpus] == list(range(8))
    assert {g.name for g in r.gpus} == {"A100-SXM4-40GB"}
    assert [g.memory_used_mib for g in r.gpus[:3]] == [400, 5701, 36121]
    assert all(g.memory_total_mib == 40537 for g in r.gpus)
    assert r.gpus[7].bus_id == "00000000:BD:00.0"
    assert r.gpus[7].mig_mode == "Disabled" and r.gpus[7].mig_mode_pending == "Enabled"
    assert r.gpus[7].ecc_errors_uncorrected is None  # the ECC cell says "On", not a count
    assert all(g.mig_mode_pending is None for g in r.gpus[:7])
    assert r.mig_devices == []
    assert r.processes == []  # "0 App1  1%" rows are garbage, reported as warnings
    assert len(r.warnings) == 4


def test_mixed_mig_one_mig_device() -> None:
    r = smi("a100-40gb-x8-450-mixed-mig-one-mig-device.txt")
    assert r.driver_version == "450.80.02"
    assert [g.mig_mode for g in r.gpus] == ["Disabled"] + ["Enabled"] * 7
    assert [g.ecc_errors_uncorrected for g in r.gpus] == [0] + [None] * 7
    assert [m.to_json() for m in r.mig_devices] == [
        {"gpu": 7, "gi": 13, "ci": 0, "profile": None, "memory_total_mib": 4864}]
    assert r.gpus[7].memory_used_mib == 3
    assert r.processes == [] and r.warnings == []


def test_a10g_535_narrow_layout() -> None:
    r = smi("a10g-535-persistence-off-mem-used-excerpt.txt")
    assert (r.driver_version, r.cuda_version) == ("535.247.01", "12.2")
    (g,) = r.gpus
    assert (g.name, g.bus_id, g.memory_used_mib, g.memory_total_mib) == ("NVIDIA A10G", "00000000:00:1E.0", 8722, 23028)
    assert g.persistence_mode == "Off" and g.mig_mode is None and g.ecc_errors_uncorrected == 0
    assert g.matches_product("A10G") and g.product_key == "A10G"


def test_driver_error_is_an_error_not_zero_gpus() -> None:
    r = smi("error-couldnt-communicate-with-driver.txt")
    assert r.error is not None and r.error.category == "driver_unreachable"
    assert r.error.message.startswith("NVIDIA-SMI has failed")
    assert "$ nvidia-smi" not in r.error.message
    assert r.to_json()["gpus"] == [] and r.to_json()["error"]["category"] == "driver_unreachable"


@pytest.mark.parametrize("name,bus,used,driver,cuda", [
    ("h100-80gb-hbm3-590-table-idle.txt", "00000000:00:09.0", 0, "590.48.01", "13.1"),
    ("h100-eks-p5-580-pod-idle.txt", "00000000:86:00.0", 0, "580.105.08", "13.0"),
    ("h100-eks-p5-580-pod-mem-used-no-procs.txt", "00000000:B9:00.0", 74199, "580.105.08", "13.0"),
])
def test_single_h100_wide_layouts(name: str, bus: str, used: int, driver: str, cuda: str) -> None:
    r = smi(name)
    assert (r.driver_version, r.cuda_version) == (driver, cuda)
    (g,) = r.gpus
    assert (g.index, g.name, g.bus_id, g.memory_used_mib, g.memory_total_mib) == (0, "NVIDIA H100 80GB HBM3", bus, used, 81559)
    assert g.mig_mode == "Disabled" and g.ecc_errors_uncorrected == 0
    assert r.processes == []  # "No running processes found" (even with memory used, in a pod)
    assert g.matches_product("NVIDIA-H100-80GB-HBM3")  # GFD label spelling


def test_hgx_h100_x8_without_timestamp_or_processes() -> None:
    r = smi("h100-x8-550-no-date-no-procs.txt")
    assert (r.driver_version, r.cuda_version) == ("550.90.07", "12.4")
    assert [g.bus_id for g in r.gpus] == [f"00000000:{b}:00.0" for b in ("53", "64", "75", "86", "97", "A8", "B9", "CA")]
    assert {g.memory_used_mib for g in r.gpus} == {1}
    assert r.by_bus_id()["0000:ca:00.0"].index == 7


def test_h200_table_with_processes() -> None:
    r = smi("h200-590-table-load-processes.txt")
    (g,) = r.gpus
    assert (g.name, g.memory_used_mib, g.memory_total_mib) == ("NVIDIA H200", 32362, 143771)
    assert [(p.gpu, p.pid, p.name, p.memory_used_mib, p.type) for p in r.processes] == [
        (0, 10291, "/root/tools/memhog", 2566, "C"), (0, 10293, "/root/tools/memhog", 1542, "C"),
        (0, 10309, "./gpu_burn", 28234, "C")]


def test_470_header_with_cuda_na_only() -> None:
    r = smi("header-470-cuda-version-na-excerpt.txt")
    assert (r.format, r.driver_version, r.cuda_version, r.gpus) == ("table", "470.74", None, [])


def test_l4_570() -> None:
    r = smi("l4-570-single-gpu-excerpt.txt")
    assert (r.driver_version, r.cuda_version) == ("570.133.20", "12.8")
    assert [(g.name, g.bus_id, g.memory_total_mib, g.mig_mode) for g in r.gpus] == [("NVIDIA L4", "00000000:31:00.0", 23034, None)]


def test_list_with_mig_children() -> None:
    r = smi("list-L-h100-mig-590.txt")
    assert r.format == "list"
    (g,) = r.gpus
    assert (g.index, g.name, g.uuid, g.mig_mode) == (0, "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000000", "Enabled")
    assert [(m.gpu, m.profile, m.device) for m in r.mig_devices] == [
        (0, "3g.40gb", 0), (0, "2g.20gb", 1), (0, "1g.10gb", 2), (0, "1g.10gb", 3)]
    assert r.mig_devices[1].uuid == "MIG-00000001-0000-0000-0000-000000000001"


def test_list_single_h200() -> None:
    r = smi("list-L-h200-590.txt")
    assert [(g.index, g.name) for g in r.gpus] == [(0, "NVIDIA H200")] and r.mig_devices == []


def test_q_page_retirement_eight_gpus_nonzero_domains() -> None:
    r = smi("q-d-page-retirement-azure-8gpu-535.txt")
    assert (r.format, r.driver_version, r.cuda_version) == ("query", "535.86.10", "12.2")
    assert [g.bus_id for g in r.gpus] == [f"0000000{i}:00:00.0" for i in range(1, 9)]
    assert [g.index for g in r.gpus] == list(range(8))
    assert all(g.name is None for g in r.gpus)


def test_q_h100_under_load() -> None:
    r = smi("q-h100-80gb-hbm3-590-load.txt")
    (g,) = r.gpus
    assert (g.name, g.bus_id, g.memory_total_mib, g.memory_used_mib) == ("NVIDIA H100 80GB HBM3", "00000000:00:09.0", 81559, 19818)
    assert g.mig_mode == "Disabled" and g.ecc_errors_uncorrected == 0
    assert g.active_clock_event_reasons == []
    assert [(p.pid, p.name, p.memory_used_mib) for p in r.processes] == [
        (11327, "/root/tools/memhog", 2566), (11328, "/root/tools/memhog", 1542), (11345, "./gpu_burn", 15690)]


def test_q_h200_idle() -> None:
    r = smi("q-h200-590-idle.txt")
    (g,) = r.gpus
    assert (g.name, g.uuid, g.memory_total_mib, g.memory_used_mib) == ("NVIDIA H200", "GPU-00000000-0000-0000-0000-000000000000", 143771, 0)
    assert g.active_clock_event_reasons == ["gpu_idle"]
    assert r.processes == []


def test_xml_a100_mig_enabled() -> None:
    r = smi("q-x-netdata-a100-sxm4-mig.txt")
    assert (r.format, r.driver_version, r.cuda_version) == ("xml", "510.47.03", "11.6")
    (g,) = r.gpus
    assert (g.name, g.bus_id, g.mig_mode, g.memory_total_mib) == ("NVIDIA A100-SXM4-40GB", "00000000:00:04.0", "Enabled", 40960)
    assert g.ecc_errors_uncorrected is None  # volatile counters are N/A in MIG mode
    assert [(m.gi, m.ci, m.device, m.memory_total_mib) for m in r.mig_devices] == [(1, 0, 0, 19968), (2, 0, 1, 19968)]


def test_xml_p100_tabs_throttle_schema() -> None:
    r = smi("q-x-netdata-tesla-p100.txt")
    (g,) = r.gpus
    assert (g.name, g.uuid, g.memory_total_mib, g.mig_mode) == ("Tesla P100-PCIE-16GB", "GPU-d3da8716-eaab-75db-efc1-60e88e1cd55e", 16384, None)
    assert g.ecc_errors_uncorrected == 0
    assert g.clock_event_reasons["gpu_idle"] == "Active" and g.active_clock_event_reasons == ["gpu_idle"]
    assert g.matches_product("P100-PCIE-16GB")


def test_csv_compute_apps() -> None:
    r = smi("query-compute-apps-csv-h200-590-load.txt")
    assert r.format == "csv" and r.gpus == []
    assert [(p.pid, p.name, p.memory_used_mib, p.gpu_bus_id) for p in r.processes] == [
        (10291, "/root/tools/memhog", 2566, "00000000:83:00.0"), (10293, "/root/tools/memhog", 1542, "00000000:83:00.0"),
        (10309, "./gpu_burn", 28234, "00000000:83:00.0")]


def test_csv_all_fields_with_units() -> None:
    r = smi("query-gpu-csv-allfields-units-h200-590-load.txt")
    assert r.driver_version == "590.48.01"
    (g,) = r.gpus
    assert g.to_json() == {"index": 0, "name": "NVIDIA H200", "bus_id": "00000000:83:00.0",
                           "uuid": "GPU-00000000-0000-0000-0000-000000000000", "memory_total_mib": 143771,
                           "memory_used_mib": 32362, "mig_mode": "Disabled", "ecc_errors_uncorrected": 0}


def test_csv_header_units_bare_values_no_trailing_newline() -> None:
    r = smi("query-gpu-csv-units-tesla-p100-netdata.txt")
    (g,) = r.gpus
    assert (g.name, g.uuid, g.memory_used_mib, g.memory_total_mib) == ("Tesla P100-PCIE-16GB", "GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6", 0, None)


def test_rtx_a6000_ecc_off() -> None:
    r = smi("rtx-a6000-515-ecc-off-excerpt.txt")
    (g,) = r.gpus
    assert (g.name, g.memory_used_mib, g.memory_total_mib, g.ecc_errors_uncorrected, g.mig_mode) == ("NVIDIA RTX A6000", 5, 49140, None, None)
    assert (r.driver_version, r.cuda_version) == ("515.48.07", "11.7")


def test_t4g_whitespace_line_between_tables() -> None:
    r = smi("t4g-g5g-eks-570-cuda13.txt")
    assert (r.driver_version, r.cuda_version) == ("570.195.03", "13.0")
    assert [(g.name, g.bus_id, g.memory_total_mib) for g in r.gpus] == [("NVIDIA T4G", "00000000:00:1F.0", 15360)]
    assert not r.gpus[0].matches_product("Tesla T4")


def test_v100_masked_versions_truncated_name_old_processes() -> None:
    r = smi("v100-eks-docs-placeholder-driver-xxx.txt")
    assert (r.driver_version, r.cuda_version) == (None, None)  # XXX.XX is masked, not a version
    (g,) = r.gpus
    assert (g.name, g.name_truncated, g.memory_total_mib) == ("Tesla V100-SXM2", True, 16160)
    assert g.matches_product("Tesla V100-SXM2-16GB") and g.matches_product("V100-SXM2-16GB")
    assert not g.matches_product("A100-SXM4-40GB")
    assert r.processes == []


COVERED = [
    "a100-40gb-x8-450-dgx-mig-pending-disabled-star-handedited-procs.txt",
    "a100-40gb-x8-450-mixed-mig-one-mig-device.txt", "a10g-535-persistence-off-mem-used-excerpt.txt",
    "error-couldnt-communicate-with-driver.txt", "h100-80gb-hbm3-590-table-idle.txt", "h100-eks-p5-580-pod-idle.txt",
    "h100-eks-p5-580-pod-mem-used-no-procs.txt", "h100-x8-550-no-date-no-procs.txt", "h200-590-table-load-processes.txt",
    "header-470-cuda-version-na-excerpt.txt", "l4-570-single-gpu-excerpt.txt", "list-L-h100-mig-590.txt",
    "list-L-h200-590.txt", "q-d-page-retirement-azure-8gpu-535.txt", "q-h100-80gb-hbm3-590-load.txt",
    "q-h200-590-idle.txt", "q-x-netdata-a100-sxm4-mig.txt", "q-x-netdata-tesla-p100.txt",
    "query-compute-apps-csv-h200-590-load.txt", "query-gpu-csv-allfields-units-h200-590-load.txt",
    "query-gpu-csv-units-tesla-p100-netdata.txt", "rtx-a6000-515-ecc-off-excerpt.txt", "t4g-g5g-eks-570-cuda13.txt",
    "v100-eks-docs-placeholder-driver-xxx.txt", "table-b200-610-kmd-umd-excerpt.txt",
    "q-header-610-deprecated-version-notes-excerpt.txt",
]


@pytest.mark.parametrize("name,driver,cuda,gpus", [
    ("table-b200-610-kmd-umd-excerpt.txt", "610.43.02", "13.3", 1),                 # KMD/UMD header labels
    ("q-header-610-deprecated-version-notes-excerpt.txt", "610.47", "13.3", 0),      # bracketed deprecation notes
])
def test_r610_version_fields_come_out_clean(name: str, driver: str, cuda: str, gpus: int) -> None:
    r = smi(name)
    assert (r.driver_version, r.cuda_version, len(r.gpus)) == (driver, cuda, gpus)
