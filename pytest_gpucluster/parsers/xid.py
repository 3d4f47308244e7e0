"""Kernel-log Xid / SXid events (`dmesg` in its raw, --ctime and --decode --time-format iso forms, journalctl / syslog):
code, PCI address, message, the seconds since boot when dmesg printed them, and how far back the log reaches."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KIND = "xid"
__all__ = ["XidEvent", "XidLog", "parse_xid", "FALLEN_OFF_BUS"]

FALLEN_OFF_BUS = 79   # "GPU has fallen off the bus" printed without an Xid line is the same event as Xid 79

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.\d)?)\): "
                  r"(?P<code>\d+),\s*(?P<rest>.*)")
_SXID = re.compile(r"nvidia-nvswitch(?P<sw>\d*): SXid \(PCI:(?P<pci>[0-9A-Fa-f:.]+)\): (?P<code>\d+),\s*(?P<rest>.*)")
_FALLEN = re.compile(r"NVRM: (?:GPU at (?:PCI:)?|The NVIDIA GPU |GPU )(?P<pci>[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:"
                     r"[0-9A-Fa-f]{2}(?:\.\d)?)\b.*?fallen off the bus", re.S)
_UUID = re.compile(r"NVRM: GPU at PCI:(?P<pci>[0-9A-Fa-f:.]+): (?P<uuid>GPU-[0-9a-f-]{36})")
_MONO = re.compile(r"^\s*(?:>\s*)?\[\s*(?P<s>\d+\.\d+)\]")
_STAMP = re.compile(r"^\s*(?:>\s*)?(?:\[(?P<ctime>\w{3} \w{3} +\d+ [\d:]+ \d{4})\]|(?:\w+\s*:\w+\s*: )?"
                    r"(?P<iso>\d{4}-\d\d-\d\dT[\d:]+[,.]\d+[+-]\d\d:\d\d)|(?P<syslog>\w{3} +\d+ [\d:]{8}) )")
_PID = re.compile(r"pid=(?P<pid>'?<?[\w-]+>?'?), name=(?P<name>[^,]+),")
# Xid 154 (r570+ drivers): "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)"; the action the
# driver asks for is the last one (NVIDIA/NVSentinel syslog-health-monitor tests; NVIDIA's "Error Recovery and Response
# Flags" page lists None, Reset, Reboot, Drain P2P, Drain and Reset).
_RECOVERY = re.compile(r"recovery action changed (?:from .*? )?to (?:0x[0-9a-fA-F]+ )?\((?P<action>[^)]*)\)")
# SXid lines carry the severity right after the code: "20034, Fatal, Link 44 LTSSM Fault Up" / "12028, Non-fatal, ..."
# (NVIDIA Fabric Manager user guide, "NVSwitch SXid errors").
_FATAL = re.compile(r"^\s*Fatal\b|,\s*Fatal\b")


def pci_key(pci: str) -> str:
    """`0000:9b:00`, `PCI:0000:9B:00.0`, `00000000:9B:00.0` -> `0000:9b:00` (domain:bus:device; what Xid lines use)."""
    parts = pci.lower().replace("pci:", "").split(":")
    if len(parts) >= 3:
        return f"{parts[-3][-4:].zfill(4)}:{parts[-2]}:{parts[-1].split('.')[0]}"
    return pci.lower()


@dataclass
class XidEvent:
    kind: str                        # Xid | SXid
    code: int
    pci: str                         # normalised domain:bus:device
    message: str
    line: str
    seconds: float | None = None     # since boot (raw dmesg)
    timestamp: str | None = None     # wall clock as printed (--ctime, iso, syslog)
    process: str | None = None
    inferred: bool = False           # "fallen off the bus" without an Xid 79 line

    @property
    def recovery_action(self) -> str | None:
        """Xid 154's requested action ("GPU Reset Required", "Node Reboot Required", "None", ...)."""
        m = _RECOVERY.search(self.message) if self.kind == "Xid" and self.code == 154 else None
        return m["action"].strip() if m else None

    @property
    def fatal(self) -> bool:
        """An SXid whose severity token says Fatal (never a `Non-fatal` one)."""
        return self.kind == "SXid" and bool(_FATAL.search(self.message))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "code": self.code, "pci": self.pci, "message": self.message,
                "seconds": self.seconds, "timestamp": self.timestamp, "process": self.process,
                "inferred": self.inferred, "recovery_action": self.recovery_action, "fatal": self.fatal}


@dataclass
class XidLog:
    events: list[XidEvent] = field(default_factory=list)
    uuid_by_pci: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    first_seconds: float | None = None     # the oldest line's seconds since boot (raw dmesg)
    first_timestamp: str | None = None     # the oldest line's wall-clock stamp as printed (--ctime, iso, syslog)

    def codes(self) -> list[int]:
        return sorted({e.code for e in self.events})

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "lines": self.lines, "events": [e.to_json() for e in self.events],
                "uuid_by_pci": self.uuid_by_pci, "first_seconds": self.first_seconds,
                "first_timestamp": self.first_timestamp}


def _logical_lines(text: str) -> list[str]:
    """Join the continuation lines the kernel wraps long NVRM messages into (indented, no timestamp)."""
    out: list[str] = []
    for raw in text.replace("\r", "").split("\n"):
        if out and raw[:1] in (" ", "\t") and raw.strip().startswith("NVRM:") and not _MONO.match(raw):
            out[-1] += " " + raw.strip()[len("NVRM:"):].strip()
        else:
            out.append(raw)
    return out


def parse_xid(text: str) -> XidLog:
    """Every Xid / SXid event in a kernel log (any amount of other kernel output around them). Never raises: a log
    without Xid lines is a clean log."""
    log = XidLog()
    for line in _logical_lines(text):
        if not line.strip():
            continue
        log.lines += 1
        mono, stamp = _MONO.match(line), _STAMP.match(line)
        seconds = float(mono["s"]) if mono else None
        when = (stamp["ctime"] or stamp["iso"] or stamp["syslog"]) if stamp else None
        if log.first_seconds is None and log.first_timestamp is None:
            log.first_seconds, log.first_timestamp = seconds, when
        if (u := _UUID.search(line)):
            log.uuid_by_pci[pci_key(u["pci"])] = u["uuid"]
        if (m := _XID.search(line)):
            proc = _PID.search(m["rest"])
            log.events.append(XidEvent("Xid", int(m["code"]), pci_key(m["pci"]), m["rest"].strip(), line.strip(),
                                       seconds, when, proc["name"].strip() if proc else None))
        elif (m := _SXID.search(line)):
            log.events.append(XidEvent("SXid", int(m["code"]), pci_key(m["pci"]), m["rest"].strip(), line.strip(),
                                       seconds, when))
        elif (m := _FALLEN.search(line)):
            key = pci_key(m["pci"])
            if not any(e.code == FALLEN_OFF_BUS and e.pci == key for e in log.events):
                log.events.append(XidEvent("Xid", FALLEN_OFF_BUS, key, "GPU has fallen off the bus", line.strip(),
                                           seconds, when, inferred=True))
    return log
