"""Node-health judges on plain data: every pass, fail and not-shown shape (checks/node_health.py)."""
from __future__ import annotations

from pytest_gpucluster.checks import node_health as j
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.parsers import parse_dcgm_diag, parse_nvlink, parse_topo, parse_xid
from pytest_gpucluster.parsers.nvidia_smi_health import GpuHealth, SmiHealth

from tests.parsers._data import sample

S = "ip-10-0-3-17/p5.48xlarge"


def gpu(i: int = 0, **kw: object) -> GpuHealth:
    base: dict = dict(bus_id=f"00000000:{0x53 + i:02X}:00.0", name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i:08d}",
                      persistence_mode="Enabled", ecc_mode="Enabled", ecc_volatile_uncorrectable=0,
                      ecc_aggregate_uncorrectable=0, remap_pending="No", remap_failure="No",
                      remap_histogram={"Max": 2560, "None": 0}, pcie_gen_max=5, pcie_gen_current=5, pcie_width_max=16,
                      pcie_width_current=16, power_limit_w=700.0, power_limit_default_w=700.0,
                      fabric_state="Completed", fabric_status="Success", vbios="96.00.A5.00.01")
    base.update(kw)
    return GpuHealth(**base)


def smi(*gpus: GpuHealth, driver: str = "580.105.08") -> SmiHealth:
    return SmiHealth(driver_version=driver, cuda_version="13.0", gpus=list(gpus) or [gpu(0), gpu(1)])


def nvlink(n: int = 2, links: int = 18, speed: str = "26.562 GB/s") -> str:
    return "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d})\n" +
                   "".join(f"\t Link {k}: {speed}\n" for k in range(links)) for i in range(n))


# -- DCGM --------------------------------------------------------------------------------------------------
DCGM_OK = ('{"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [{"name": "memory", "results": '
           '[{"entity_group": "GPU", "entity_id": 0, "status": "Pass"}, {"entity_group": "GPU", "entity_id": 1, '
           '"status": "Warn", "warnings": [{"warning": "slow"}]}]}]}]}}')


def test_dcgm_pass_records_duration_and_warnings() -> None:
    v = j.dcgm(S, parse_dcgm_diag(DCGM_OK), 2, 95.2, 0, None, {0: gpu(0), 1: gpu(1)})
    assert v.ok and v.criteria[0].value == 95.2 and "memory on GPU 1" in v.facts["DCGM warnings"][0]


def test_dcgm_failure_names_gpu_test_and_dcgms_message() -> None:
    v = j.dcgm(S, parse_dcgm_diag(sample("dcgm-diag", "gb10-dcgm452-level2-tabs-software-fail.json")), 2, 30.0, 226,
               None, {0: gpu(0)})
    assert v.status is Status.FAIL
    assert "software FAILED on GPU 0 (GPU-00000000, bus 00000000:53:00.0)" in v.message
    assert "Persistence mode for GPU 0 is disabled" in v.message and "error id 29" in v.message


def test_dcgm_all_skipped_is_not_shown_and_no_output_fails() -> None:
    skipped = parse_dcgm_diag('{"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [{"name": '
                              '"memory", "results": [{"entity_id": 0, "status": "Skip"}]}]}]}}')
    assert j.dcgm(S, skipped, 2, 1.0, 0, None).status is Status.NOT_SHOWN
    v = j.dcgm(S, None, 2, None, 1, "not dcgm-diag output: no JSON document")
    assert v.status is Status.FAIL and "no JSON document" in v.message
    runtime = parse_dcgm_diag('{"DCGM Diagnostic": {"runtime_error": "NVVS error", "test_categories": []}}')
    assert j.dcgm(S, runtime, 2, 1.0, 226, None).status is Status.FAIL


