"""Node-health fakes in the real formats: `nvidia-smi nvlink -s`, `nvidia-smi topo -m`, the -q health sections,
`dcgmi diag -j`, `dmesg` and `nv-hostengine`, from the pod's sim context and its health faults.

Layouts follow the captures in tests/data (nvlink: h100-80gb-hbm3-590-18links.txt and the Azure all-inactive line;
topo: h100-590-single-gpu-ansi.txt; dcgmi: gb10-dcgm452-level2-tabs-software-fail.json; dmesg: the raw form of
dmesg-raw-fallen-off-bus-no-xid-nvsentinel155.log with the Xid line layout of dmesg-ctime-xid119-h100-xe9680.log;
DCGM's failure text is its DCGM_FR_FAULTY_MEMORY format string, dcgmlib/dcgm_errors.h)."""
from __future__ import annotations

import json
import sys
from typing import Any

from . import ctx as simctx
from .fault import FIRST_GPU_NODE, FaultKind

FAULTS = (
    FaultKind("gpu-ecc-errors", {"count": "1"}, FIRST_GPU_NODE,
              "nvidia-smi: volatile (and aggregate) uncorrectable ECC errors on every GPU (table, -q, --query-gpu)"),
    FaultKind("xid", {"code": "79", "gpu_index": "0", "hours_ago": "0.5"}, FIRST_GPU_NODE,
              "dmesg holds the NVRM Xid line (only a privileged pod mounting /dev/kmsg reads it); Xid 154 also leaves "
              "-q GPU Recovery Action at Reset on 590-series drivers"),
    FaultKind("nvlink-down", {}, FIRST_GPU_NODE,
              "fabric manager stopped: nvlink -s all links inactive, topo -m NODE/SYS instead of NV#, -q Fabric State "
              "Not Started; CUDA error 802 (system not yet initialized) in torch, CUDA samples, dcgmproftester and "
              "nccl-tests"),
    FaultKind("ecc-row-remap-pending", {"gpu_index": "0"}, FIRST_GPU_NODE,
              "-q Remapped Rows: one uncorrectable row, Pending Yes (applied at the next GPU reset)"),
    FaultKind("pcie-link-degraded", {"gpu_index": "0", "width": "8"}, FIRST_GPU_NODE,
              "the GPU's PCIe link trained at that width: -q GPU Link Info Current, --query-gpu pcie.link.width.current"),
    FaultKind("dcgm-diag-fail", {"gpu_index": "0", "test": "memory"}, FIRST_GPU_NODE,
              "dcgmi diag -r 2 -j: that test Fail on that GPU with DCGM_FR_FAULTY_MEMORY (error id 52), exit 226 "
              "(dcgmi exists only in the DCGM image)"),
    FaultKind("driver-mismatch", {"version": "570.172.08"}, FIRST_GPU_NODE,
              "the node runs another driver: nvidia-smi (table, -q, driver_version), dcgmi and dmesg print it"),
    FaultKind("gpu-throttled", {"gpu_index": "0", "reason": "HW Slowdown"}, FIRST_GPU_NODE,
              "-q Clocks Event Reasons: that reason Active"),
    # nvidia-persistenced not running: -q prints Disabled as tests/data/nvidia-smi-health/q-l40s-595-idle.txt does
    FaultKind("persistence-off", {"gpu_index": "0"}, FIRST_GPU_NODE,
              "persistence mode off on that GPU (nvidia-persistenced not running): -q Persistence Mode Disabled, the "
              "table Off, --query-gpu persistence_mode Disabled"),
    # `nvidia-smi -i N -pl W` run on the node
    FaultKind("power-limit-changed", {"gpu_index": "0", "watts": "500"}, FIRST_GPU_NODE,
              "that GPU's enforced power limit is W: -q Current Power Limit, the table's cap, --query-gpu power.limit; "
              "Default Power Limit stays the product's"),
)


XID_TEXT = {
    79: "pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
    48: "pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the "
        "framebuffer at partition 6, subpartition 0.",
    63: "pid='<unknown>', name=<unknown>, Row Remapper: New row (0x00000000000024c0) marked for remapping, reset gpu "
        "to activate.",
    13: "pid='<unknown>', name=<unknown>, Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction "
        "Parameter",
    # NVIDIA/NVSentinel health-monitors/syslog-health-monitor tests (an r570+ driver's line)
    154: "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)",
}


