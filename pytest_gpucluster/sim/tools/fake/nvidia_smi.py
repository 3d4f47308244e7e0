"""Fake `nvidia-smi`: default table (580 layout), -L, --query-gpu CSV and -q, from the pod's sim context."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from . import ctx as simctx
from . import health

INVALID_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
DRIVER_ERROR = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                "Make sure that the latest NVIDIA driver is installed and running.")
EXIT_INVALID, EXIT_NOT_FOUND, EXIT_DRIVER = 2, 6, 9


def _h(gpu: dict[str, Any], salt: str, mod: int) -> int:
    """Deterministic small number per GPU (temperatures, idle power)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(gpu["uuid"] + salt)) % mod


def _temp(gpu: dict[str, Any]) -> int:
    return 26 + _h(gpu, "t", 9)


def _power(gpu: dict[str, Any]) -> int:
    return max(15, gpu["power_cap_w"] // 10) + _h(gpu, "p", 30)


def _ecc(ctx: dict[str, Any]) -> int:
    f = simctx.fault(ctx, "gpu-ecc-errors")
    return int(f.get("count", 1)) if f is not None else 0


def _mig(ctx: dict[str, Any]) -> str:
    return str(ctx.get("node", {}).get("hardware", {}).get("mig_mode", "Disabled"))


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
        name = g["name"] if len(g["name"]) <= 29 else g["name"][:26] + "..."
        facts = health.facts(ctx, g)
        pm = "On" if facts["persistence"] == "Enabled" else "Off"
        lines.append(f"| {g['index']:>3}  {name:<29}{pm:>4}  |{g['bus_id']:>19} {'Off':<3} |{_ecc(ctx):>21} |")
        power = f"{_power(g)}W / {facts['power_limit_w']:>4}W"
        memory = f"{'0MiB':>11} / {str(g['memory_mib']) + 'MiB':>9}"
        lines.append(f"| N/A   {_temp(g):>2}C    {facts['pstate']}{power:>24} |{memory} |{'0%':>8}{'Default':>13} |")
        lines.append(f"|                                         |                        |{_mig(ctx):>21} |")
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


# Query fields: name -> (header unit, value function)
def _fields(ctx: dict[str, Any], count: int) -> dict[str, tuple[str, Callable[[dict[str, Any]], str]]]:
    hw = ctx["node"]["hardware"]
    mig = _mig(ctx)
    return {
        "index": ("", lambda g: str(g["index"])),
        "name": ("", lambda g: g["name"]), "gpu_name": ("", lambda g: g["name"]),
        "uuid": ("", lambda g: g["uuid"]), "gpu_uuid": ("", lambda g: g["uuid"]),
        "serial": ("", lambda g: g["serial"]), "gpu_serial": ("", lambda g: g["serial"]),
        "pci.bus_id": ("", lambda g: g["bus_id"]), "gpu_bus_id": ("", lambda g: g["bus_id"]),
        "driver_version": ("", lambda g: health.driver_version(ctx)),
        "count": ("", lambda g: str(count)),
        "memory.total": ("MiB", lambda g: f"{g['memory_mib']} MiB"),
        "memory.used": ("MiB", lambda g: "0 MiB"),
        "memory.reserved": ("MiB", lambda g: f"{min(g['memory_mib'] // 160, 527)} MiB"),
        "memory.free": ("MiB", lambda g: f"{g['memory_mib'] - min(g['memory_mib'] // 160, 527)} MiB"),
        "mig.mode.current": ("", lambda g: mig), "mig.mode.pending": ("", lambda g: mig),
        "ecc.mode.current": ("", lambda g: "Enabled"),
        "ecc.errors.uncorrected.volatile.total": ("", lambda g: str(_ecc(ctx))),
        "ecc.errors.corrected.volatile.total": ("", lambda g: "0"),
        "ecc.errors.uncorrected.aggregate.total": ("", lambda g: str(_ecc(ctx))),
        "compute_cap": ("", lambda g: g["compute_cap"]),
        "persistence_mode": ("", lambda g: str(health.facts(ctx, g)["persistence"])),
        "pstate": ("", lambda g: str(health.facts(ctx, g)["pstate"])),
        "compute_mode": ("", lambda g: "Default"),
        "temperature.gpu": ("", lambda g: str(_temp(g))),
        "power.draw": ("W", lambda g: f"{_power(g):.2f} W"),
        "power.limit": ("W", lambda g: f"{health.facts(ctx, g)['power_limit_w']:.2f} W"),
        "utilization.gpu": ("%", lambda g: "0 %"),
        "utilization.memory": ("%", lambda g: "0 %"),
        "pcie.link.gen.current": ("", lambda g: str(health.facts(ctx, g)["pcie_gen_current"])),
        "pcie.link.width.current": ("", lambda g: "16"),
        "vbios_version": ("", lambda g: "96.00.A5.00.03"),
        "timestamp": ("", lambda g: time.strftime("%Y/%m/%d %H:%M:%S.000")),
    }


def query(ctx: dict[str, Any], gpus: list[dict[str, Any]], fields: list[str], fmt: set[str]) -> tuple[str, int]:
    known = _fields(ctx, len(gpus))
    for f in fields:
        if f not in known:
            return f'Field "{f}" is not a valid field to query.\n\n', EXIT_INVALID
    nounits = "nounits" in fmt
    rows = []
    if "noheader" not in fmt:
        rows.append(", ".join(f"{f} [{known[f][0]}]" if known[f][0] else f for f in fields))
    for g in gpus:
        values = [known[f][1](g) for f in fields]
        if nounits:
            values = [v.rsplit(" ", 1)[0] if known[f][0] and " " in v else v for f, v in zip(fields, values)]
        rows.append(", ".join(values))
    return "\n".join(rows) + "\n", 0


def _kv(level: int, key: str, value: str | None = None) -> str:
    pad = "    " * level
    if value is None:
        return f"{pad}{key}"
    return f"{pad}{key:<{55 - 4 * level}}: {value}"


def full_query(ctx: dict[str, Any], gpus: list[dict[str, Any]]) -> str:
    hw = ctx["node"]["hardware"]
    mig = _mig(ctx)
    out = ["", "==============NVSMI LOG==============", "",
           _kv(0, "Timestamp", time.asctime()), _kv(0, "Driver Version", health.driver_version(ctx)),
           _kv(0, "CUDA Version", hw["cuda_version"]), "", _kv(0, "Attached GPUs", str(len(gpus)))]
    for g in gpus:
        used_reserved = min(g["memory_mib"] // 160, 527)
        out += [f"GPU {g['bus_id']}",
                _kv(1, "Product Name", g["name"]), _kv(1, "Product Brand", "NVIDIA"),
                _kv(1, "Persistence Mode", str(health.facts(ctx, g)["persistence"])),
                _kv(1, "MIG Mode"), _kv(2, "Current", mig), _kv(2, "Pending", mig),
                _kv(1, "Serial Number", g["serial"]), _kv(1, "GPU UUID", g["uuid"]),
                _kv(1, "Minor Number", str(g["index"])),
                _kv(1, "PCI"), _kv(2, "Bus Id", g["bus_id"]), *health.pcie_lines(ctx, g, _kv),
                _kv(1, "FB Memory Usage"), _kv(2, "Total", f"{g['memory_mib']} MiB"),
                _kv(2, "Reserved", f"{used_reserved} MiB"), _kv(2, "Used", "0 MiB"),
                _kv(2, "Free", f"{g['memory_mib'] - used_reserved} MiB"),
                _kv(1, "Compute Mode", "Default"),
                _kv(1, "ECC Mode"), _kv(2, "Current", "Enabled"), _kv(2, "Pending", "Enabled"),
                _kv(1, "ECC Errors"), _kv(2, "Volatile"),
                _kv(3, "DRAM Correctable", "0"), _kv(3, "DRAM Uncorrectable", str(_ecc(ctx))),
                *health.ecc_flag_lines(ctx, _kv, _ecc(ctx)),
                _kv(1, "VBIOS Version", "96.00.A5.00.03"), *health.recovery_lines(ctx, g, _kv),
                *health.health_sections(ctx, g, _kv),
                _kv(1, "Temperature"), _kv(2, "GPU Current Temp", f"{_temp(g)} C"),
                _kv(1, "GPU Power Readings"), _kv(2, "Average Power Draw", f"{_power(g):.2f} W"),
                _kv(2, "Current Power Limit", f"{health.facts(ctx, g)['power_limit_w']:.2f} W"),
                _kv(2, "Default Power Limit", f"{g['power_cap_w']:.2f} W"),
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