# -- Xid ---------------------------------------------------------------------------------------------------
def test_xid_79_fails_with_nvidia_action_and_gpu_named() -> None:
    log = parse_xid("[ 3600.000000] NVRM: Xid (PCI:0000:56:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen "
                    "off the bus.\n")
    v = j.xid(S, log, 10800.0, None, smi(gpu(0), gpu(3)))
    assert v.status is Status.FAIL
    assert "Xid 79 (GPU has fallen off the bus) on GPU 1 (GPU-00000003, bus 00000000:56:00.0), 2.0 h ago" in v.message
    assert "RESTART_BM" in v.message and j.XID_CATALOG in v.message


def test_xid_application_level_warns_only_and_window_excludes_old_events() -> None:
    app = parse_xid(sample("xid", "dmesg-decode-iso-xid13.log"))
    v = j.xid(S, app, None, None, None)
    assert v.ok and v.facts["Xid warnings (application-level)"]
    old = parse_xid("[ 100.0] NVRM: Xid (PCI:0000:53:00): 48, pid=1, name=x, DBE\n")
    assert j.xid(S, old, 100000.0, 24, None).ok                      # 27 h ago, window 24 h
    assert j.xid(S, old, 100000.0, None, None).status is Status.FAIL  # since boot
    for code in (63, 64, 74, 95, 119):
        assert j.classify_xid(parse_xid(f"NVRM: Xid (PCI:0000:53:00): {code}, x\n").events[0]).severity == "fail"


def test_xid_from_a_real_capture_and_sxid_and_not_readable() -> None:
    v = j.xid(S, parse_xid(sample("xid", "dmesg-ctime-xid119-h100-xe9680.log")), None, None, None)
    assert v.status is Status.FAIL and "GPU-509665ad-b600-ac93-3616-d754b23d636d" in v.message
    sx = parse_xid("[ 5.0] nvidia-nvswitch0: SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link 32 egress\n")
    assert j.xid(S, sx, 10.0, None, None).ok
    forbidden = j.xid(S, None, None, None, None, "the cluster refused a privileged pod: Forbidden")
    assert forbidden.status is Status.NOT_SHOWN and "Forbidden" in forbidden.message


# -- NVLink / fabric ------------------------------------------------------------------------------------
def test_nvlink_pass_and_every_failure_shape() -> None:
    ok = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink()), smi(), "CUDA-LOAD ok devices=2", 0)
    assert ok.ok and ok.criteria[0].value == 36
    down = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(sample("nvlink", "a100-80gb-all-inactive-azure.txt")),
                           smi(gpu(0, fabric_state="Not Started", fabric_status="N/A")),
                           "RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 802: system not yet "
                           "initialized", 1)
    assert down.status is Status.FAIL
    for text in ("all links are inactive", "fabric state Not Started/N/A", "system not yet initialized",
                 "fabric manager"):
        assert text in down.message
    few = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(nvlink(links=12)), smi(), "CUDA-LOAD ok", 0)
    assert "12/18 links active" in few.message
    slow = j.nvlink_fabric(S, 12, 25.0, parse_nvlink(nvlink(links=12, speed="12.5 GB/s")), smi(), "CUDA-LOAD ok", 0)
    assert "below 25.0 GB/s" in slow.message
    none = j.nvlink_fabric(S, 18, 26.562, parse_nvlink(""), smi(), "CUDA-LOAD ok", 0)
    assert "listed no GPU" in none.message
    assert j.nvlink_fabric(S, None, None, None, smi(), "", 0).status is Status.NOT_SHOWN


# -- ECC -------------------------------------------------------------------------------------------------
def test_ecc_every_failure_shape() -> None:
    assert j.ecc_memory(S, smi()).ok
    shapes = {"volatile uncorrectable": gpu(1, ecc_volatile_uncorrectable=2),
              "aggregate (lifetime)": gpu(1, ecc_aggregate_uncorrectable=1),
              "row remapping pending": gpu(1, remap_pending="Yes"), "row remapping FAILED": gpu(1, remap_failure="Yes"),
              "no remap left": gpu(1, remap_histogram={"None": 1}), "page retirement pending": gpu(1, retired_pending="Yes"),
              "retired for double-bit": gpu(1, retired_dbe=3)}
    for text, bad in shapes.items():
        v = j.ecc_memory(S, smi(gpu(0), bad))
        assert v.status is Status.FAIL and text in v.message and "GPU 1 (GPU-00000001" in v.message, text
    assert j.ecc_memory(S, None).status is Status.FAIL