def _gpu_fault(ctx: dict[str, Any], kind: str, gpu: dict[str, Any]) -> dict[str, Any] | None:
    """The fault's params when it targets this GPU (host index; default GPU 0 of the node)."""
    f = simctx.fault(ctx, kind)
    if f is None:
        return None
    return f if int(f.get("gpu_index", 0)) == int(gpu.get("host_index", gpu["index"])) else None


def driver_version(ctx: dict[str, Any]) -> str:
    f = simctx.fault(ctx, "driver-mismatch")
    hw = ctx.get("node", {}).get("hardware", {})
    return str(f.get("version", "570.172.08")) if f is not None else str(hw.get("driver_version", ""))


VBIOS = "96.00.A5.00.03"


def _h(gpu: dict[str, Any], salt: str, mod: int) -> int:
    """Deterministic small number per GPU (temperatures, idle power)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(gpu["uuid"] + salt)) % mod


def facts(ctx: dict[str, Any], gpu: dict[str, Any]) -> dict[str, Any]:
    """Everything nvidia-smi prints about one GPU besides its identity (name, bus id, UUID, serial), faults applied:
    the one model its outputs render from (-q here and in nvidia_smi.py, the table, --query-gpu), so a fault changes
    a fact here and every output shows it where the real tool prints that fact."""
    hw = ctx.get("node", {}).get("hardware", {})
    gen = int(hw.get("pcie_gen") or 4)
    degraded = _gpu_fault(ctx, "pcie-link-degraded", gpu)
    throttled = _gpu_fault(ctx, "gpu-throttled", gpu)
    capped = _gpu_fault(ctx, "power-limit-changed", gpu)
    ecc = simctx.fault(ctx, "gpu-ecc-errors")
    uncorrectable = int(ecc.get("count", 1)) if ecc is not None else 0
    nvswitch = int(hw.get("nvlink_links") or 0) > 0 and bool(hw.get("fabric_info"))   # Hopper+: A100 prints N/A
    fm_down = simctx.fault(ctx, "nvlink-down") is not None
    busy = simctx.is_busy(gpu)
    idle_gen = hw.get("idle_pcie_gen")
    mig = str(hw.get("mig_mode", "Disabled"))
    reserved = min(gpu["memory_mib"] // 160, 527)
    return {
        "persistence": "Disabled" if _gpu_fault(ctx, "persistence-off", gpu) is not None else "Enabled",
        "mig_mode": mig, "mig_mode_pending": mig,
        "compute_mode": "Default",
        "ecc_mode": "Enabled",
        "ecc_volatile_corrected": 0, "ecc_volatile_uncorrected": uncorrectable,
        "ecc_aggregate_uncorrected": uncorrectable,     # lifetime is at least the volatile count
        "remap_pending": _gpu_fault(ctx, "ecc-row-remap-pending", gpu) is not None,
        "memory_total_mib": int(gpu["memory_mib"]), "memory_reserved_mib": reserved, "memory_used_mib": 0,
        "utilization_gpu": 0, "utilization_memory": 0,
        "temperature_c": 26 + _h(gpu, "t", 9),
        "power_draw_w": max(15, gpu["power_cap_w"] // 10) + _h(gpu, "p", 30),
        "power_limit_w": int(capped.get("watts", 500)) if capped else int(gpu["power_cap_w"]),
        "power_limit_default_w": int(gpu["power_cap_w"]),
        "vbios": VBIOS,
        "busy": busy,
        # An idle PCIe card drops to P8 and its idle link generation; an idle HGX GPU stays in P0 with the Idle clocks
        # event reason active (q-h200-590-idle.txt). A100/H100 tables of idle pods print P0 (h100-eks-p5-580-pod-idle).
        "pstate": "P0" if busy or not idle_gen else "P8",
        "pcie_gen": gen, "pcie_gen_current": gen if busy or not idle_gen else int(idle_gen),
        "pcie_width_max": 16, "pcie_width": int(degraded.get("width", 8)) if degraded else 16,
        "throttle": str(throttled.get("reason", "HW Slowdown")) if throttled else None,
        "fabric": ("Not Started" if fm_down else "Completed") if nvswitch else "N/A",
        "fabric_status": ("N/A" if fm_down else "Success") if nvswitch else "N/A",
    }


def driver_major(ctx: dict[str, Any]) -> int | None:
    """The node's driver branch (570 of 570.172.08), None where the node has no driver version."""
    major = driver_version(ctx).split(".", 1)[0]
    return int(major) if major.isdigit() else None


