"""NCCL debug lines (NCCL_DEBUG=INFO/WARN) and launcher noise: network, GPUDirect RDMA, versions, errors."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["TEST_FAILURE", "NcclLogFacts", "scan_log_line", "transport_of"]

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
    ring_gdr: bool | None = None
    nranks: int | None = None
    errors: list[str] = field(default_factory=list)      # error-looking lines, NCCL WARN lines included
    warnings: list[str] = field(default_factory=list)    # the `NCCL WARN` lines alone: evidence, not a verdict


def scan_log_line(facts: NcclLogFacts, text: str) -> None:
    """Update `facts` from one (prefix-stripped) line of output."""
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
            facts.ofi_fabric = facts.ofi_fabric or m.group(2)
            if m.group(3):
                facts.ofi_nics = int(m.group(3))
        if m := _CHANNEL_NET.search(text):
            facts.net_channels += 1
            if m.group(3):
                facts.gdrdma_channels += 1
            if m.group(1) not in facts.channel_nets:
                facts.channel_nets.append(m.group(1))
    if (m := _NETWORK.search(text)) and m.group(1) not in facts.networks:
        facts.networks.append(m.group(1))
    if m := _RING_GDR.search(text):
        facts.ring_gdr = bool(int(m.group(1))) or bool(facts.ring_gdr)
    if "NCCL INFO" in text and (m := _NRANKS.search(text)):
        facts.nranks = max(facts.nranks or 0, int(m.group(1)))
    stripped = text.strip()
    if any(p.search(stripped) for p in _ERRORS) and stripped not in facts.errors:
        facts.errors.append(stripped)
    if _WARN.search(stripped) and stripped not in facts.warnings:
        facts.warnings.append(stripped)


def _classify(network: str, provider: str | None) -> str | None:
    n = network.lower()
    if n.startswith("socket"):
        return "socket"
    if n.startswith("ib") or "infiniband" in n:
        return "ib"
    if "libfabric" in n or n.startswith("ofi") or n.startswith("aws"):
        # aws-ofi-nccl only names its network "AWS Libfabric"/"Libfabric": the provider says what carries it
        if provider is None or provider.startswith("efa"):
            return "efa"
        if provider in ("tcp", "sockets", "udp", "tcp;ofi_rxm", "udp;ofi_rxd"):
            return "socket"
        if provider.startswith("verbs"):
            return "ib"
        return None
    return None


_RANK = {"socket": 0, "ib": 1, "efa": 1}


def transport_of(facts: NcclLogFacts) -> str | None:
    """The network NCCL really used: efa | ib | socket | None (no evidence / unknown provider).

    `Using network` lines win; channel lines (`via NET/Socket/0`) are the fallback. When ranks
    disagree the weakest wins (one rank on sockets drags the whole collective down)."""
    names = facts.networks or facts.channel_nets
    if not names and facts.ofi_provider:
        names = ["Libfabric"]
    kinds = [k for k in (_classify(n, facts.ofi_provider) for n in names) if k]
    if not kinds:
        return None
    return min(kinds, key=lambda k: _RANK[k])


def gdrdma_of(facts: NcclLogFacts) -> bool | None:
    """True when any network channel runs GPUDirect RDMA (`/GDRDMA`); False when network channels
    exist and none does (or rings report `GDR 0`); None without network channel lines."""
    if facts.net_channels:
        return facts.gdrdma_channels > 0
    return facts.ring_gdr
