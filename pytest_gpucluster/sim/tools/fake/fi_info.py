"""Fake libfabric `fi_info`: efa-direct/efa rdm + efa dgrm per allocated EFA device, -61 without EFA."""
from __future__ import annotations

import sys
from typing import Any

from . import ctx as simctx

NO_DATA = "fi_getinfo: -61 (No data available)"
USAGE = """Usage: fi_info [OPTIONS]
  -p, --provider=<name>     display information for the given provider
  -t, --ep_type=<type>      display information for the given endpoint type
  -f, --fabric=<name>       display information for the given fabric
  -d, --domain=<name>       display information for the given domain
  -v, --verbose             verbose output
  -l, --list                list available libfabric providers
      --version             print version info and exit
  -h, --help                display this help and exit"""
EP_TYPES = ("FI_EP_RDM", "FI_EP_DGRAM", "FI_EP_MSG")


def _api(ctx: dict[str, Any]) -> str:
    major, _, minor = str(ctx.get("nccl", {}).get("libfabric_version", "2.1")).partition(".")
    return f"{int(major) * 100 + int(minor or 0)}.0"


def entries(ctx: dict[str, Any]) -> list[dict[str, str]]:
    """One entry per (fabric, endpoint type) for each EFA device allocated to the pod."""
    if simctx.fault(ctx, "efa-absent") is not None:
        return []
    out = []
    for dev in ctx.get("allocated", {}).get("efa", []):
        out.append({"provider": "efa", "fabric": "efa-direct", "domain": f"{dev}-rdm", "type": "FI_EP_RDM"})
        out.append({"provider": "efa", "fabric": "efa", "domain": f"{dev}-rdm", "type": "FI_EP_RDM"})
        out.append({"provider": "efa", "fabric": "efa", "domain": f"{dev}-dgrm", "type": "FI_EP_DGRAM"})
    return out


def _render(entry: dict[str, str], version: str, verbose: bool) -> str:
    if not verbose:
        return (f"provider: {entry['provider']}\n    fabric: {entry['fabric']}\n    domain: {entry['domain']}\n"
                f"    version: {version}\n    type: {entry['type']}\n    protocol: FI_PROTO_EFA\n")
    return ("---\nfi_info:\n    caps: [ FI_MSG, FI_RMA, FI_HMEM, FI_READ, FI_RECV, FI_SEND, FI_REMOTE_READ ]\n"
            f"    ep_attr:\n        type: {entry['type']}\n        protocol: FI_PROTO_EFA\n"
            f"    domain_attr:\n        name: {entry['domain']}\n        threading: FI_THREAD_SAFE\n"
            f"    fabric_attr:\n        name: {entry['fabric']}\n        prov_name: {entry['provider']}\n"
            f"        prov_version: {version}\n        api_version: {version}\n"
            "    nic:\n        device_attr:\n            driver: efa\n")


def main(argv: list[str]) -> int:
    ctx = simctx.load()
    provider = ep_type = fabric = domain = None
    verbose = False
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        if arg.startswith("--") and "=" in arg:
            arg, value = arg.split("=", 1)
        if arg in ("-p", "--provider", "-t", "--ep_type", "-f", "--fabric", "-d", "--domain"):
            if value is None:
                i += 1
                if i >= len(argv):
                    print(f"fi_info: option requires an argument -- '{arg.lstrip('-')[:1]}'", file=sys.stderr)
                    print(USAGE, file=sys.stderr)
                    return 1
                value = argv[i]
            if arg in ("-p", "--provider"):
                provider = value
            elif arg in ("-t", "--ep_type"):
                if value not in EP_TYPES:
                    print(f"Unknown endpoint : {value}", file=sys.stderr)
                    return 1
                ep_type = value
            elif arg in ("-f", "--fabric"):
                fabric = value
            else:
                domain = value
        elif arg in ("-v", "--verbose"):
            verbose = True
        elif arg == "--version":
            lib = str(ctx.get("nccl", {}).get("libfabric_version", "2.1"))
            print(f"fi_info: {lib}.0amzn3.0\nlibfabric: {lib}.0amzn3.0\nlibfabric api: {lib}")
            return 0
        elif arg in ("-l", "--list"):
            names = (["efa:"] if entries(ctx) else []) + ["tcp:", "shm:", "ofi_rxm:"]
            print("\n".join(f"{n}\n    version: {_api(ctx)}" for n in names))
            return 0
        elif arg in ("-h", "--help"):
            print(USAGE)
            return 0
        else:
            print(f"fi_info: invalid option -- '{arg.lstrip('-')}'", file=sys.stderr)
            print(USAGE, file=sys.stderr)
            return 1
        i += 1
    recorded = simctx.replay(ctx, "fi_info")
    if recorded is not None:
        return recorded
    found = [e for e in entries(ctx)
             if (provider in (None, "efa")) and (ep_type is None or e["type"] == ep_type)
             and (fabric is None or e["fabric"] == fabric) and (domain is None or e["domain"] == domain)]
    if provider not in (None, "efa"):
        found = []
    if not found:
        print(NO_DATA, file=sys.stderr)
        return 1
    sys.stdout.write("".join(_render(e, _api(ctx), verbose) for e in found))
    return 0
