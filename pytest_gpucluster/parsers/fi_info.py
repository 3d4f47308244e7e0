"""fi_info (libfabric): summary and `-v` entries, `fi_getinfo` errors, NIC counting by domain."""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ._text import Line, ParseError, split_lines

__all__ = ["FiEntry", "FiInfoError", "FiInfoResult", "parse_fi_info", "nic_name"]

KIND = "fi_info"

_GETINFO = re.compile(r"fi_getinfo:\s*(-?\d+)(?:\s*\(([^)]*)\))?")
_KV = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):\s*(.*)$")
_ENDPOINT_SUFFIX = re.compile(r"-(?:rdm|dgrm|dgram|msg|xrc)$")


def nic_name(domain: str) -> str:
    """The device behind a domain: `rdmap16s27-rdm` and `rdmap16s27-dgrm` are one NIC `rdmap16s27`."""
    return _ENDPOINT_SUFFIX.sub("", domain.strip())


@dataclass
class FiEntry:
    provider: str
    fabric: str | None = None
    domain: str | None = None
    version: str | None = None
    type: str | None = None       # FI_EP_RDM | FI_EP_DGRAM | FI_EP_MSG
    protocol: str | None = None
    host: str | None = None       # launcher tag (mpirun rank / srun task) that printed the entry


@dataclass
class FiInfoError:
    code: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass
class FiInfoResult:
    entries: list[FiEntry] = field(default_factory=list)
    hosts: int | None = None      # distinct launcher tags, None when the output is untagged
    error: FiInfoError | None = None

    def provider_names(self) -> list[str]:
        return sorted({e.provider for e in self.entries})

    def _of(self, provider: str | None, host: str | None = None) -> list[FiEntry]:
        return [e for e in self.entries
                if (provider is None or e.provider == provider) and (host is None or e.host == host)]

    def domains(self, provider: str = "efa") -> list[str]:
        return sorted({e.domain for e in self._of(provider) if e.domain})

    def fabrics(self, provider: str = "efa") -> list[str]:
        return sorted({e.fabric for e in self._of(provider) if e.fabric})

    def endpoint_types(self, provider: str = "efa") -> list[str]:
        return sorted({e.type for e in self._of(provider) if e.type})

    def versions(self, provider: str = "efa") -> list[str]:
        return sorted({e.version for e in self._of(provider) if e.version})

    def nics(self, provider: str = "efa", host: str | None = None) -> list[str]:
        """Distinct NIC names (domains without their -rdm/-dgrm suffix) of `provider`."""
        return sorted({nic_name(e.domain) for e in self._of(provider, host) if e.domain})

    def nic_count(self, provider: str = "efa", host: str | None = None) -> int:
        """NICs of `provider`, counted by distinct domain. One EFA shows up as efa-direct/rdm,
        efa/rdm and efa/dgrm entries (three `provider: efa` lines): that is still one NIC.
        Untagged output or `host=None` counts over the whole text."""
        return len(self.nics(provider, host))

    def nic_counts_by_host(self, provider: str = "efa") -> dict[str, int]:
        """Per launcher tag (mpirun rank) NIC counts for multi-host tagged output."""
        hosts = sorted({e.host for e in self.entries if e.host is not None}, key=_tag_key)
        return {h: self.nic_count(provider, h) for h in hosts}

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "providers": {p: {"domains": self.domains(p), "fabrics": self.fabrics(p),
                              "endpoint_types": self.endpoint_types(p)} for p in self.provider_names()},
            "hosts": self.hosts,
            "error": self.error.to_json() if self.error else None,
        }


def _tag_key(tag: str) -> tuple[int, str]:
    return (int(tag), tag) if tag.isdigit() else (1 << 30, tag)


def parse_fi_info(text: str) -> FiInfoResult:
    """Parse `fi_info` summary output (any -p/-t filter, any libfabric generation), `fi_info -v`
    YAML-ish output, `fi_getinfo: -61` errors, and mpirun/srun-tagged multi-host captures."""
    lines = split_lines(text)
    result = FiInfoResult()
    verbose = any(ln.text.strip() == "fi_info:" for ln in lines)
    result.entries = _parse_verbose(lines) if verbose else _parse_summary(lines)
    for ln in lines:
        m = _GETINFO.search(ln.text)
        if m and result.error is None:
            code = int(m.group(1))
            message = (m.group(2) or "").strip() or _strerror(code)
            result.error = FiInfoError(code, message)
    tags = {ln.tag for ln in lines if ln.tag is not None and ln.text.strip()}
    result.hosts = len(tags) if tags else None
    if not result.entries and result.error is None:
        first = next((ln.text.strip() for ln in lines if ln.text.strip()), "")
        raise ParseError(KIND, f"no `provider:` entries and no fi_getinfo error (starts with {first[:60]!r})")
    return result


def _strerror(code: int) -> str:
    """fi_info prints `fi_getinfo: -61` and, in newer versions, `(No data available)`."""
    num = abs(code)
    if num in errno.errorcode:
        return os.strerror(num)
    return f"libfabric error {code}"


def _parse_summary(lines: list[Line]) -> list[FiEntry]:
    entries: list[FiEntry] = []
    current: dict[str | None, FiEntry] = {}  # per tag, ranks' lines may interleave
    for ln in lines:
        m = _KV.match(ln.text)
        if not m:
            continue
        key, value = m.group(2), m.group(3).strip()
        if key == "provider":
            entry = FiEntry(provider=value, host=ln.tag)
            entries.append(entry)
            current[ln.tag] = entry
            continue
        entry_or_none = current.get(ln.tag)
        if entry_or_none is None:
            continue
        if key in ("fabric", "domain", "version", "type", "protocol"):
            setattr(entry_or_none, key, value or None)
    return entries


def _parse_verbose(lines: list[Line]) -> list[FiEntry]:
    """`fi_info -v`: one `fi_info:` document per entry; fields live in nested attr sections."""
    entries: list[FiEntry] = []
    docs: dict[str | None, dict[str, str]] = {}
    stacks: dict[str | None, list[tuple[int, str]]] = {}

    def close(tag: str | None) -> None:
        doc = docs.pop(tag, None)
        if doc and doc.get("fi_fabric_attr.prov_name"):
            entries.append(FiEntry(
                provider=doc["fi_fabric_attr.prov_name"], fabric=doc.get("fi_fabric_attr.name"),
                domain=doc.get("fi_domain_attr.name"), version=doc.get("fi_fabric_attr.prov_version"),
                type=doc.get("fi_ep_attr.type"), protocol=doc.get("fi_ep_attr.protocol"), host=tag))

    for ln in lines:
        stripped = ln.text.strip()
        if stripped in ("---", "...") or stripped == "fi_info:":
            close(ln.tag)
            if stripped == "fi_info:":
                docs[ln.tag], stacks[ln.tag] = {}, []
            continue
        doc = docs.get(ln.tag)
        m = _KV.match(ln.text)
        if doc is None or not m:
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3).strip()
        stack = stacks[ln.tag]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if value:
            doc.setdefault(path, value)
        else:
            stack.append((indent, key))
    for tag in list(docs):
        close(tag)
    return entries
