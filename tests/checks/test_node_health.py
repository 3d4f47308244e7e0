"""Node-health probe judges on plain data and real captures (checks/node_health.py): CUDA, NVLink/fabric, memory,
PCIe, clocks, topology, and the probe's sections."""
from __future__ import annotations

import dataclasses

from pytest_gpucluster.checks import node_health as j
from pytest_gpucluster.checks.probe_output import split_sections
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.parsers import parse_nvlink, parse_smi_log, parse_topo
from pytest_gpucluster.parsers.nvidia_smi_model import SmiGpu, SmiLog

from tests.parsers._data import sample

S = "ip-10-0-3-17/p5.48xlarge"


def gpu(i: int = 0, **kw: object) -> SmiGpu:
    base: dict = dict(bus_id=f"00000000:{0x53 + i:02X}:00.0", name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i:08d}",
                      persistence_mode="Enabled", ecc_mode="Enabled", ecc_volatile_uncorrectable=0,
                      ecc_aggregate_uncorrectable=0, remap_pending="No", remap_failure="No",
                      remap_histogram={"Max": 2560, "None": 0}, pcie_gen_max=5, pcie_gen_current=5, pcie_width_max=16,
                      pcie_width_current=16, power_limit_w=700.0, power_limit_default_w=700.0,
                      fabric_state="Completed", fabric_status="Success", vbios="96.00.A5.00.01",
                      performance_state="P0")
    base.update(kw)
    return SmiGpu(**base)


def smi(*gpus: SmiGpu, driver: str = "580.105.08") -> SmiLog:
    return SmiLog(driver_version=driver, cuda_version="13.0", gpus=list(gpus) or [gpu(0), gpu(1)])


def real_h100(**kw: object) -> SmiLog:
    """The real 590 H100 -q under load, one field changed where a shape has no public capture."""
    q = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt"))
    q.gpus = [dataclasses.replace(q.gpus[0], **kw)]
    return q


def nvlink(indices: range | list[int] = range(2), links: int = 18, speed: str = "26.562 GB/s") -> str:
    """`nvidia-smi nvlink -s` in the layout of tests/data/nvlink/h100-80gb-hbm3-590-18links.txt."""
    return "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d})\n" +
                   "".join(f"\t Link {k}: {speed}\n" for k in range(links)) for i in indices)


# -- CUDA ---------------------------------------------------------------------------------------------------
def test_cuda_usable_needs_the_load_running_on_every_gpu() -> None:
    out = "".join(f"CUDA-LOAD running device={i}\n" for i in range(2))
    assert j.cuda_usable(S, out, 143, 2, smi()).ok                      # stopped by the probe after the reads
    one = j.cuda_usable(S, "CUDA-LOAD running device=0\n", 1, 2, smi())
    assert one.status is Status.FAIL and "never ran on GPU 1 (GPU-00000001" in one.message


def test_cuda_failing_on_a_pcie_only_type_fails_its_own_check() -> None:
    """A g5 node whose CUDA load fails on every GPU: NVLink is not applicable and PCIe width is fine, so before this
    check existed nothing failed. The error is PyTorch's for an unreachable driver (pytorch/pytorch issue #67991)."""
    out = ("Traceback (most recent call last):\n  File \"<string>\", line 4, in <module>\n"
           "RuntimeError: No CUDA GPUs are available\n")
    v = j.cuda_usable(S, out, 1, 4, smi(gpu(0), gpu(1), gpu(2), gpu(3)))
    assert v.status is Status.FAIL and "No CUDA GPUs are available" in v.message and "GPU 3" in v.message
    assert j.nvlink_fabric(S, None, None, None, smi(), out).status is Status.NOT_SHOWN


