"""Fake `nvidia-smi`: default table (580 layout), -L, --query-gpu CSV and -q, from the pod's sim context."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from . import ctx as simctx
from . import health
from .fault import FIRST_GPU_NODE, FaultKind

INVALID_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
DRIVER_ERROR = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                "Make sure that the latest NVIDIA driver is installed and running.")
EXIT_INVALID, EXIT_NOT_FOUND, EXIT_DRIVER = 2, 6, 9


FAULTS = (
    FaultKind("driver-unreachable", {}, FIRST_GPU_NODE,
              "nvidia-smi prints NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver and exits "
              "9; torch sees 0 GPUs; CUDA samples, dcgmproftester and nccl-tests fail; nv-hostengine cannot initialise "
              "NVML, so dcgmi cannot connect (exit 235)"),
)


def table(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    hw = ctx["node"]["hardware"]
    lines = [time.asctime() + "       ",
             "+" + "-" * 89 + "+",
             f"| NVIDIA-SMI {health.driver_version(ctx):<22} Driver Version: {health.driver_version(ctx):<14} "
             f"CUDA Version: {hw['cuda_version']:<9}|",
             "+-----------------------------------------+------------------------+----------------------+",
             "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
             "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
             "|                                         |                        |               MIG M. |",
             "|=========================================+========================+======================|"]
    for g in gpus:
        f = health.facts(ctx, g)
        name = g["name"] if len(g["name"]) <= 29 else g["name"][:26] + "..."
        pm = "On" if f["persistence"] == "Enabled" else "Off"
        lines.append(f"| {g['index']:>3}  {name:<29}{pm:>4}  |{g['bus_id']:>19} {'Off':<3} |"
                     f"{f['ecc_volatile_uncorrected']:>21} |")
        power = f"{f['power_draw_w']}W / {f['power_limit_w']:>4}W"
        memory = f"{str(f['memory_used_mib']) + 'MiB':>11} / {str(f['memory_total_mib']) + 'MiB':>9}"
        lines.append(f"| N/A   {f['temperature_c']:>2}C    {f['pstate']}{power:>24} |{memory} |"
                     f"{str(f['utilization_gpu']) + '%':>8}{f['compute_mode']:>13} |")
        lines.append(f"|                                         |                        |{f['mig_mode']:>21} |")
        lines.append("+-----------------------------------------+------------------------+----------------------+")
    lines += ["",
              "+" + "-" * 89 + "+",
              "| Processes:" + " " * 78 + "|",
              "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
              "|        ID   ID                                                               Usage      |",
              "|" + "=" * 89 + "|",
              "|  No running processes found" + " " * 61 + "|",
              "+" + "-" * 89 + "+"]
    return "\n".join(lines) + "\n"


def listing(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    out = []
    profile = ctx.get("node", {}).get("hardware", {}).get("mig_profile")
    for g in gpus:
        out.append(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})")
        if profile:
            count = _mig_count(profile)
            for d in range(count):
                uid = "MIG-" + g["uuid"][4:-4] + f"{d:04x}"
                out.append(f"  MIG {profile:<12}Device {d:>2}: (UUID: {uid})")
    return "\n".join(out) + "\n"


def _mig_count(profile: str) -> int:
    slices = int(profile.split("g", 1)[0]) if profile[:1].isdigit() else 1
    return max(1, 7 // slices)


# Query fields: name -> (header unit, value from the GPU and its facts)
Field = Callable[[dict[str, Any], dict[str, Any]], str]


def _fields(ctx: dict[str, Any], count: int) -> dict[str, tuple[str, Field]]:
    driver = health.driver_version(ctx)
    return {
        "index": ("", lambda g, f: str(g["index"])),
        "name": ("", lambda g, f: g["name"]), "gpu_name": ("", lambda g, f: g["name"]),
        "uuid": ("", lambda g, f: g["uuid"]), "gpu_uuid": ("", lambda g, f: g["uuid"]),
        "serial": ("", lambda g, f: g["serial"]), "gpu_serial": ("", lambda g, f: g["serial"]),
        "pci.bus_id": ("", lambda g, f: g["bus_id"]), "gpu_bus_id": ("", lambda g, f: g["bus_id"]),
        "driver_version": ("", lambda g, f: driver),
        "count": ("", lambda g, f: str(count)),
        "memory.total": ("MiB", lambda g, f: f"{f['memory_total_mib']} MiB"),
        "memory.used": ("MiB", lambda g, f: f"{f['memory_used_mib']} MiB"),
        "memory.reserved": ("MiB", lambda g, f: f"{f['memory_reserved_mib']} MiB"),
        "memory.free": ("MiB", lambda g, f: f"{_free_mib(f)} MiB"),
        "mig.mode.current": ("", lambda g, f: f["mig_mode"]), "mig.mode.pending": ("", lambda g, f: f["mig_mode_pending"]),
        "ecc.mode.current": ("", lambda g, f: f["ecc_mode"]),
        "ecc.errors.uncorrected.volatile.total": ("", lambda g, f: str(f["ecc_volatile_uncorrected"])),
        "ecc.errors.corrected.volatile.total": ("", lambda g, f: str(f["ecc_volatile_corrected"])),
        "ecc.errors.uncorrected.aggregate.total": ("", lambda g, f: str(f["ecc_aggregate_uncorrected"])),
        "compute_cap": ("", lambda g, f: g["compute_cap"]),
        "persistence_mode": ("", lambda g, f: f["persistence"]),
        "pstate": ("", lambda g, f: f["pstate"]),
        "compute_mode": ("", lambda g, f: f["compute_mode"]),
        "temperature.gpu": ("", lambda g, f: str(f["temperature_c"])),
        "power.draw": ("W", lambda g, f: f"{f['power_draw_w']:.2f} W"),
        "power.limit": ("W", lambda g, f: f"{f['power_limit_w']:.2f} W"),
        "utilization.gpu": ("%", lambda g, f: f"{f['utilization_gpu']} %"),
        "utilization.memory": ("%", lambda g, f: f"{f['utilization_memory']} %"),
        "pcie.link.gen.current": ("", lambda g, f: str(f["pcie_gen_current"])),
        "pcie.link.width.current": ("", lambda g, f: str(f["pcie_width"])),
        "vbios_version": ("", lambda g, f: f["vbios"]),
        "timestamp": ("", lambda g, f: time.strftime("%Y/%m/%d %H:%M:%S.000")),
    }


def _free_mib(f: dict[str, Any]) -> int:
    return int(f["memory_total_mib"]) - int(f["memory_reserved_mib"]) - int(f["memory_used_mib"])


def query(ctx: dict[str, Any], gpus: list[dict[str, Any]], fields: list[str], fmt: set[str]) -> tuple[str, int]:
    known = _fields(ctx, len(gpus))
    for name in fields:
        if name not in known:
            return f'Field "{name}" is not a valid field to query.\n\n', EXIT_INVALID
    nounits = "nounits" in fmt
    rows = []
    if "noheader" not in fmt:
        rows.append(", ".join(f"{name} [{known[name][0]}]" if known[name][0] else name for name in fields))
    for g in gpus:
        f = health.facts(ctx, g)
        values = [known[name][1](g, f) for name in fields]
        if nounits:
            values = [v.rsplit(" ", 1)[0] if known[name][0] and " " in v else v for name, v in zip(fields, values)]
        rows.append(", ".join(values))
    return "\n".join(rows) + "\n", 0


def _kv(level: int, key: str, value: str | None = None) -> str:
    pad = "    " * level
    if value is None:
        return f"{pad}{key}"
    return f"{pad}{key:<{55 - 4 * level}}: {value}"


def full_query(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    hw = ctx["node"]["hardware"]
    out = ["", "==============NVSMI LOG==============", "",
           _kv(0, "Timestamp", time.asctime()), _kv(0, "Driver Version", health.driver_version(ctx)),
           _kv(0, "CUDA Version", hw["cuda_version"]), "", _kv(0, "Attached GPUs", str(len(gpus)))]
    for g in gpus:
        f = health.facts(ctx, g)
        out += [f"GPU {g['bus_id']}",
                _kv(1, "Product Name", g["name"]), _kv(1, "Product Brand", "NVIDIA"),
                _kv(1, "Persistence Mode", f["persistence"]),
                _kv(1, "MIG Mode"), _kv(2, "Current", f["mig_mode"]), _kv(2, "Pending", f["mig_mode_pending"]),
                _kv(1, "Serial Number", g["serial"]), _kv(1, "GPU UUID", g["uuid"]),
                _kv(1, "Minor Number", str(g["index"])),
                _kv(1, "PCI"), _kv(2, "Bus Id", g["bus_id"]), *health.pcie_lines(f, _kv),
                _kv(1, "FB Memory Usage"), _kv(2, "Total", f"{f['memory_total_mib']} MiB"),
                _kv(2, "Reserved", f"{f['memory_reserved_mib']} MiB"), _kv(2, "Used", f"{f['memory_used_mib']} MiB"),
                _kv(2, "Free", f"{_free_mib(f)} MiB"),
                _kv(1, "Compute Mode", f["compute_mode"]),
                _kv(1, "ECC Mode"), _kv(2, "Current", f["ecc_mode"]), _kv(2, "Pending", f["ecc_mode"]),
                _kv(1, "ECC Errors"), _kv(2, "Volatile"),
                _kv(3, "DRAM Correctable", str(f["ecc_volatile_corrected"])),
                _kv(3, "DRAM Uncorrectable", str(f["ecc_volatile_uncorrected"])),
                *health.ecc_flag_lines(ctx, _kv, f),
                _kv(1, "VBIOS Version", f["vbios"]), *health.recovery_lines(ctx, g, _kv),
                *health.health_sections(f, _kv),
                _kv(1, "Temperature"), _kv(2, "GPU Current Temp", f"{f['temperature_c']} C"),
                _kv(1, "GPU Power Readings"), _kv(2, "Average Power Draw", f"{f['power_draw_w']:.2f} W"),
                _kv(2, "Current Power Limit", f"{f['power_limit_w']:.2f} W"),
                _kv(2, "Default Power Limit", f"{f['power_limit_default_w']:.2f} W"),
                _kv(1, "Processes", "None")]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ctx = simctx.load()
    if argv[:1] in (["nvlink"], ["topo"]):      # subcommands: `nvlink -s`, `topo -m` (node health)
        recorded = simctx.replay(ctx, f"nvidia-smi {argv[0]}")
        if recorded is not None:
            return recorded
        gpus = simctx.visible_gpus(ctx)
        if simctx.fault(ctx, "driver-unreachable") is not None:
            print(DRIVER_ERROR)
            return EXIT_DRIVER
        sys.stdout.write(health.nvlink_status(ctx, gpus) if argv[0] == "nvlink" else health.topo_matrix(ctx, gpus))
        return 0
    mode, fields, fmt, ids, display = "table", [], set(), None, None
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if "=" in arg and arg.startswith("--"):
            arg, value = arg.split("=", 1)
        if arg in ("-L", "--list-gpus"):
            mode = "list"
        elif arg in ("-q", "--query"):
            mode = "q"
        elif arg in ("-h", "--help"):
            print("NVIDIA System Management Interface -- v" + ctx.get("node", {}).get("hardware", {}).get("driver_version", ""))
            return 0
        elif arg in ("--query-gpu", "--format", "-i", "--id", "-d", "--display", "--query-compute-apps"):
            if value is None:
                i += 1
                if i >= len(argv):
                    print(INVALID_ARGS)
                    return EXIT_INVALID
                value = argv[i]
            if arg == "--query-gpu":
                mode, fields = "query", [f.strip() for f in value.split(",") if f.strip()]
            elif arg == "--query-compute-apps":
                mode, fields = "apps", [f.strip() for f in value.split(",") if f.strip()]
            elif arg in ("-d", "--display"):
                display = value         # -q section filter: the fake -q prints its few sections anyway
            elif arg == "--format":
                fmt = {f.strip() for f in value.split(",")}
                if "csv" not in fmt or fmt - {"csv", "noheader", "nounits"}:
                    print(INVALID_ARGS)
                    return EXIT_INVALID
            else:
                ids = value.split(",")
        else:
            print(INVALID_ARGS)
            return EXIT_INVALID
        i += 1
    if mode in ("query", "apps") and not fmt:
        print(INVALID_ARGS)
        return EXIT_INVALID
    key = "nvidia-smi" if mode == "table" else f"nvidia-smi {mode}"
    recorded = simctx.replay(ctx, f"{key} -d {display}" if mode == "q" and display else key)
    if recorded is not None:
        return recorded
    if simctx.fault(ctx, "driver-unreachable") is not None:
        print(DRIVER_ERROR)
        return EXIT_DRIVER
    gpus = simctx.visible_gpus(ctx)
    if ids is not None:
        gpus = [g for g in gpus if str(g["index"]) in ids or g["uuid"] in ids or g["bus_id"] in ids]
    if not gpus:
        print("No devices were found")
        return EXIT_NOT_FOUND
    if mode == "apps":          # no processes run on the simulated GPUs: header only
        if "noheader" not in fmt:
            print(", ".join(fields))
        return 0
    if mode == "list":
        sys.stdout.write(listing(ctx, gpus))
    elif mode == "q":
        sys.stdout.write(full_query(ctx, gpus))
    elif mode == "query":
        text, code = query(ctx, gpus, fields, fmt)
        sys.stdout.write(text)
        return code
    else:
        sys.stdout.write(table(ctx, gpus))
    return 0
