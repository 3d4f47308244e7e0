"""Kernel-log Xid parser on the real dmesg captures in tests/data/xid (see its SOURCES.md)."""
from __future__ import annotations

from pytest_gpucluster.parsers import parse_xid
from pytest_gpucluster.parsers.xid import pci_key

from ._data import sample


def test_ctime_dmesg_with_stack_dump_and_uuid_line() -> None:
    log = parse_xid(sample("xid", "dmesg-ctime-xid119-h100-xe9680.log"))
    assert log.codes() == [119] and len(log.events) == 5
    e = log.events[0]
    assert (e.pci, e.timestamp, e.process, e.seconds) == ("0000:9b:00", "Sun Feb 23 16:24:18 2025", "nvidia-smi", None)
    assert log.uuid_by_pci == {"0000:9b:00": "GPU-509665ad-b600-ac93-3616-d754b23d636d"}


def test_decode_iso_dmesg() -> None:
    log = parse_xid(sample("xid", "dmesg-decode-iso-xid13.log"))
    assert log.codes() == [13, 43]
    assert log.events[0].timestamp == "2025-01-21T04:41:44,283302+00:00"
    assert log.events[0].process == "<unknown>" and log.events[0].pci == "0000:38:00"


def test_fallen_off_the_bus_without_an_xid_line_is_xid_79() -> None:
    log = parse_xid(sample("xid", "dmesg-raw-fallen-off-bus-no-xid-nvsentinel155.log"))
    assert [(e.code, e.pci, e.seconds, e.inferred) for e in log.events] == [(79, "0000:b3:00", 1843.308145, True)]


def test_other_shapes_on_one_line_each() -> None:
    # layouts quoted in tests/data/xid sources and NVIDIA's open-gpu-kernel-modules issue #1151 (journalctl)
    text = ("May 18 19:02:39 kernel: NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.\n"
            "May 18 19:02:39 kernel: NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus.\n"
            "[ 12.5] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 20034, Fatal, Link 44 LTSSM Fault Up\n")
    log = parse_xid(text)
    assert [(e.kind, e.code, e.pci) for e in log.events] == [("Xid", 79, "0000:2b:00"), ("SXid", 20034, "0000:86:00")]
    assert log.events[0].timestamp == "May 18 19:02:39"


def test_clean_log_and_pci_keys() -> None:
    assert parse_xid("[    0.000000] Linux version 6.1\n").events == []
    assert pci_key("00000000:9B:00.0") == pci_key("PCI:0000:9b:00") == "0000:9b:00"


def test_how_far_back_the_log_reaches() -> None:
    raw = parse_xid(sample("xid", "dmesg-raw-fallen-off-bus-no-xid-nvsentinel155.log"))
    assert raw.first_seconds is not None and raw.first_timestamp is None
    ctime = parse_xid(sample("xid", "dmesg-ctime-xid119-h100-xe9680.log"))
    assert ctime.first_timestamp is not None and ctime.first_timestamp.endswith("2025")
    assert parse_xid("").lines == 0 and parse_xid("").first_seconds is None


def test_xid_154_action_and_sxid_severity() -> None:
    # Xid 154 as NVIDIA/NVSentinel's syslog-health-monitor tests quote it; SXid severities as in the line above
    log = parse_xid("NVRM: Xid (PCI:0008:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset "
                    "Required)\n[ 12.5] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 20034, Fatal, Link 44 LTSSM Fault "
                    "Up\n[ 13.0] nvidia-nvswitch3: SXid (PCI:0000:86:00.0): 12028, Non-fatal, Link 32 egress\n")
    assert [(e.code, e.recovery_action, e.fatal) for e in log.events] == [
        (154, "GPU Reset Required", False), (20034, None, True), (12028, None, False)]