def test_dcgmproftester_worker_lines_mark_running_gpus() -> None:
    """dcgmproftester12's per-worker report lines (NVIDIA/DCGM issue #239, the DCGM 4.2.3 image)."""
    out = ("Skipping CreateDcgmGroups() since DCGM validation is disabled\n"
           "Worker 0:0[1007]: Fp32EngineActive: target 0.00, dcgm 0\nWorker 0:0[1007]: Fp32EngineActive: target max, "
           "dcgm 0\n")
    assert j.load_running(out) == {0}
    assert j.cuda_usable(S, out, 143, 1, None).ok
    # dcgmproftester without NVML ends its message without a newline; the probe adds one so the section still closes
    logs = "### cuda\ndcgmStartEmbedded() returned -7.Error -7 from Init(). Exiting.\n### rc=249\n"
    out, rc = split_sections(logs)["cuda"]
    failed = j.cuda_usable(S, out, rc, 8, None)
    assert failed.status is Status.FAIL and "(exit code 249): dcgmStartEmbedded() returned -7" in failed.message
    missing = j.cuda_usable(S, "sh: 1: python3: not found\n", 127, 1, None, image="busybox")
    assert missing.status is Status.NOT_SHOWN and "lacks the load's program" in missing.message


# -- NVLink / fabric ------------------------------------------------------------------------------------
def test_nvlink_pass_and_every_failure_shape() -> None:
    ok = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink()), smi(), "")
    assert ok.ok and ok.criteria[0].value == 36 and ok.criteria[0].passed
    down = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(sample("nvlink", "a100-80gb-all-inactive-azure.txt")),
                           smi(gpu(0, fabric_state="Not Started", fabric_status="N/A")),
                           "RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 802: system not yet "
                           "initialized")
    assert down.status is Status.FAIL
    for text in ("fabric state Not Started/N/A", "system not yet initialized", "fabric manager"):
        assert text in down.message
    few = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink(links=12)), smi(), "")
    assert "12/18 links active" in few.message
    slow = j.nvlink_fabric(S, 12, 25.0, parse_nvlink(nvlink(links=12, speed="12.5 GB/s")), smi(), "")
    assert "below 25.0 GB/s" in slow.message
    none = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(""), smi(), "")
    assert none.status is Status.FAIL and "not listed by `nvidia-smi nvlink -s`" in none.message
    assert j.nvlink_fabric(S, None, None, None, smi(), "").status is Status.NOT_SHOWN


def test_nvlink_listing_seven_of_eight_gpus_fails_with_the_criterion_it_records() -> None:
    eight = smi(*[gpu(i) for i in range(8)])
    v = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink(range(7))), eight, "")
    assert v.status is Status.FAIL and "GPU 7 (GPU-00000007, bus 00000000:5A:00.0): not listed" in v.message
    crit = v.criteria[0]
    assert (crit.value, crit.threshold, crit.passed) == (126, 144, False)


def test_a100_without_fabric_state_is_judged_by_links_and_cuda_start_up() -> None:
    """A healthy p4d: the real 8x A100 `nvlink -s` (12 links at 25 GB/s) and -q printing Fabric State N/A (NVML has
    no fabric info before Hopper): passes. The fabric manager down there shows as CUDA error 802 and inactive links."""
    a100 = smi(*[gpu(i, fabric_state="N/A", fabric_status="N/A") for i in range(8)])
    links = parse_nvlink(sample("nvlink", "a100-80gb-x8-gpud.txt"))
    ok = j.nvlink_fabric(S, 12, 25.0, links, a100, "".join(f"CUDA-LOAD running device={i}\n" for i in range(8)))
    assert ok.ok and "fabric state not reported" in ok.observed and ok.criteria[0].value == 96
    down = j.nvlink_fabric(S, 12, 25.0, parse_nvlink(sample("nvlink", "a100-80gb-all-inactive-azure.txt")), a100,
                           "RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 802: system not yet "
                           "initialized")
    assert down.status is Status.FAIL and "Error 802" in down.message and "not listed" in down.message


def test_cuda_failure_other_than_the_fabric_is_not_the_nvlink_checks() -> None:
    assert j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink()), smi(), "RuntimeError: out of memory").ok


