"""NCCL debug lines (NCCL_DEBUG=INFO/WARN) and launcher noise: network, GPUDirect RDMA, versions, errors."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["TEST_FAILURE", "NcclLogFacts", "scan_log_line", "transport_of", "gdrdma_of"]

_NCCL_VERSION = re.compile(r"\bNCCL version (\d+\.\d+\.\d+\S*)")
_TESTS_VERSION = re.compile(r"#\s*nccl-tests version (\S+)")
_OFI_PLUGIN = re.compile(r"NET/OFI (?:Initializing|Using) aws-ofi-nccl (\S+)", re.I)
_NET_PLUGIN = re.compile(r"NET/Plugin: Loaded net plugin (.+?) \((v\d+)\)")
_LIBFABRIC = re.compile(r"NET/OFI Using Libfabric version (\S+)", re.I)
_PROVIDER = re.compile(r"NET/OFI Selected provider is ([\w;-]+)(?:, fabric is ([\w:.-]+))?(?:.*?found (\d+) nics?)?", re.I)
_NETWORK = re.compile(r"NCCL INFO Using network (.+?)\s*$")
_CHANNEL_NET = re.compile(r"\bvia NET/([^/]+)/(\d+)(?:\(\d+\))?(/GDRDMA)?")
_RING_GDR = re.compile(r"Connected all rings.*\bGDR ([01])\b")
_NRANKS = re.compile(r"\bn[Rr]anks (\d+)")
# The process that printed an NCCL line: NCCL's debug prefix "<host>:<pid>:<tid> [<cuda dev>] NCCL INFO|WARN"
# (src/debug.cc), after an optional "[<timestamp>] " (WARN lines of NCCL >= 2.2x). One process can drive several
# GPUs (-g 8), so a process, not a rank, is what prints each "Selected provider" and "Using network" line once.
_PROCESS = re.compile(r"(?:^|\s)([\w.{}-]+):(\d+):\d+ \[\d+\] NCCL (?:INFO|WARN)")
_WARN = re.compile(r"\bNCCL WARN\b")
TEST_FAILURE = re.compile(r"\bTest (?:NCCL |CUDA )?(?:failure|FAILED)\b")   # nccl-tests' own verdict on a rank
_ERRORS = [
    TEST_FAILURE,
    _WARN,
    re.compile(r"^#\s*error:\s*\S"),
    re.compile(r"^srun: error:"),
    re.compile(r"\bmpirun (?:noticed|was unable|has exited|detected)\b", re.I),
    re.compile(r"\b(?:ORTE|PRTE) (?:was unable|has lost)\b"),
    re.compile(r"Primary job\s+terminated normally, but \d+ process"),
    re.compile(r"_perf: (?:error while loading shared libraries|not found|No such file)"),
    re.compile(r"\bcommand terminated with exit code \d+"),
]


@dataclass
class NcclLogFacts:
    nccl_version: str | None = None
    nccl_tests_version: str | None = None
    ofi_plugin_version: str | None = None   # aws-ofi-nccl version ("1.16.2", "1.7.3-aws", "git-6e504db")
    net_plugin: str | None = None           # "Libfabric (v10)" from NET/Plugin: Loaded net plugin
    libfabric_version: str | None = None
    ofi_provider: str | None = None          # "efa", "tcp", "cxi" from NET/OFI Selected provider
    ofi_fabric: str | None = None
    ofi_nics: int | None = None
    networks: list[str] = field(default_factory=list)        # "Using network X" values, first-seen order
    channel_nets: list[str] = field(default_factory=list)    # NET/<name> in channel lines
    gdrdma_channels: int = 0
    net_channels: int = 0
    # per printing process ("host:pid"): the networks it used, the OFI provider it selected, and per host the
    # network channels it opened: [all, with /GDRDMA]. The judges read the weakest process, not the first.
    process_networks: dict[str, list[str]] = field(default_factory=dict)
    process_providers: dict[str, str] = field(default_factory=dict)
    process_channel_nets: dict[str, list[str]] = field(default_factory=dict)
    host_channels: dict[str, list[int]] = field(default_factory=dict)
    ring_gdr: bool | None = None
    nranks: int | None = None
    errors: list[str] = field(default_factory=list)      # error-looking lines, NCCL WARN lines included
    warnings: list[str] = field(default_factory=list)    # the `NCCL WARN` lines alone: evidence, not a verdict


def process_of(text: str) -> tuple[str, str]:
    """(host, "host:pid") of the NCCL line, ("", "") when it carries no NCCL prefix."""
    m = _PROCESS.search(text)
    return (m.group(1), f"{m.group(1)}:{m.group(2)}") if m else ("", "")


def scan_log_line(facts: NcclLogFacts, text: str) -> None:
    """Update `facts` from one (prefix-stripped) line of output."""
    host, proc = process_of(text) if "NCCL" in text else ("", "")
    if (m := _NCCL_VERSION.search(text)) and facts.nccl_version is None:
        facts.nccl_version = m.group(1)
    if (m := _TESTS_VERSION.search(text)) and facts.nccl_tests_version is None:
        facts.nccl_tests_version = m.group(1)
    if "NET/" in text:
        if (m := _OFI_PLUGIN.search(text)) and facts.ofi_plugin_version is None:
            facts.ofi_plugin_version = m.group(1)
        if (m := _NET_PLUGIN.search(text)) and facts.net_plugin is None:
            facts.net_plugin = f"{m.group(1)} ({m.group(2)})"
        if (m := _LIBFABRIC.search(text)) and facts.libfabric_version is None:
            facts.libfabric_version = m.group(1)
        if m := _PROVIDER.search(text):
            facts.ofi_provider = facts.ofi_provider or m.group(1).lower()
            facts.process_providers.setdefault(proc, m.group(1).lower())
            facts.ofi_fabric = facts.ofi_fabric or m.group(2)
            if m.group(3):
                facts.ofi_nics = int(m.group(3))
        if m := _CHANNEL_NET.search(text):
            facts.net_channels += 1
            counts = facts.host_channels.setdefault(host, [0, 0])
            counts[0] += 1
            if m.group(3):
                facts.gdrdma_channels += 1
                counts[1] += 1
            if m.group(1) not in facts.channel_nets:
                facts.channel_nets.append(m.group(1))
            if m.group(1) not in (nets := facts.process_channel_nets.setdefault(proc, [])):
                nets.append(m.group(1))
    if m := _NETWORK.search(text):
        if m.group(1) not in facts.networks:
            facts.networks.append(m.group(1))
        nets = facts.process_networks.setdefault(proc, [])
        if m.group(1) not in nets:
            nets.append(m.group(1))
    if m := _RING_GDR.search(text):
        facts.ring_gdr = bool(int(m.group(1))) or bool(facts.ring_gdr)
    if "NCCL INFO" in text and (m := _NRANKS.search(text)):
        facts.nranks = max(facts.nranks or 0, int(m.group(1)))
    stripped = text.strip()
    # one space between words: an error cut into a table row (nccl-tests issue 79) keeps the row's padding otherwise
    error = " ".join(stripped.split())
    if any(p.search(stripped) for p in _ERRORS) and error not in facts.errors:
        facts.errors.append(error)
    if _WARN.search(stripped) and stripped not in facts.warnings:
        facts.warnings.append(stripped)


def _classify(network: str, provider: str | None) -> str | None:
    n = network.lower()
    if n.startswith("socket"):
        return "socket"
    if n.startswith("ib") or "infiniband" in n:
        return "ib"
    if "libfabric" in n or n.startswith("ofi") or n.startswith("aws"):
        # aws-ofi-nccl only names its network "AWS Libfabric"/"Libfabric": the provider says what carries it, and
        # without its line nothing does
        if provider is None:
            return None
        if provider.startswith("efa"):
            return "efa"
        if provider in ("tcp", "sockets", "udp", "tcp;ofi_rxm", "udp;ofi_rxd"):
            return "socket"
        if provider.startswith("verbs"):
            return "ib"
        return None
    return None


_RANK = {"socket": 0, "unknown": 1, "ib": 2, "efa": 2}


def process_transports(facts: NcclLogFacts) -> dict[str, str]:
    """Per printing process: efa | ib | socket | unknown. A process's Libfabric network is EFA only when that
    same process printed `Selected provider is efa`: aws-ofi-nccl names its network "Libfabric" / "AWS Libfabric"
    whatever provider carries it (tcp, sockets, verbs, efa), and prints its choice once per process
    (aws/aws-ofi-nccl src/nccl_ofi_net.c: NCCL_OFI_INFO(NCCL_INIT | NCCL_NET, "Selected Provider is %s", ...))."""
    procs = set(facts.process_networks) | set(facts.process_providers) | set(facts.process_channel_nets)
    out: dict[str, str] = {}
    for proc in sorted(procs):
        provider = facts.process_providers.get(proc)
        names = (facts.process_networks.get(proc) or facts.process_channel_nets.get(proc)
                 or (["Libfabric"] if provider else []))
        kinds = [_classify(n, provider) or "unknown" for n in names]
        if kinds:
            out[proc] = min(kinds, key=lambda k: _RANK[k])
    return out


def transport_of(facts: NcclLogFacts) -> str | None:
    """The network NCCL really used: efa | ib | socket | None (no evidence, or a process whose network cannot be
    told: Libfabric without a provider line, an unknown provider).

    `Using network` lines win; channel lines (`via NET/Socket/0`) are the fallback. Every process counts and the
    weakest wins: one rank on sockets drags the whole collective down, one rank of unknown transport leaves the
    run's transport unknown."""
    kinds = set(process_transports(facts).values())
    if not kinds:
        return None
    weakest = min(kinds, key=lambda k: _RANK[k])
    return None if weakest == "unknown" else weakest


def gdrdma_of(facts: NcclLogFacts) -> bool | None:
    """True when every network channel of every rank runs GPUDirect RDMA (`/GDRDMA`); False when a network
    channel does not (or rings report `GDR 0`); None without network channel lines."""
    if facts.net_channels:
        return facts.gdrdma_channels == facts.net_channels
    return facts.ring_gdr
