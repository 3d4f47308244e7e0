"""`nvidia-smi -q` and `-q -x` read into SmiLog (parsers/nvidia_smi_q.py), on the real captures in tests/data."""
from __future__ import annotations

import pytest

from pytest_gpucluster.parsers import ParseError, parse_nvidia_smi, parse_smi_log

from ._data import DATA, sample


def test_h100_under_load() -> None:
    g = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt")).gpus[0]
    assert (g.pcie_gen_max, g.pcie_gen_current, g.pcie_width_max, g.pcie_width_current) == (5, 5, 16, 16)
    assert (g.ecc_mode, g.ecc_volatile_uncorrectable, g.ecc_aggregate_uncorrectable) == ("Enabled", 0, 0)
    assert (g.remap_pending, g.remap_failure, g.remap_histogram["Max"]) == ("No", "No", 2560)
    assert (g.power_limit_w, g.power_limit_default_w, g.fabric_state, g.fabric_status) == (700, 700, "Completed",
                                                                                            "Success")
    assert g.clock_events_active == [] and g.persistence_mode == "Enabled" and g.vbios == "96.00.A5.00.01"


def test_h200_idle_and_l40s_gen4() -> None:
    h200 = parse_smi_log(sample("nvidia-smi", "q-h200-590-idle.txt")).gpus[0]
    assert h200.clock_events_active == ["Idle"]
    l40s = parse_smi_log(sample("nvidia-smi-health", "q-l40s-595-idle.txt"))
    assert l40s.driver_version == "595.80"
    assert (l40s.gpus[0].pcie_gen_max, l40s.gpus[0].power_limit_w, l40s.gpus[0].fabric_state) == (4, 350, "N/A")


def test_retired_pages_only_output() -> None:
    good = parse_smi_log(sample("nvidia-smi", "q-d-page-retirement-azure-8gpu-535.txt"))
    bad = parse_smi_log(sample("nvidia-smi-health", "q-d-page-retirement-azure-8gpu-535-bad.txt"))
    assert len(good.gpus) == 8 and {g.retired_dbe for g in good.gpus} == {0}
    assert [(g.retired_dbe, g.retired_pending) for g in bad.gpus[:2]] == [(5, "No"), (61, "Yes")]
    assert bad.gpus[0].bus_id == "00000001:00:00.0"


def test_xml() -> None:
    p100 = parse_smi_log(sample("nvidia-smi", "q-x-netdata-tesla-p100.txt")).gpus[0]
    assert (p100.pcie_gen_max, p100.pcie_width_current, p100.power_limit_w) == (3, 16, 250)
    assert p100.clock_events_active == ["gpu_idle"]


def test_not_q_output() -> None:
    with pytest.raises(ParseError):
        parse_smi_log("GPU 0: NVIDIA H100 (UUID: x)\n")


def test_590_recovery_action_replacement_flags_and_load_state() -> None:
    h100 = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt")).gpus[0]
    assert (h100.recovery_action, h100.sram_threshold_exceeded, h100.unrepairable_memory) == ("None", "No", "No")
    assert (h100.performance_state, h100.busy) == ("P0", True)
    h200 = parse_smi_log(sample("nvidia-smi", "q-h200-590-idle.txt")).gpus[0]
    assert (h200.performance_state, h200.busy) == ("P0", False)        # P0 but `Idle : Active`
    older = parse_smi_log(sample("nvidia-smi-health", "q-d-page-retirement-azure-8gpu-535-bad.txt")).gpus[0]
    assert (older.recovery_action, older.sram_threshold_exceeded, older.performance_state) == (None, None, None)
    assert not older.busy                                             # no performance state: not shown as loaded


Q_CAPTURES = [("nvidia-smi", p.name) for p in sorted((DATA / "nvidia-smi").glob("q-*.txt"))] + \
             [("nvidia-smi-health", p.name) for p in sorted((DATA / "nvidia-smi-health").glob("q-*.txt"))]


@pytest.mark.parametrize(("kind", "name"), Q_CAPTURES)
def test_one_reader_for_every_view_of_q(kind: str, name: str) -> None:
    """parse_nvidia_smi reads -q through the same reader as parse_smi_log: the two views of a capture agree."""
    text = sample(kind, name)
    log, result = parse_smi_log(text), parse_nvidia_smi(text)
    assert result.format in ("query", "xml") and (result.driver_version, result.cuda_version) == (
        log.driver_version, log.cuda_version)
    assert [(g.index, g.bus_id, g.uuid, g.name, g.persistence_mode, g.mig_mode, g.memory_total_mib,
             g.ecc_errors_uncorrected, g.active_clock_event_reasons) for g in result.gpus] == [
        (g.index, g.bus_id, g.uuid, g.name, g.persistence_mode, g.mig_mode, g.memory_total_mib,
         g.ecc_volatile_uncorrectable, sorted(k for k, v in g.clock_event_reasons.items() if v.lower() == "active"))
        for g in log.gpus]
    assert len(log.gpus) > 0 or log.driver_version is not None