# -- memory -------------------------------------------------------------------------------------------------
def test_ecc_blocking_shapes() -> None:
    assert j.ecc_memory(S, smi()).ok
    shapes = {"volatile uncorrectable": gpu(1, ecc_volatile_uncorrectable=2),
              "row remapping FAILED": gpu(1, remap_failure="Yes"), "no remap left": gpu(1, remap_histogram={"None": 1})}
    for text, bad in shapes.items():
        v = j.ecc_memory(S, smi(gpu(0), bad))
        assert v.status is Status.FAIL and text in v.message and "GPU 1 (GPU-00000001" in v.message, text
    assert j.ecc_memory(S, None).status is Status.FAIL


def test_590_replacement_flags_fail() -> None:
    """`SRAM Threshold Exceeded` and `Unrepairable Memory` as 590 drivers print them (no public capture prints Yes:
    the real capture's No is turned to Yes)."""
    clean = real_h100()
    assert (clean.gpus[0].sram_threshold_exceeded, clean.gpus[0].unrepairable_memory) == ("No", "No")
    assert j.ecc_memory(S, clean).ok
    for field, text in (("sram_threshold_exceeded", "SRAM Threshold Exceeded: Yes"),
                        ("unrepairable_memory", "Unrepairable Memory: Yes")):
        v = j.ecc_memory(S, real_h100(**{field: "Yes"}))
        assert v.status is Status.FAIL and text in v.message and "Replace the instance" in v.message


def test_memory_history_is_its_own_check() -> None:
    assert j.memory_history(S, smi()).ok
    for text, bad in {"aggregate (lifetime)": gpu(1, ecc_aggregate_uncorrectable=1),
                      "row remapping pending": gpu(1, remap_pending="Yes"),
                      "page retirement pending": gpu(1, retired_pending="Yes"),
                      "retired for double-bit": gpu(1, retired_dbe=3)}.items():
        assert text in j.memory_history(S, smi(gpu(0), bad)).message
        assert j.ecc_memory(S, smi(gpu(0), bad)).ok, text                # not a blocking shape


# -- PCIe / clocks under load ---------------------------------------------------------------------------------
def test_pcie_width_and_generation_under_load() -> None:
    assert j.pcie(S, smi(), 5, 16).ok
    narrow = j.pcie(S, smi(gpu(0), gpu(2, pcie_width_current=8)), 5, 16)
    assert narrow.status is Status.FAIL and "GPU 1 (GPU-00000002" in narrow.message and "x8" in narrow.message
    assert "Gen3 under load" in j.pcie(S, smi(gpu(0, pcie_gen_current=3)), 5, 16).message
    assert j.pcie(S, None, 5, 16).status is Status.FAIL


def test_pcie_and_clocks_on_gpus_not_read_under_load_are_not_shown() -> None:
    """The real idle H200 -q (P0 with `Idle : Active`): the old judge took "the load printed OK" for load and passed."""
    idle = parse_smi_log(sample("nvidia-smi", "q-h200-590-idle.txt"))
    v = j.pcie(S, idle, 5, 16)
    assert v.status is Status.NOT_SHOWN and "not read under load" in v.message and "GPU 0 (" in v.message
    c = j.clocks(S, idle)
    assert c.status is Status.NOT_SHOWN and "not read under load" in c.message
    downshifted = j.pcie(S, smi(gpu(0), gpu(1, performance_state="P8", pcie_gen_current=1)), 5, 16)
    assert downshifted.status is Status.NOT_SHOWN and "GPU 1" in downshifted.facts["GPUs not read under load"][0]
    narrow_idle = j.pcie(S, smi(gpu(0), gpu(1, performance_state="P8", pcie_width_current=8)), 5, 16)
    assert narrow_idle.status is Status.FAIL                      # width is judged idle or not
    busy = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt"))
    assert j.pcie(S, busy, 5, 16).ok and j.clocks(S, busy).ok


def test_pcie_printed_na_is_not_shown() -> None:
    v = j.pcie(S, smi(gpu(0), gpu(1, pcie_width_current=None, pcie_gen_current=None)), 5, 16)
    assert v.status is Status.NOT_SHOWN and "link printed N/A" in v.message