def recovery_lines(ctx: dict[str, Any], gpu: dict[str, Any], kv: Any) -> list[str]:
    """`GPU Recovery Action` as 590-series drivers print it (q-h100-80gb-hbm3-590-load.txt); not printed before (no
    older capture shows it). An Xid 154 asking for a reset leaves it at `Reset` until the GPU is reset
    (NVIDIA's Error Recovery and Response Flags page; `nvidia-smi -q` reports `GPU Recovery Action : Reset` after
    `Xid 154 ... to 0x1`, as quoted in public post-mortems)."""
    if (driver_major(ctx) or 0) < 590:
        return []
    asked = [f for f in ctx.get("faults", []) if f.get("kind") == "xid" and int((f.get("params") or {}).get("code", 0))
             == 154 and int((f.get("params") or {}).get("gpu_index", 0)) == int(gpu.get("host_index", gpu["index"]))]
    return [kv(1, "GPU Recovery Action", "Reset" if asked else "None")]


def ecc_flag_lines(ctx: dict[str, Any], kv: Any, f: dict[str, Any]) -> list[str]:
    """The lifetime counts and the replacement flags 590-series drivers print under ECC Errors
    (q-h100-80gb-hbm3-590-load.txt layout); `f`: the GPU's facts."""
    if (driver_major(ctx) or 0) < 590:
        return []
    return [kv(2, "Aggregate"), kv(3, "DRAM Correctable", "0"),
            kv(3, "DRAM Uncorrectable", str(f["ecc_aggregate_uncorrected"])),
            kv(3, "SRAM Threshold Exceeded", "No"), kv(2, "Channel Repair Pending", "No"),
            kv(2, "TPC Repair Pending", "No"), kv(2, "Unrepairable Memory", "No")]


def health_sections(f: dict[str, Any], kv: Any) -> list[str]:
    """The -q sections of one GPU (retired pages, remapped rows, clocks event reasons, fabric); `f`: its facts."""
    active = lambda name: "Active" if f["throttle"] == name else "Not Active"  # noqa: E731
    pend = f["remap_pending"]
    return [
        kv(1, "Retired Pages"), kv(2, "Single Bit ECC", "N/A"), kv(2, "Double Bit ECC", "N/A"),
        kv(2, "Pending Page Blacklist", "N/A"),
        kv(1, "Remapped Rows"), kv(2, "Correctable Error", "0"), kv(2, "Uncorrectable Error", "1" if pend else "0"),
        kv(2, "Pending", "Yes" if pend else "No"), kv(2, "Remapping Failure Occurred", "No"),
        kv(2, "Bank Remap Availability Histogram"), kv(3, "Max", "2559 bank(s)" if pend else "2560 bank(s)"),
        kv(3, "High", "1 bank(s)" if pend else "0 bank(s)"), kv(3, "Partial", "0 bank(s)"),
        kv(3, "Low", "0 bank(s)"), kv(3, "None", "0 bank(s)"),
        kv(1, "Performance State", f["pstate"]),
        kv(1, "Clocks Event Reasons"), kv(2, "Idle", "Not Active" if f["busy"] else "Active"), kv(2, "Applications Clocks Setting", "Not Active"),
        kv(2, "SW Power Cap", "Not Active"), kv(2, "HW Slowdown", active("HW Slowdown")),
        kv(3, "HW Thermal Slowdown", active("HW Thermal Slowdown")),
        kv(3, "HW Power Brake Slowdown", active("HW Power Brake Slowdown")),
        kv(2, "Sync Boost", "Not Active"), kv(2, "SW Thermal Slowdown", active("SW Thermal Slowdown")),
        kv(2, "Display Clock Setting", "Not Active"),
        kv(1, "Fabric"), kv(2, "State", f["fabric"]), kv(2, "Status", f["fabric_status"]),
    ]