# -- PCIe / clocks -----------------------------------------------------------------------------------------
def test_pcie_width_gen_and_idle_downshift() -> None:
    assert j.pcie(S, smi(), 5, 16, True).ok
    narrow = j.pcie(S, smi(gpu(0), gpu(2, pcie_width_current=8)), 5, 16, True)
    assert narrow.status is Status.FAIL and "GPU 1 (GPU-00000002" in narrow.message and "x8" in narrow.message
    gen = j.pcie(S, smi(gpu(0, pcie_gen_current=3)), 5, 16, True)
    assert "Gen3 under load" in gen.message
    assert j.pcie(S, smi(gpu(0, pcie_gen_current=1)), 5, 16, False).ok       # idle downshift not judged
    assert j.pcie(S, None, 5, 16, True).status is Status.FAIL


def test_clocks_every_shape() -> None:
    assert j.clocks(S, smi(gpu(0, clock_events_active=["SW Power Cap"])), 700, True).ok
    for bad, text in ((gpu(0, clock_events_active=["HW Slowdown"]), "HW Slowdown"),
                      (gpu(0, clock_events_active=["HW Power Brake Slowdown"]), "Power Brake"),
                      (gpu(0, persistence_mode="Disabled"), "persistence mode Disabled"),
                      (gpu(0, power_limit_w=500.0), "power limit 500 W, expected 700 W")):
        v = j.clocks(S, smi(bad), 700, True)
        assert v.status is Status.FAIL and text in v.message
    assert j.clocks(S, smi(), 700, False).status is Status.NOT_SHOWN
    assert j.clocks(S, None, 700, True).status is Status.FAIL


# -- topology / uniformity ----------------------------------------------------------------------------
def test_topology() -> None:
    four = parse_topo(sample("topo", "h100-x4-nv6-4nic-nccl-issue1617.txt"))
    assert j.topology(S, four, "NV6", 4).ok
    v = j.topology(S, four, "NV18", 8)
    assert v.status is Status.FAIL and "4 GPUs in the matrix, profile 8" in v.message and "GPU0-GPU1: NV6" in v.message
    assert j.topology(S, None, "NV18", 8).status is Status.FAIL


def test_uniformity_odd_node_tie_and_missing() -> None:
    base = {"driver": "580.105.08", "cuda": "13.0", "kernel": "6.1.0"}
    three = {"a": base, "b": base, "c": {**base, "driver": "570.172.08"}}
    assert j.uniformity("a/p5", "a", "p5.48xlarge", three).ok
    odd = j.uniformity("c/p5", "c", "p5.48xlarge", three)
    assert odd.status is Status.FAIL and "driver 570.172.08 on c where 2/3 p5.48xlarge nodes run 580.105.08" in odd.message
    tie = j.uniformity("a/p5", "a", "p5.48xlarge", {"a": base, "c": three["c"]})
    assert tie.status is Status.FAIL and "no majority" in tie.message
    assert j.uniformity("x/p5", "x", "p5.48xlarge", three).status is Status.NOT_SHOWN
    assert j.versions_of(smi(), "kernel=6.1.0\nefa driver=2.13.0g\n") == {
        "driver": "580.105.08", "cuda": "13.0", "vbios": "96.00.A5.00.01", "kernel": "6.1.0", "efa driver": "2.13.0g"}


def test_sections_and_summary_row() -> None:
    logs = "### smi-q\nx\n### rc=0\n### cuda\nboom\n### rc=1\n"
    assert j.split_sections(logs) == {"smi-q": ("x", 0), "cuda": ("boom", 1)}
    assert j.summary_row({"dcgm": j.dcgm(S, None, 2, None, 1, "x"), "ecc": j.ecc_memory(S, smi())}) == "dcgm=FAIL ecc=ok"