def test_clocks_every_shape() -> None:
    assert j.clocks(S, smi(gpu(0, clock_events_active=["SW Power Cap"]))).ok
    for bad, text in ((gpu(0, clock_events_active=["HW Slowdown"]), "HW Slowdown"),
                      (gpu(0, clock_events_active=["HW Power Brake Slowdown"]), "Power Brake")):
        v = j.clocks(S, smi(bad))
        assert v.status is Status.FAIL and text in v.message and v.summary == "GPU clocks throttled"
    # one check per concept: persistence and power limit are their own checks, not a throttled clock
    assert j.clocks(S, smi(gpu(0, persistence_mode="Disabled", power_limit_w=500.0))).ok
    assert j.clocks(S, None).status is Status.FAIL


def test_power_limit_every_shape() -> None:
    assert j.power_limit(S, smi(), 700).ok and j.power_limit(S, smi(), None).ok      # profile value, else default
    v = j.power_limit(S, smi(gpu(0), gpu(1, power_limit_w=500.0)), 700)
    assert v.status is Status.FAIL and "GPU 1 (GPU-00000001" in v.message and "500 W, expected 700 W" in v.message
    assert j.power_limit(S, smi(gpu(0, power_limit_w=500.0, power_limit_default_w=500.0)), None).ok
    assert j.power_limit(S, smi(gpu(0, power_limit_w=500.0, power_limit_default_w=500.0)), 700).status is Status.FAIL
    unread = j.power_limit(S, smi(gpu(0, power_limit_w=None)), 700)       # printed N/A: never taken as right
    assert unread.status is Status.NOT_SHOWN and "not printed" in unread.message
    assert j.power_limit(S, None, 700).status is Status.FAIL


def test_persistence_mode_every_shape() -> None:
    assert j.persistence_mode(S, smi()).ok
    off = j.persistence_mode(S, smi(gpu(0), gpu(1, persistence_mode="Disabled")))
    assert off.status is Status.FAIL and "GPU 1 (GPU-00000001" in off.message and "nvidia-persistenced" in off.fix
    assert j.persistence_mode(S, smi(gpu(0, persistence_mode="N/A"))).status is Status.NOT_SHOWN
    assert j.persistence_mode(S, smi(gpu(0, persistence_mode=None))).status is Status.NOT_SHOWN
    assert j.persistence_mode(S, None).status is Status.FAIL


def test_persistence_mode_of_a_real_capture() -> None:
    """Real -q captures: the 590 H100 under load has it Enabled, the 595 L40S Disabled."""
    assert j.persistence_mode(S, parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt"))).ok
    l40s = parse_smi_log(sample("nvidia-smi-health", "q-l40s-595-idle.txt"))
    assert j.persistence_mode(S, l40s).status is Status.FAIL


# -- topology / sections ------------------------------------------------------------------------------------
def test_topology() -> None:
    four = parse_topo(sample("topo", "h100-x4-nv6-4nic-nccl-issue1617.txt"))
    assert j.topology(S, four, "NV6", 4).ok
    v = j.topology(S, four, "NV18", 8)
    assert v.status is Status.FAIL and "4 GPUs in the matrix, profile 8" in v.message and "GPU0-GPU1: NV6" in v.message
    assert j.topology(S, None, "NV18", 8).status is Status.FAIL


def test_sections_and_summary_row() -> None:
    logs = "### smi-q\nx\n### rc=0\n### cuda\nboom\n### rc=1\n"
    assert split_sections(logs) == {"smi-q": ("x", 0), "cuda": ("boom", 1)}
    assert j.summary_row({"ecc": j.ecc_memory(S, smi()), "pcie": j.pcie(S, None, 5, 16)}) == "ecc=ok pcie=FAIL"


def test_mig_mixed_node_is_not_shown_not_failed() -> None:
    v = j.mig_mixed(S, "DCGM", {"nvidia.com/mig-1g.5gb": 56})
    assert v.status is Status.NOT_SHOWN and v.message.startswith(f"{S}: cannot judge: MIG mixed: whole GPUs needed")
    assert "56 x nvidia.com/mig-1g.5gb and 0 nvidia.com/gpu" in v.message