def pcie_lines(f: dict[str, Any], kv: Any) -> list[str]:
    """The PCI section's GPU Link Info (printed under `PCI`, after `Bus Id`); `f`: the GPU's facts."""
    return [kv(2, "GPU Link Info"), kv(3, "PCIe Generation"), kv(4, "Max", str(f["pcie_gen"])),
            kv(4, "Current", str(f["pcie_gen_current"])), kv(3, "Link Width"), kv(4, "Max", f"{f['pcie_width_max']}x"),
            kv(4, "Current", f"{f['pcie_width']}x")]


def nvlink_status(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    hw = ctx.get("node", {}).get("hardware", {})
    links, speed = int(hw.get("nvlink_links") or 0), float(hw.get("nvlink_link_gbs") or 0)
    out = []
    for g in gpus:
        out.append(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})")
        if not links:
            out.append("Device does not have or support Nvlink")
        elif simctx.fault(ctx, "nvlink-down") is not None:
            out.append("NVML: Unable to retrieve NVLink information as all links are inactive")
        else:
            out += [f"\t Link {i}: {speed:g} GB/s" for i in range(links)]
    return "\n".join(out) + "\n"


LEGEND = """
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
"""


def topo_matrix(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    hw = ctx.get("node", {}).get("hardware", {})
    links = int(hw.get("nvlink_links") or 0)
    down = simctx.fault(ctx, "nvlink-down") is not None
    vcpu, n = int(hw.get("vcpu") or 8), len(gpus)
    half = max(1, n // 2)
    cpus = [f"0-{vcpu // 2 - 1}", f"{vcpu // 2}-{vcpu - 1}"] if n > 1 else [f"0-{vcpu - 1}"]
    head = "\t\x1b[4m" + "\t".join(f"GPU{i}" for i in range(n)) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m"
    rows = [head]
    for i in range(n):
        cells = []
        for j in range(n):
            if i == j:
                cells.append(" X ")
            elif links and not down:
                cells.append(f"NV{links}")
            else:
                cells.append("NODE" if (i < half) == (j < half) else "SYS")
        numa = 0 if i < half or n == 1 else 1
        rows.append(f"GPU{i}\t" + "\t".join(cells) + f"\t{cpus[min(numa, len(cpus) - 1)]}\t{numa}\t\tN/A")
    return "\n".join(rows) + "\n" + LEGEND


# -- dcgmi ---------------------------------------------------------------------------------------------
_TESTS = {1: [("Deployment", "software")], 2: [("Deployment", "software"), ("Hardware", "memory"),
                                               ("Integration", "pcie")]}
_TESTS[3] = _TESTS[2] + [("Hardware", "diagnostic"), ("Stress", "targeted_stress"), ("Stress", "targeted_power"),
                         ("Stress", "memory_bandwidth")]
_TESTS[4] = _TESTS[3] + [("Hardware", "memtest"), ("Hardware", "pulse_test")]


# NVML cannot start (driver unreachable): nv-hostengine prints this and exits 0 without serving (NVIDIA/dcgm-exporter
# issue #46, `nv-hostengine; echo $?`), so dcgmi cannot connect: dcgmi/Command.cpp prints these two lines and main
# returns DCGM_ST_CONNECTION_NOT_VALID (-21, dcgmlib/dcgm_structs.h), exit status 235 (NVIDIA/DCGM@6e947dc).
HOSTENGINE_NO_NVML = "Error: Failed to initialize NVML"
DCGMI_NO_HOSTENGINE = ("Error: unable to establish a connection to the specified host: localhost\n"
                       "Error: Unable to connect to host engine. Host engine connection invalid/disconnected.")
EXIT_CONNECTION_NOT_VALID = 256 - 21


def dcgmi(argv: list[str]) -> int:
    ctx = simctx.load()
    if argv[:1] != ["diag"]:
        print(f"dcgmi: the simulated dcgmi only runs `diag` (given {' '.join(argv)})", file=sys.stderr)
        return 2
    recorded = simctx.replay(ctx, "dcgmi diag")
    if recorded is not None:
        return recorded
    if simctx.fault(ctx, "driver-unreachable") is not None:
        print(DCGMI_NO_HOSTENGINE)
        return EXIT_CONNECTION_NOT_VALID
    level = int(argv[argv.index("-r") + 1]) if "-r" in argv else 1
    gpus = simctx.visible_gpus(ctx)
    if not gpus:
        print("Error: Unable to complete diagnostic for group 2147483647. Return: (-19) Insufficient size")
        return 236
    failing = simctx.fault(ctx, "dcgm-diag-fail")
    bad_gpu = int(failing.get("gpu_index", 0)) if failing else None
    bad_test = str(failing.get("test", "memory")) if failing else None
    categories: dict[str, list[dict[str, Any]]] = {}
    any_fail = False
    for category, test in _TESTS.get(level, _TESTS[2]):
        results, status = [], "Pass"
        for g in gpus:
            res: dict[str, Any] = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": g["index"],
                                   "status": "Pass"}
            if test == bad_test and g.get("host_index", g["index"]) == bad_gpu:
                res["status"] = status = "Fail"
                res["warnings"] = [{"error_category": 10, "error_id": 52, "error_severity": 2,
                                    "warning": f"Found 12 faulty memory elements on GPU {g['index']}"}]
                any_fail = True
            results.append(res)
        categories.setdefault(category, []).append({"name": test, "results": results,
                                                    "test_summary": {"status": status}})
    hw = ctx.get("node", {}).get("hardware", {})
    doc = {"DCGM Diagnostic": {"test_categories": [{"category": c, "tests": t} for c, t in categories.items()]},
           "entity_groups": [{"entities": [{"device_id": str(hw.get("device_id", "")), "entity_id": g["index"],
                                            "serial_num": g["serial"]} for g in gpus],
                              "entity_group": "GPU", "entity_group_id": 1}],
           "metadata": {"Driver Version Detected": driver_version(ctx), "version": "4.2.3"}}
    sys.stdout.write(json.dumps(doc, indent="\t", separators=(",", " : ")) + "\n")
    return 226 if any_fail else 0      # DCGM_ST_NVVS_ERROR as dcgmi's unsigned exit status (DCGM issue #158)


def nv_hostengine(argv: list[str]) -> int:
    if simctx.fault(simctx.load(), "driver-unreachable") is not None:
        print(HOSTENGINE_NO_NVML)
        return 0
    print("Started host engine version 4.2.3 using port number: 5555")
    return 0


# -- dmesg ---------------------------------------------------------------------------------------------
def dmesg(argv: list[str]) -> int:
    ctx = simctx.load()
    recorded = simctx.replay(ctx, "dmesg")
    if recorded is not None:
        return recorded
    hw = ctx.get("node", {}).get("hardware", {})
    try:
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except OSError:
        uptime = 3600.0
    lines = [(4.12, f"NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  {driver_version(ctx)}  Release Build  "
                    "(dvs-builder@U22-I3-B10-02-5)  Mon Jun  2 13:13:04 UTC 2025")]
    for f in ctx.get("faults", []):
        if f.get("kind") != "xid":
            continue
        p = dict(f.get("params") or {})
        code, idx = int(p.get("code", 79)), int(p.get("gpu_index", 0))
        gpus = {g["index"]: g for g in hw.get("gpus", [])}
        bus = gpus.get(idx, {}).get("bus_id", "00000000:00:00.0")
        pci = f"{bus[-12:-8]}:{bus[-7:-5]}:{bus[-4:-2]}".lower()
        at = max(5.0, uptime - float(p.get("hours_ago", 0.5)) * 3600)
        lines.append((at - 0.001, f"NVRM: GPU at PCI:{pci}: {gpus.get(idx, {}).get('uuid', '')}"))
        lines.append((at, f"NVRM: Xid (PCI:{pci}): {code}, {XID_TEXT.get(code, 'pid=1, name=python3, Ch 00000008')}"))
    for at, text in sorted(lines):
        print(f"[{at:12.6f}] {text}")
    return 0
